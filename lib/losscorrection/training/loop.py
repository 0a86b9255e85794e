"""The training loop of Algorithm 1 for K runs of one method: each run visits its
own permutation of the noisy training set, minimises its own loss, and keeps
the epoch with the lowest loss on its noisy validation split (the paper's
model selection); the clean test accuracy of that epoch is reported, and a
stage-1 model also returns its softmax on X' = training + validation inputs,
from which T̂ is estimated (Eq. 12-13).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from tqdm import tqdm

from .. import data as data_module
from ..data.augmentation import AUGMENTATIONS
from . import checkpoint as checkpoints
from .checkpoint import load_checkpoint, rng_states, save_checkpoint, set_rng_states, to_device
from .experiments import RECIPES, Recipe, Schedule
from .objective import per_run_losses
from .runs import RunStack

__all__ = [
    "EVAL_BATCH", "GroupData", "RunOutcome", "TimeLimitReached", "kernel_penalty", "train_group",
    "weight_decay_groups",
]

EVAL_BATCH = 2048  # examples per forward pass when evaluating


class TimeLimitReached(Exception):
    """A group stopped before its deadline, its state checkpointed: the same call
    continues it."""


@dataclass
class GroupData:
    """Tensors of one experiment on the training device; labels are clean."""

    x_train: Tensor
    x_val: Tensor
    x_test: Tensor
    y_test: Tensor
    num_classes: int
    pixel_mean: Tensor | None = None  # images: the per-pixel mean subtracted from x / pixel_scale
    augment: bool = False
    augmentation: str = "pad_crop"  # a name of data.augmentation.AUGMENTATIONS
    pixel_scale: float = 255.0  # images: inputs are x / pixel_scale - pixel_mean

    def __post_init__(self) -> None:
        if self.augmentation not in AUGMENTATIONS:
            raise ValueError(f"unknown augmentation {self.augmentation!r}; known: {', '.join(AUGMENTATIONS)}")

    def prepare(self, x: Tensor, train: bool, generators: list[torch.Generator] | None = None) -> Tensor:
        """Model inputs from stored ones: images -> float, scaled, mean-subtracted and,
        when training an augmenting experiment, augmented (``augmentation``). ``x``: ``(K, B, ...)`` per-run
        batches (augmented with run k's ``generators[k]``) or ``(N, ...)``."""
        if self.pixel_mean is None:
            return x
        shape = x.shape
        images = data_module.prepare_images(x.reshape(-1, *shape[-3:]), self.pixel_mean, self.pixel_scale)
        if train and self.augment:
            if generators is None or len(generators) != shape[0] or x.dim() != 5:
                raise ValueError("augmenting needs per-run batches (K, B, C, H, W) and one generator per run")
            per_run = images.view(shape[0], -1, *images.shape[1:])
            augment = AUGMENTATIONS[self.augmentation]
            images = torch.cat([augment(run, g) for run, g in zip(per_run, generators)])
        return images.reshape(*shape[:-3], *images.shape[1:])


@dataclass
class RunOutcome:
    """What one run of a group ends with."""

    test_accuracy: float  # percent, clean test labels
    selected_epoch: int  # 1-based epoch with the lowest validation loss
    val_loss: float  # at the selected epoch
    val_accuracy: float  # percent, noisy validation labels, at the selected epoch (nan: not recorded)
    val_history: list[float]  # validation loss after every epoch
    probs: np.ndarray | None  # (n_train + n_val, c) softmax of the selected model (stage 1)
    group_seconds: float  # the whole group's training and testing time, as if uninterrupted (see train_group)


def weight_decay_groups(
    params: list[Tensor], kernels: list[Tensor], weight_decay: float, scope: str = "kernels"
) -> list[dict]:
    """Optimiser parameter groups for weight decay λ: with ``scope="kernels"`` (the
    authors' code, a penalty ``λ‖w‖²``) the ``kernels`` get a decay of 2λ and the
    other parameters none; with ``scope="all"`` every parameter gets λ."""
    if scope == "all":
        return [{"params": params, "weight_decay": weight_decay}]
    if scope != "kernels":
        raise ValueError(f"unknown weight decay scope {scope!r}; known: kernels, all")
    decayed = {id(p) for p in kernels}
    return [
        {"params": [p for p in params if id(p) in decayed], "weight_decay": 2 * weight_decay},
        {"params": [p for p in params if id(p) not in decayed], "weight_decay": 0.0},
    ]


def _optimizer(
    schedule: Schedule, stack: RunStack, milestone_offset: int = 0
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.MultiStepLR]:
    """The schedule's optimiser over the stack's parameters and its step-wise
    learning-rate decay, ``milestone_offset`` epochs after each milestone."""
    params = stack.parameters()
    if schedule.optimizer == "adagrad":
        # The fused kernel exists for CPU tensors only; it makes one pass over
        # the (K, in, out) accumulators instead of four.
        fused = all(p.device.type == "cpu" for p in params)
        opt = torch.optim.Adagrad(params, lr=schedule.lr, eps=schedule.eps, fused=fused)
    elif schedule.optimizer == "sgd":
        groups = weight_decay_groups(params, stack.kernels(), schedule.weight_decay, schedule.weight_decay_scope)
        opt = torch.optim.SGD(groups, lr=schedule.lr, momentum=schedule.momentum)
    else:
        raise ValueError(f"unknown optimizer {schedule.optimizer!r}; known: adagrad, sgd")
    milestones = [m + milestone_offset for m in schedule.milestones]
    return opt, torch.optim.lr_scheduler.MultiStepLR(opt, milestones, gamma=0.1)


def kernel_penalty(stack: RunStack, weight_decay: float) -> Tensor:
    """Each run's L2 penalty ``λ Σ‖w‖²`` over its kernels (:meth:`RunStack.kernel_squares`,
    what Keras' ``kernel_regularizer=l2(λ)`` adds to the loss): float32 ``(K,)``."""
    return weight_decay * stack.kernel_squares()


class _BatchOrder:
    """The training batches of K runs, ``(K, b)`` example indices each: passes
    over the ``n`` training examples, each pass in a fresh permutation per run
    (from the run's own generator) cut into batches of ``batch_size``, its last
    one partial. :meth:`epoch` takes the next ``steps`` batches: an epoch of
    one pass, or one that continues the pass in progress (Keras'
    ``ImageDataGenerator.flow`` with ``steps_per_epoch`` batches)."""

    def __init__(self, generators: list[torch.Generator], n: int, batch_size: int, device: torch.device) -> None:
        self.generators, self.n, self.batch_size, self.device = generators, n, batch_size, device
        self.batches_per_pass = math.ceil(n / batch_size)
        self.position = 0  # the next batch of the pass in progress (0: a new pass)
        self.perms: Tensor | None = None

    def epoch(self, steps: int):
        for _ in range(steps):
            if self.position == 0:
                self.perms = torch.stack([torch.randperm(self.n, generator=g) for g in self.generators]).to(self.device)
            start = self.position * self.batch_size
            yield self.perms[:, start : start + self.batch_size]
            self.position = (self.position + 1) % self.batches_per_pass

    def state(self) -> dict | None:
        """The pass in progress, for a checkpoint (None between passes)."""
        return None if self.position == 0 else {"position": self.position, "perms": self.perms.cpu()}

    def restore(self, state: dict | None) -> None:
        if state is not None:
            self.position, self.perms = state["position"], state["perms"].to(self.device)


def _evaluate(
    stack: RunStack, group_data: GroupData, x: Tensor, fn: Callable[[Tensor, slice], Tensor]
) -> list[Tensor]:
    """Apply ``fn(logits (K, b, c), slice)`` to eval-mode logits of shared inputs, in chunks."""
    out = []
    with torch.no_grad():
        for start in range(0, x.shape[0], EVAL_BATCH):
            chunk = slice(start, start + EVAL_BATCH)
            logits = stack.forward(group_data.prepare(x[chunk], False), train=False, shared=True)
            out.append(fn(logits, chunk))
    return out


def _validate(stack: RunStack, group_data: GroupData, method: str, y_val: Tensor,
              matrices: Tensor | None, clipped: bool = False) -> tuple[Tensor, Tensor]:
    """Each run's mean ``method`` loss ``(K,)`` on its noisy validation labels
    ``y_val (K, n_val)`` (the model-selection criterion; ``clipped``: see
    :func:`per_run_losses`), and its accuracy ``(K,)`` in percent against the
    same labels, from one pass over the inputs."""
    sums = torch.stack(_evaluate(
        stack, group_data, group_data.x_val,
        lambda z, s: torch.stack([per_run_losses(method, z, y_val[:, s], matrices, clipped).sum(dim=1),
                                  (z.argmax(dim=-1) == y_val[:, s]).sum(dim=1).to(z.dtype)]),
    )).sum(dim=0) / y_val.shape[1]
    return sums[0], 100.0 * sums[1]


def train_group(
    stack: RunStack,
    method: str,
    group_data: GroupData,
    y_train: Tensor,
    y_val: Tensor,
    matrices: Tensor | None,
    schedule: Schedule,
    order_seeds: list[int],
    *,
    augment_seeds: list[int] | None = None,
    want_probs: bool = False,
    progress: bool = True,
    desc: str = "",
    on_epoch: Callable[[int, Any], None] | None = None,
    checkpoint: str | Path | None = None,
    checkpoint_seconds: float | None = None,
    deadline: float | None = None,
    recipe: Recipe = RECIPES["library"],
) -> list[RunOutcome]:
    """Train K runs of ``method`` together (Algorithm 1, one stage) and select each
    run's epoch with the lowest validation loss.

    Parameters
    ----------
    stack
        The K runs' networks (:class:`~losscorrection.training.runs.RunStack`).
    method
        A name of :data:`losscorrection.methods.METHODS`: the loss every run minimises.
    group_data
        The inputs on the training device, and the clean test labels.
    y_train, y_val
        int64 ``(K, n)`` and ``(K, n_val)``: each run's noisy labels.
    matrices
        ``(K, c, c)`` per-run correction matrices
        (:func:`~losscorrection.training.objective.correction_matrices`), None for a baseline.
    schedule
        Optimiser, learning rate, epochs and batch size.
    order_seeds
        One seed per run for its data order.
    augment_seeds
        One seed per run for its augmentations (default: ``order_seeds``).
    want_probs
        Also return each selected model's softmax on X' = training + validation inputs.
    progress, desc
        A tqdm bar over epochs, labelled ``desc``.
    on_epoch
        ``on_epoch(epoch, stack)`` (epochs counted from 1) sees the networks as they
        are at the end of every epoch, before model selection.
    checkpoint, checkpoint_seconds, deadline
        See below.
    recipe
        Epoch length, loss clipping, model-selection criterion and learning-rate
        milestones (:class:`~losscorrection.training.Recipe`; its preprocessing
        and augmentation are ``group_data``'s).

    Each epoch visits every run's own permutation of the training set in batches
    (or, with the recipe's ``epoch_length="full_training_set"``, takes its
    batches from passes that continue across epochs); the loss is the sum over
    runs of each run's batch mean, so runs do not interact. After each epoch
    the validation loss (plus each run's kernel penalty, with the recipe's
    ``penalised_selection``) selects the best epoch.

    With ``checkpoint`` (a file path), the whole training state (networks,
    optimiser, schedule, selected epochs, random streams) is written there
    after an epoch whenever ``checkpoint_seconds`` have passed since the last
    write (default :data:`CHECKPOINT_SECONDS`), and training resumes from that
    file when it exists: an interrupted group continues where it stopped and
    ends exactly as it would have. The caller removes the file once the
    results are stored. ``group_seconds`` then sums the time of every
    process up to its last checkpoint, plus the last process's: epochs
    repeated after an interruption count once. With a ``deadline`` (a
    ``time.perf_counter()`` value; it needs a ``checkpoint``), an epoch that
    would end after it is not started: the state is checkpointed and
    :class:`TimeLimitReached` raised.

    Returns one :class:`RunOutcome` per run, in the order of the stack.
    """
    if deadline is not None and checkpoint is None:
        raise ValueError("a deadline needs a checkpoint to continue from")
    K, n = y_train.shape
    device = y_train.device
    opt, lr_schedule = _optimizer(schedule, stack, recipe.milestone_offset)
    order = [torch.Generator().manual_seed(s) for s in order_seeds]
    batches = _BatchOrder(order, n, schedule.batch_size, device)
    if recipe.epoch_length == "training_pass":
        steps = batches.batches_per_pass
    else:  # the released code's steps_per_epoch, from training and validation examples; at least one
        steps = max(1, (n + y_val.shape[1]) // schedule.batch_size)
    augment = [torch.Generator(device=device).manual_seed(s) for s in augment_seeds or order_seeds]
    streams = {"order": order, "augment": augment, "runs": getattr(stack, "generators", [])}
    best = stack.snapshot()
    best_loss = torch.full((K,), math.inf, device=device)
    best_criterion = best_loss.clone()  # the selection criterion: best_loss, plus the penalty if penalised
    best_val_accuracy = torch.full((K,), math.nan, device=device)
    best_epoch = torch.zeros(K, dtype=torch.long)
    history = []
    first_epoch, earlier_seconds = 0, 0.0
    saved = load_checkpoint(checkpoint) if checkpoint is not None else None
    if saved is not None:
        first_epoch, history, best_epoch = saved["epoch"], saved["history"], saved["best_epoch"]
        earlier_seconds = saved.get("seconds", 0.0)  # absent from checkpoints written before it was kept
        stack.load(saved["stack"])
        best, best_loss = to_device(saved["best"], device), saved["best_loss"].to(device)
        if "best_val_accuracy" in saved:  # absent from checkpoints written before it was kept
            best_val_accuracy = saved["best_val_accuracy"].to(device)
        best_criterion = saved.get("best_criterion", best_loss).to(device).clone()  # kept when penalised
        batches.restore(saved.get("order_pass"))  # kept when an epoch ended inside a pass
        opt.load_state_dict(saved["optimizer"])
        lr_schedule.load_state_dict(saved["lr_schedule"])
        set_rng_states(saved["rng"], streams, device)
    every = checkpoints.CHECKPOINT_SECONDS if checkpoint_seconds is None else checkpoint_seconds
    last_save = started = time.perf_counter()
    if deadline is not None and started >= deadline and first_epoch < schedule.epochs:
        raise TimeLimitReached(f"{desc or method}: time limit reached before epoch {first_epoch + 1}")
    bar = tqdm(range(first_epoch, schedule.epochs), desc=desc, disable=not progress, leave=False,
               initial=first_epoch, total=schedule.epochs)
    for epoch in bar:
        epoch_started = time.perf_counter()
        for idx in batches.epoch(steps):
            logits = stack.forward(group_data.prepare(group_data.x_train[idx], True, augment), train=True)
            loss = per_run_losses(method, logits, y_train.gather(1, idx), matrices,
                                  recipe.clipped_cross_entropy).mean(dim=1).sum()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        lr_schedule.step()
        if on_epoch is not None:
            on_epoch(epoch + 1, stack)
        val, val_accuracy = _validate(stack, group_data, method, y_val, matrices, recipe.clipped_cross_entropy)
        history.append(val.tolist())
        criterion = val + kernel_penalty(stack, schedule.weight_decay) if recipe.penalised_selection else val
        improved = torch.nan_to_num(criterion, nan=math.inf) < best_criterion
        stack.keep_best(best, improved)
        best_criterion = torch.where(improved, criterion, best_criterion)
        best_loss = torch.where(improved, val, best_loss)
        best_val_accuracy = torch.where(improved, val_accuracy, best_val_accuracy)
        best_epoch[improved.cpu()] = epoch + 1
        bar.set_postfix(val_loss=f"{val.mean().item():.4f}")
        now = time.perf_counter()
        out_of_time = (deadline is not None and epoch + 1 < schedule.epochs
                       and now + (now - epoch_started) > deadline)  # the next epoch, as long as this one
        if checkpoint is not None and (out_of_time or now - last_save >= every):
            state = dict(
                epoch=epoch + 1, history=history, best_epoch=best_epoch, stack=stack.snapshot(), best=best,
                best_loss=best_loss, best_val_accuracy=best_val_accuracy, optimizer=opt.state_dict(),
                lr_schedule=lr_schedule.state_dict(),
                rng=rng_states(streams, device), seconds=earlier_seconds + now - started,
                description=desc or method, epochs=schedule.epochs,  # what the group is, for a reader of the file
            )
            if recipe.penalised_selection:
                state["best_criterion"] = best_criterion
            if batches.state() is not None:
                state["order_pass"] = batches.state()
            save_checkpoint(checkpoint, state)
            last_save = time.perf_counter()
        if out_of_time:
            bar.close()
            raise TimeLimitReached(f"{desc or method}: stopped after epoch {epoch + 1} of {schedule.epochs}")
    stack.load(best)
    correct = torch.stack(
        _evaluate(stack, group_data, group_data.x_test,
                  lambda z, s: (z.argmax(dim=-1) == group_data.y_test[s]).sum(dim=1))
    ).sum(dim=0)
    accuracy = (100.0 * correct.double() / group_data.y_test.shape[0]).tolist()
    probs = None
    if want_probs:
        x_prime = torch.cat([group_data.x_train, group_data.x_val])  # X' = training + validation inputs
        probs = torch.cat(_evaluate(stack, group_data, x_prime, lambda z, s: z.softmax(dim=-1)), dim=1)
        probs = probs.double().cpu().numpy()
    seconds = earlier_seconds + time.perf_counter() - started
    return [
        RunOutcome(accuracy[k], int(best_epoch[k]), float(best_loss[k]), float(best_val_accuracy[k]),
                   [epoch_losses[k] for epoch_losses in history], None if probs is None else probs[k], seconds)
        for k in range(K)
    ]

