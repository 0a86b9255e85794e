"""Algorithm 1 (robust two-stage training), many runs at a time.

A *cell* of the paper is (experiment, method, noise, rate, run). Runs of one
method are trained together as one stacked model: for the fully connected
network the K runs' weights are stacked into ``(K, in, out)`` tensors and every
layer is one batched matrix product (:class:`StackedMLP`); on a GPU the CIFAR
ResNets become one network of grouped convolutions (:class:`GroupedRuns`);
other models fall back to K modules stepped in turn (:class:`ModuleRuns`). Every run keeps
its own initialisation, data order, dropout masks, noisy labels, loss and T,
all derived from its seed, so a run's result does not depend on which runs it
was trained with.

Algorithm 1: the cross-entropy runs are stage 1; T̂ is estimated (Eq. 12-13)
from each stage-1 model's softmax on the training and validation inputs and
reused by ``backward_That`` and ``forward_That`` of the same (noise, rate, run).
Model selection keeps the epoch with the lowest loss (the run's own, corrected
loss) on the noisy validation split; we report clean test accuracy.
"""

from __future__ import annotations

import copy
import hashlib
import math
import os
import tempfile
import time
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn
from tqdm import tqdm

from . import data as data_module
from . import losses, models, noise
from .estimation import estimate_transition, estimation_error
from .results import CELL_KEY, METHODS, NOISES, ResultStore, cell_key, device_description, git_commit, timestamp

__all__ = [
    "EXPERIMENTS",
    "PROFILES",
    "Cell",
    "Experiment",
    "GroupedRuns",
    "ModuleRuns",
    "Schedule",
    "StackedMLP",
    "ensure_results",
    "figure_cells",
    "group_modules",
    "resolve_device",
    "run_cells",
    "table_cells",
    "train_group",
]

PROFILES = ("smoke", "quick", "paper")
BN_HEAD_METHODS = ("unhinged_bn", "sigmoid_bn")
STAGE_ONE = "cross_entropy"
EVAL_BATCH = 2048


# ------------------------------------------------------------------- configuration


@dataclass(frozen=True)
class Schedule:
    """Optimiser and schedule. ``adagrad``: AdaGrad(lr, eps); ``sgd``: momentum SGD
    with weight decay and the learning rate divided by 10 at each milestone epoch."""

    optimizer: str
    lr: float
    epochs: int
    batch_size: int = 128
    eps: float = 1e-6
    momentum: float = 0.0
    weight_decay: float = 0.0
    milestones: tuple[int, ...] = ()


ADAGRAD = Schedule("adagrad", lr=0.01, epochs=40)
CIFAR10_SGD = Schedule("sgd", 0.01, 120, momentum=0.9, weight_decay=1e-4, milestones=(40, 80))
CIFAR100_SGD = replace(CIFAR10_SGD, epochs=150, milestones=(80, 120))
MNIST_SETTINGS = (("none", 0.0), ("symmetric", 0.2), ("asymmetric", 0.2), ("asymmetric", 0.6))
IMDB_SETTINGS = (("none", 0.0), ("symmetric", 0.1), ("asymmetric", 0.1), ("asymmetric", 0.4))
FIGURE_RATES = (0.0, 0.1, 0.2, 0.3, 0.4)


@dataclass(frozen=True)
class Experiment:
    """One block of the paper's Table 2 / one panel of Figure 1."""

    key: str  # results file name, results/<key>.csv
    dataset: str  # data.load_dataset name
    model: str  # models.build_model name
    noise_family: str  # noise.asymmetric dataset key
    schedule: Schedule
    runs: int  # the paper's number of runs
    settings: tuple[tuple[str, float], ...]  # Table 2 columns: (noise, rate)
    description: str
    paper_block: str | None = None  # experiment key in the paper's Table 2 (package data)
    quantile: float | None = 0.97  # estimator's α-percentile (None: argmax)
    augment: bool = False
    model_kwargs: dict = field(default_factory=dict)
    dataset_kwargs: dict = field(default_factory=dict)  # extra data.load_dataset arguments


def _mnist_like(key: str, dataset: str, description: str) -> Experiment:
    return Experiment(
        key, dataset, "mlp", "mnist", ADAGRAD, 5, MNIST_SETTINGS, description, paper_block="mnist_fc"
    )


def _cifar(key: str, dataset: str, depth: int, description: str) -> Experiment:
    hundred = dataset == "cifar100"
    return Experiment(
        key, dataset, f"resnet{depth}", "cifar100" if hundred else "cifar10",
        CIFAR100_SGD if hundred else CIFAR10_SGD, 1, MNIST_SETTINGS, description,
        quantile=None if hundred else 0.97, augment=True,
    )


EXPERIMENTS: dict[str, Experiment] = {
    e.key: e
    for e in (
        _mnist_like("mnist_fc", "mnist", "MNIST, fully connected network (the paper's 60k/10k protocol)"),
        _mnist_like(
            "mnist10k_fc", "mnist10k",
            "MNIST-10k, fully connected network: the official 10k MNIST test set re-split "
            "7,200/800/2,000 (not the paper's 60k/10k protocol)",
        ),
        _mnist_like(
            "digits_fc", "digits",
            "scikit-learn digits (1,797 8x8 images), fully connected network, MNIST protocol",
        ),
        Experiment(
            "imdb_embedding", "imdb", "imdb_embedding", "imdb", replace(ADAGRAD, epochs=50), 5,
            IMDB_SETTINGS, "IMDB, word embedding model", paper_block="imdb_embedding",
        ),
        Experiment(
            "imdb_lstm", "imdb", "imdb_lstm", "imdb", replace(ADAGRAD, epochs=50), 5,
            IMDB_SETTINGS, "IMDB, word embedding + LSTM model", paper_block="imdb_lstm",
        ),
        _cifar("cifar10_resnet14", "cifar10", 14, "CIFAR-10, ResNet-14"),
        _cifar("cifar10_resnet32", "cifar10", 32, "CIFAR-10, ResNet-32"),
        _cifar("cifar10jpg_resnet14", "cifar10jpg", 14, "CIFAR-10 (JPEG copy), ResNet-14"),
        _cifar("cifar10jpg_resnet32", "cifar10jpg", 32, "CIFAR-10 (JPEG copy), ResNet-32"),
        _cifar("cifar100_resnet44", "cifar100", 44, "CIFAR-100, ResNet-44"),
    )
}


@dataclass(frozen=True)
class ProfileSettings:
    schedule: Schedule
    runs: int
    limit: int | None  # training examples kept (None: all)


def profile_settings(experiment: Experiment, profile: str) -> ProfileSettings:
    """``smoke``: 512 examples, 2 epochs, 1 run (seconds, for tests); ``quick``: all the
    data, a quarter of the epochs (at least 2), 2 runs; ``paper``: the paper's settings."""
    schedule = experiment.schedule
    if profile == "paper":
        return ProfileSettings(schedule, experiment.runs, None)
    if profile == "quick":
        epochs = max(2, schedule.epochs // 4)
        scale = epochs / schedule.epochs
        milestones = tuple(max(1, round(m * scale)) for m in schedule.milestones)
        return ProfileSettings(replace(schedule, epochs=epochs, milestones=milestones), min(2, experiment.runs), None)
    if profile == "smoke":
        return ProfileSettings(replace(schedule, epochs=2, milestones=(1,) if schedule.milestones else ()), 1, 512)
    raise ValueError(f"unknown profile {profile!r}; known: {', '.join(PROFILES)}")


def get_experiment(key: str) -> Experiment:
    """An experiment by key, by data set when only one experiment uses it
    (``mnist`` -> ``mnist_fc``), or by a unique prefix (``mnist10k`` -> ``mnist10k_fc``)."""
    if key in EXPERIMENTS:
        return EXPERIMENTS[key]
    matches = [k for k, e in EXPERIMENTS.items() if e.dataset == key]
    if len(matches) != 1:
        matches = [k for k in EXPERIMENTS if k.startswith(key)]
    if len(matches) == 1:
        return EXPERIMENTS[matches[0]]
    raise ValueError(f"unknown experiment {key!r}; known: {', '.join(EXPERIMENTS)}")


@dataclass(frozen=True)
class Cell:
    """One run of one method under one noise setting."""

    method: str
    noise: str
    rate: float
    run: int

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"unknown method {self.method!r}; known: {', '.join(METHODS)}")
        if self.noise not in NOISES:
            raise ValueError(f"unknown noise {self.noise!r}; known: {', '.join(NOISES)}")
        if not 0.0 <= self.rate < 1.0:
            raise ValueError(f"noise rate must lie in [0, 1), got {self.rate}")
        if self.noise == "none" and self.rate != 0.0:
            raise ValueError("noise 'none' takes rate 0")
        if self.run < 0:
            raise ValueError(f"run index must be >= 0, got {self.run}")

    @property
    def seed(self) -> int:
        return self.run

    @property
    def noise_key(self) -> tuple[str, float, int]:
        return (self.noise, self.rate, self.run)


def table_cells(experiment: Experiment, runs: int, methods: Iterable[str] = METHODS) -> list[Cell]:
    """The cells of a Table 2 block: methods x the experiment's noise settings x runs."""
    return [Cell(m, n, r, k) for m in methods for n, r in experiment.settings for k in range(runs)]


FIGURE_METHODS = ("cross_entropy", "backward_T", "backward_That", "forward_T", "forward_That")


def figure_cells(runs: int, rates: Iterable[float] = FIGURE_RATES) -> list[Cell]:
    """The cells of a Figure 1 panel: CE and the four corrections x asymmetric rates x runs."""
    return [
        Cell(m, "none" if r == 0 else "asymmetric", r, k)
        for m in FIGURE_METHODS for r in rates for k in range(runs)
    ]


def transition_for(experiment: Experiment, num_classes: int, noise_kind: str, rate: float) -> np.ndarray:
    """The true T of a noise setting (identity for ``none``)."""
    if noise_kind == "none":
        return np.eye(num_classes)
    if noise_kind == "symmetric":
        return noise.symmetric(num_classes, rate)
    return noise.asymmetric(experiment.noise_family, rate)


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' requested but CUDA is not available (use --device cpu)")
    return device


# ----------------------------------------------------------------- stacked models


def _dropout(h: Tensor, p: float, generators: list[torch.Generator]) -> Tensor:
    """Inverted dropout with one generator per run: ``h (K, B, d)``."""
    if p == 0.0:
        return h
    keep = torch.stack(
        [torch.rand(h.shape[1:], generator=g, device=h.device, dtype=h.dtype) for g in generators]
    ) >= p
    return h * keep / (1.0 - p)


class StackedMLP:
    """K copies of :class:`losscorrection.models.MLP` as batched tensors.

    Layer ``l`` holds ``W_l (K, in, out)`` and ``b_l (K, 1, out)``; a forward pass
    is one batched product per layer. Inputs are ``(K, B, d)`` (per-run batches)
    or ``(N, d)`` (one set shared by every run); outputs ``(K, B, c)`` logits.
    The optional batch-normalised head keeps per-run running statistics.
    """

    def __init__(self, modules: list[models.MLP], dropout_seeds: list[int], device: torch.device) -> None:
        layers = [m.linear_layers() for m in modules]
        self.weights = [
            torch.stack([ls[i].weight.detach().t() for ls in layers]).to(device).requires_grad_()
            for i in range(len(layers[0]))
        ]
        self.biases = [
            torch.stack([ls[i].bias.detach()[None] for ls in layers]).to(device).requires_grad_()
            for i in range(len(layers[0]))
        ]
        self.p = float(modules[0].dropout)
        head = modules[0].head
        self.head = None
        if head is not None:
            self.head = (head.eps, head.momentum)
            self.running_mean = torch.zeros(len(modules), 1, head.num_features, device=device)
            self.running_var = torch.ones(len(modules), 1, head.num_features, device=device)
        self.generators = [torch.Generator(device=device).manual_seed(s) for s in dropout_seeds]

    def parameters(self) -> list[Tensor]:
        return self.weights + self.biases

    def state(self) -> list[Tensor]:
        extra = [self.running_mean, self.running_var] if self.head else []
        return self.parameters() + extra

    def forward(self, x: Tensor, train: bool, shared: bool = False) -> Tensor:
        """``shared`` inputs ``(N, d)`` broadcast against the stacked weights."""
        h = x
        last = len(self.weights) - 1
        for i, (W, b) in enumerate(zip(self.weights, self.biases)):
            h = torch.matmul(h, W) + b
            if i < last:
                h = torch.relu(h)
                if train:
                    h = _dropout(h, self.p, self.generators)
        return self._head(h, train) if self.head else h

    def _head(self, h: Tensor, train: bool) -> Tensor:
        eps, momentum = self.head
        if not train:
            return (h - self.running_mean) / torch.sqrt(self.running_var + eps)
        mean = h.mean(dim=1, keepdim=True)
        var = h.var(dim=1, keepdim=True, unbiased=False)
        with torch.no_grad():
            n = h.shape[1]
            self.running_mean.lerp_(mean, momentum)
            self.running_var.lerp_(var * n / max(n - 1, 1), momentum)
        return (h - mean) / torch.sqrt(var + eps)

    def snapshot(self) -> list[Tensor]:
        return [t.detach().clone() for t in self.state()]

    def keep_best(self, best: list[Tensor], improved: Tensor) -> None:
        for saved, current in zip(best, self.state()):
            saved[improved] = current.detach()[improved]

    def load(self, saved: list[Tensor]) -> None:
        with torch.no_grad():
            for current, s in zip(self.state(), saved):
                current.copy_(s)


class ModuleRuns:
    """K independent ``nn.Module`` runs stepped in turn: the general fallback.

    Same interface as :class:`StackedMLP`. Dropout draws from torch's global RNG.
    On CUDA, image models use the channels-last memory format; with ``bf16`` the
    forward pass runs under bfloat16 autocast (losses stay in float32).
    """

    def __init__(self, modules: list[nn.Module], device: torch.device, bf16: bool = False) -> None:
        self.modules = [m.to(device) for m in modules]
        self.device = device
        self.bf16 = bf16
        if device.type == "cuda":
            self.modules = [m.to(memory_format=torch.channels_last) for m in self.modules]

    def parameters(self) -> list[Tensor]:
        return [p for m in self.modules for p in m.parameters()]

    def forward(self, x: Tensor, train: bool, shared: bool = False) -> Tensor:
        """``x``: ``(K, B, ...)`` per-run inputs, or ``(N, ...)`` when ``shared``;
        returns float32 logits ``(K, B, c)``."""
        outputs = []
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            for k, module in enumerate(self.modules):
                module.train(train)
                outputs.append(module(x if shared else x[k]))
        return torch.stack(outputs).float()

    def snapshot(self) -> list[dict]:
        return [copy.deepcopy(m.state_dict()) for m in self.modules]

    def keep_best(self, best: list[dict], improved: Tensor) -> None:
        for k in torch.nonzero(improved).flatten().tolist():
            best[k] = copy.deepcopy(self.modules[k].state_dict())

    def load(self, saved: list[dict]) -> None:
        for module, state in zip(self.modules, saved):
            module.load_state_dict(state)


class GroupedLinear(nn.Module):
    """K dense layers applied to K channel groups: ``(B, K*d) -> (B, K*c)``."""

    def __init__(self, layers: list[nn.Linear]) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.stack([layer.weight.detach() for layer in layers]))  # (K, c, d)
        self.bias = nn.Parameter(torch.stack([layer.bias.detach() for layer in layers]))  # (K, c)

    def forward(self, h: Tensor) -> Tensor:
        K = self.weight.shape[0]
        out = torch.einsum("bkd,kcd->bkc", h.reshape(h.shape[0], K, -1), self.weight) + self.bias
        return out.reshape(h.shape[0], -1)


def _grouped_layer(layers: list[nn.Module]) -> nn.Module | None:
    """One layer computing K copies of ``layers`` side by side on K channel groups,
    or None for a layer without parameters (it acts per channel already)."""
    first, K = layers[0], len(layers)
    if isinstance(first, nn.Conv2d):
        grouped = nn.Conv2d(
            K * first.in_channels, K * first.out_channels, first.kernel_size, first.stride,
            first.padding, first.dilation, groups=K * first.groups, bias=first.bias is not None,
        )
    elif isinstance(first, (nn.BatchNorm1d, nn.BatchNorm2d)):
        grouped = type(first)(K * first.num_features, first.eps, first.momentum, first.affine)
    elif isinstance(first, nn.Linear):
        return GroupedLinear(layers)
    elif not list(first.parameters(recurse=False)) and not list(first.buffers(recurse=False)):
        return None
    else:
        raise TypeError(f"cannot group layers of type {type(first).__name__}")
    with torch.no_grad():
        for name, tensor in [*grouped.named_parameters(), *grouped.named_buffers()]:
            if name != "num_batches_tracked":
                tensor.copy_(torch.cat([getattr(layer, name).detach() for layer in layers]))
    return grouped


def group_modules(modules: list[nn.Module]) -> nn.Module:
    """K identical convolutional networks as one network on K channel groups.

    Every convolution becomes a grouped convolution (``groups=K``), every batch
    norm one over ``K*C`` channels (so statistics stay per run), every dense
    layer a :class:`GroupedLinear`; element-wise layers, pooling and residual
    sums act per channel unchanged. Input ``(B, K*C_in, H, W)``: run k reads
    channels ``k*C_in ... (k+1)*C_in``. Each tensor keeps the runs in
    contiguous blocks along its first axis, so ``t.view(K, -1)[k]`` is run k's.
    Raises TypeError for layers that cannot be grouped (embeddings, LSTMs).
    """
    grouped = copy.deepcopy(modules[0])
    for name, layer in list(grouped.named_modules()):
        if not name or list(layer.children()):
            continue
        replacement = _grouped_layer([m.get_submodule(name) for m in modules])
        if replacement is not None:
            parent, _, attr = name.rpartition(".")
            setattr(grouped.get_submodule(parent) if parent else grouped, attr, replacement)
    return grouped


class GroupedRuns:
    """K runs of a convolutional network trained as one grouped network
    (:func:`group_modules`): one kernel per layer for all runs, which is what
    keeps a GPU busy with small CIFAR ResNets. Same interface as :class:`StackedMLP`;
    each run computes exactly what its own module would. ``compile=True`` runs
    the forward pass through ``torch.compile`` (same parameters and state).
    """

    def __init__(self, modules: list[nn.Module], device: torch.device, bf16: bool = False,
                 compile: bool = False) -> None:
        self.K = len(modules)
        self.model = group_modules(modules).to(device)
        if device.type == "cuda":
            self.model = self.model.to(memory_format=torch.channels_last)
        self.network = torch.compile(self.model) if compile else self.model
        self.device = device
        self.bf16 = bf16

    def parameters(self) -> list[Tensor]:
        return list(self.model.parameters())

    def state(self) -> list[Tensor]:
        return [t for name, t in self.model.state_dict(keep_vars=True).items()
                if not name.endswith("num_batches_tracked")]

    def forward(self, x: Tensor, train: bool, shared: bool = False) -> Tensor:
        """``x``: ``(K, B, C, H, W)`` per-run images or ``(N, C, H, W)`` when ``shared``;
        returns float32 logits ``(K, B, c)``."""
        x = x.repeat(1, self.K, 1, 1) if shared else x.transpose(0, 1).reshape(
            x.shape[1], -1, *x.shape[3:])
        if self.device.type == "cuda":
            x = x.contiguous(memory_format=torch.channels_last)
        self.model.train(train)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            out = self.network(x)
        return out.float().reshape(x.shape[0], self.K, -1).transpose(0, 1)

    def snapshot(self) -> list[Tensor]:
        return [t.detach().clone() for t in self.state()]

    def keep_best(self, best: list[Tensor], improved: Tensor) -> None:
        improved = improved.to(self.device)
        for saved, current in zip(best, self.state()):
            # runs are blocks along dim 0 in any memory format (channels-last included)
            saved.unflatten(0, (self.K, -1))[improved] = current.detach().unflatten(0, (self.K, -1))[improved]

    def load(self, saved: list[Tensor]) -> None:
        with torch.no_grad():
            for current, s in zip(self.state(), saved):
                current.copy_(s)


# ---------------------------------------------------------------------- the loop


@dataclass
class GroupData:
    """Tensors of one experiment on the training device; labels are clean."""

    x_train: Tensor
    x_val: Tensor
    x_test: Tensor
    y_test: Tensor
    num_classes: int
    pixel_mean: Tensor | None = None  # images: per-pixel mean of the training split
    augment: bool = False

    def prepare(self, x: Tensor, train: bool) -> Tensor:
        """Model inputs from stored ones: images -> float, mean-subtracted, augmented."""
        if self.pixel_mean is None:
            return x
        shape = x.shape
        images = data_module.prepare_images(x.reshape(-1, *shape[-3:]), self.pixel_mean)
        if train and self.augment:
            images = data_module.augment_batch(images)
        return images.reshape(*shape[:-3], *images.shape[1:])


@dataclass
class RunOutcome:
    test_accuracy: float  # percent, clean test labels
    selected_epoch: int  # 1-based epoch with the lowest validation loss
    val_loss: float  # at the selected epoch
    val_history: list[float]  # validation loss after every epoch
    probs: np.ndarray | None  # (n_train + n_val, c) softmax of the selected model (stage 1)


IDENTITY_MIXES = (0.0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5)


def invertible_backward_matrix(T: np.ndarray) -> np.ndarray:
    """``T_λ⁻¹`` with the smallest λ of :data:`IDENTITY_MIXES` for which
    ``T_λ = (1 − λ) T + λ I`` is well conditioned (§4.1), warning when λ > 0.

    A sweep must not stop because one T̂ (or a true T at a singular rate, such
    as 5↔6 flips at N = 0.5) cannot be inverted."""
    for mix in IDENTITY_MIXES:
        try:
            inverse = losses.backward_matrix(T, identity_mix=mix)
        except ValueError:
            continue
        if mix:
            warnings.warn(f"T is badly conditioned for backward correction; mixed with the identity, "
                          f"identity_mix={mix}", RuntimeWarning, stacklevel=2)
        return inverse
    return losses.backward_matrix(T, identity_mix=IDENTITY_MIXES[-1])  # raises the explanation


def _matrices(method: str, transitions: list[np.ndarray], device: torch.device) -> Tensor | None:
    """Per-run ``(K, c, c)`` matrix of a correction: log T (forward), T⁻¹ (backward)."""
    if method.startswith("forward"):
        stacked = [losses.log_transition(T) for T in transitions]
    elif method.startswith("backward"):
        stacked = [invertible_backward_matrix(T) for T in transitions]
    else:
        return None
    return torch.tensor(np.stack(stacked), dtype=torch.float32, device=device)


_BASELINES = {
    "cross_entropy": losses.cross_entropy,
    "unhinged_bn": losses.unhinged,
    "sigmoid_bn": losses.sigmoid,
    "savage": losses.savage,
    "bootstrap_soft": losses.bootstrap_soft,
    "bootstrap_hard": losses.bootstrap_hard,
}


def per_run_losses(method: str, logits: Tensor, target: Tensor, matrices: Tensor | None) -> Tensor:
    """Per-example losses ``(K, B)`` of K runs of ``method``: logits ``(K, B, c)``,
    target ``(K, B)``, ``matrices`` from :func:`_matrices` (corrections only)."""
    if method.startswith("forward"):
        return losses.per_example_forward(logits, target, matrices)
    if method.startswith("backward"):  # clipped as in the authors' code: bounded below
        return losses.per_example_backward(logits, target, matrices, losses.KERAS_EPSILON)
    K, B, c = logits.shape
    return _BASELINES[method](logits.reshape(K * B, c), target.reshape(K * B), reduction="none").view(K, B)


def _optimizer(schedule: Schedule, params: list[Tensor]):
    if schedule.optimizer == "adagrad":
        # The fused kernel exists for CPU tensors only; it makes one pass over
        # the (K, in, out) accumulators instead of four.
        fused = all(p.device.type == "cpu" for p in params)
        opt = torch.optim.Adagrad(params, lr=schedule.lr, eps=schedule.eps, fused=fused)
    elif schedule.optimizer == "sgd":
        opt = torch.optim.SGD(
            params, lr=schedule.lr, momentum=schedule.momentum, weight_decay=schedule.weight_decay
        )
    else:
        raise ValueError(f"unknown optimizer {schedule.optimizer!r}; known: adagrad, sgd")
    return opt, torch.optim.lr_scheduler.MultiStepLR(opt, list(schedule.milestones), gamma=0.1)


def _evaluate(stack, data: GroupData, x: Tensor, fn) -> list[Tensor]:
    """Apply ``fn(logits (K, b, c), slice)`` to eval-mode logits of shared inputs, in chunks."""
    out = []
    with torch.no_grad():
        for start in range(0, x.shape[0], EVAL_BATCH):
            chunk = slice(start, start + EVAL_BATCH)
            out.append(fn(stack.forward(data.prepare(x[chunk], False), train=False, shared=True), chunk))
    return out


def order_seed(seed: int) -> int:
    """The seed of a run's data order, derived from the run's seed (which itself
    seeds the noisy labels and the initialisation)."""
    return 1_000_003 * seed + 1


def dropout_seed(seed: int) -> int:
    """The seed of a run's dropout masks, derived from the run's seed."""
    return 1_000_003 * seed + 2


CHECKPOINT_SECONDS = 60.0  # a group's training state is saved at most this often


def _to_device(obj, device: torch.device):
    """``obj`` (tensors in nested lists and dicts) with every tensor on ``device``."""
    if isinstance(obj, Tensor):
        return obj.to(device)
    if isinstance(obj, dict):
        return {k: _to_device(v, device) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_to_device(v, device) for v in obj]
    return obj


def _rng_states(stack, order: list[torch.Generator], device: torch.device) -> dict:
    """Every random stream a group draws from: data order, per-run dropout
    (:class:`StackedMLP`), and torch's global generators (dropout of module
    runs, batch augmentation)."""
    return dict(
        order=[g.get_state() for g in order],
        runs=[g.get_state() for g in getattr(stack, "generators", [])],
        cpu=torch.get_rng_state(),
        cuda=torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
    )


def _set_rng_states(states: dict, stack, order: list[torch.Generator], device: torch.device) -> None:
    for g, state in zip(order, states["order"]):
        g.set_state(state)
    for g, state in zip(getattr(stack, "generators", []), states["runs"]):
        g.set_state(state)
    torch.set_rng_state(states["cpu"])
    if device.type == "cuda" and states["cuda"] is not None:
        torch.cuda.set_rng_state(states["cuda"], device)


def train_group(
    stack,
    method: str,
    data: GroupData,
    y_train: Tensor,
    y_val: Tensor,
    matrices: Tensor | None,
    schedule: Schedule,
    order_seeds: list[int],
    want_probs: bool = False,
    progress: bool = True,
    desc: str = "",
    on_epoch: Callable[[int, Any], None] | None = None,
    checkpoint: str | Path | None = None,
    checkpoint_seconds: float | None = None,
) -> list[RunOutcome]:
    """Train K runs of ``method`` together; ``y_train (K, n)``, ``y_val (K, n_val)`` noisy.

    Each epoch visits every run's own permutation of the training set in batches;
    the loss is the sum over runs of each run's batch mean, so runs do not
    interact. After each epoch the validation loss selects the best epoch.
    ``on_epoch(epoch, stack)`` (epochs counted from 1) sees the networks as
    they are at the end of every epoch, before model selection.

    With ``checkpoint`` (a file path), the whole training state (networks,
    optimiser, schedule, selected epochs, random streams) is written there
    after an epoch whenever ``checkpoint_seconds`` have passed since the last
    write (default :data:`CHECKPOINT_SECONDS`), and training resumes from that
    file when it exists: an interrupted group continues where it stopped and
    ends exactly as it would have. The caller removes the file once the
    results are stored.
    """
    K, n = y_train.shape
    device = y_train.device
    opt, lr_schedule = _optimizer(schedule, stack.parameters())
    order = [torch.Generator().manual_seed(s) for s in order_seeds]
    best = stack.snapshot()
    best_loss = torch.full((K,), math.inf, device=device)
    best_epoch = torch.zeros(K, dtype=torch.long)
    history = []
    first_epoch = 0
    if checkpoint is not None and Path(checkpoint).is_file():
        saved = torch.load(checkpoint, map_location="cpu", weights_only=False)
        first_epoch, history, best_epoch = saved["epoch"], saved["history"], saved["best_epoch"]
        stack.load(saved["stack"])
        best, best_loss = _to_device(saved["best"], device), saved["best_loss"].to(device)
        opt.load_state_dict(saved["optimizer"])
        lr_schedule.load_state_dict(saved["lr_schedule"])
        _set_rng_states(saved["rng"], stack, order, device)
    every = CHECKPOINT_SECONDS if checkpoint_seconds is None else checkpoint_seconds
    last_save = time.perf_counter()
    bar = tqdm(range(first_epoch, schedule.epochs), desc=desc, disable=not progress, leave=False,
               initial=first_epoch, total=schedule.epochs)
    for epoch in bar:
        perms = torch.stack([torch.randperm(n, generator=g) for g in order]).to(device)
        for start in range(0, n, schedule.batch_size):
            idx = perms[:, start : start + schedule.batch_size]
            logits = stack.forward(data.prepare(data.x_train[idx], True), train=True)
            loss = per_run_losses(method, logits, y_train.gather(1, idx), matrices).mean(dim=1).sum()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        lr_schedule.step()
        if on_epoch is not None:
            on_epoch(epoch + 1, stack)
        val = torch.stack(
            _evaluate(stack, data, data.x_val,
                      lambda z, s: per_run_losses(method, z, y_val[:, s], matrices).sum(dim=1))
        ).sum(dim=0) / y_val.shape[1]
        history.append(val.tolist())
        improved = torch.nan_to_num(val, nan=math.inf) < best_loss
        stack.keep_best(best, improved)
        best_loss = torch.where(improved, val, best_loss)
        best_epoch[improved.cpu()] = epoch + 1
        bar.set_postfix(val_loss=f"{val.mean().item():.4f}")
        if checkpoint is not None and time.perf_counter() - last_save >= every:
            _save_atomically(checkpoint, dict(
                epoch=epoch + 1, history=history, best_epoch=best_epoch, stack=stack.snapshot(), best=best,
                best_loss=best_loss, optimizer=opt.state_dict(), lr_schedule=lr_schedule.state_dict(),
                rng=_rng_states(stack, order, device),
            ))
            last_save = time.perf_counter()
    stack.load(best)
    correct = torch.stack(
        _evaluate(stack, data, data.x_test,
                  lambda z, s: (z.argmax(dim=-1) == data.y_test[s]).sum(dim=1))
    ).sum(dim=0)
    accuracy = (100.0 * correct.double() / data.y_test.shape[0]).tolist()
    probs = None
    if want_probs:
        x_prime = torch.cat([data.x_train, data.x_val])  # X' = training + validation inputs
        probs = torch.cat(_evaluate(stack, data, x_prime, lambda z, s: z.softmax(dim=-1)), dim=1)
        probs = probs.double().cpu().numpy()
    return [
        RunOutcome(accuracy[k], int(best_epoch[k]), float(best_loss[k]),
                   [epoch_losses[k] for epoch_losses in history], None if probs is None else probs[k])
        for k in range(K)
    ]


def _save_atomically(path: str | Path, state: dict) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".tmp")
    torch.save(state, partial)
    os.replace(partial, path)


# ------------------------------------------------------------------ orchestration


@dataclass
class NoisyLabels:
    """The noisy training and validation labels of one (noise, rate, run)."""

    T: np.ndarray
    y_train: np.ndarray
    y_val: np.ndarray


def noisy_labels(experiment: Experiment, split, noise_kind: str, rate: float, run: int) -> NoisyLabels:
    """Corrupt the clean training and validation labels with the setting's true T.

    The draw depends on (run, noise, rate) only, so every method of a run sees
    the same noisy labels."""
    T = transition_for(experiment, split.num_classes, noise_kind, rate)
    rng = np.random.default_rng([run, NOISES.index(noise_kind), round(rate * 1_000_000)])
    return NoisyLabels(
        T, noise.corrupt(split.y_train.numpy(), T, rng), noise.corrupt(split.y_val.numpy(), T, rng)
    )


def _build_stack(experiment: Experiment, method: str, cells: list[Cell], split, device: torch.device,
                 bf16: bool = False):
    modules = []
    for cell in cells:
        torch.manual_seed(cell.seed)
        modules.append(
            models.build_model(
                experiment.model, split.num_classes, input_dim=split.x_train[0].numel(),
                bn_head=method in BN_HEAD_METHODS, **experiment.model_kwargs,
            )
        )
    if isinstance(modules[0], models.MLP):
        return StackedMLP(modules, [dropout_seed(c.seed) for c in cells], device)
    if device.type == "cuda" and isinstance(modules[0], models.PreActResNet):
        return GroupedRuns(modules, device, bf16=bf16)
    return ModuleRuns(modules, device, bf16=bf16)


def _group_data(experiment: Experiment, split, device: torch.device) -> GroupData:
    images = split.x_train.dtype == torch.uint8
    return GroupData(
        split.x_train.to(device), split.x_val.to(device), split.x_test.to(device),
        split.y_test.to(device), split.num_classes,
        pixel_mean=data_module.pixel_mean(split.x_train).to(device) if images else None,
        augment=experiment.augment,
    )


def run_cells(
    experiment: Experiment | str,
    cells: Iterable[Cell],
    *,
    profile: str = "paper",
    data_root=None,
    device: str | torch.device = "auto",
    results_dir="results",
    epochs: int | None = None,
    limit: int | None = None,
    max_runs_per_group: int = 32,
    precision: str = "auto",
    progress: bool = True,
    split: data_module.Split | None = None,
) -> pd.DataFrame:
    """Train every cell not yet in the results store and append one row per run.

    ``experiment`` is a key of :data:`EXPERIMENTS` or your own
    :class:`Experiment`; ``split`` (e.g. from :func:`losscorrection.data.split_arrays`)
    replaces loading ``experiment.dataset`` (and ``limit``), so Algorithm 1
    runs on your data.
    Labels that are already noisy go with the setting ``("none", 0.0)``: no
    noise is added, the T̂ methods estimate it, and ``T_error`` is then
    measured against the identity.

    Cells already stored (same method, noise, rate, run and profile) are
    skipped, so an interrupted sweep resumes where it stopped; each finished
    group of runs is written before the next one starts. ``epochs`` and
    ``limit`` (examples kept per split) override the profile's. ``precision``:
    ``fp32``, ``bf16`` (autocast of the forward pass, module models only) or
    ``auto`` (bf16 for the convolutional and recurrent models on CUDA). Returns
    the new rows.
    """
    experiment = get_experiment(experiment) if isinstance(experiment, str) else experiment
    settings = profile_settings(experiment, profile)
    schedule = replace(settings.schedule, epochs=epochs) if epochs else settings.schedule
    store = ResultStore(results_dir)
    cells = list(dict.fromkeys(cells))
    done = store.done_cells(experiment.key)
    pending = [c for c in cells if cell_key(c.method, *c.noise_key, profile) not in done]
    if not pending:
        return pd.DataFrame()
    if precision not in ("auto", "fp32", "bf16"):
        raise ValueError(f"unknown precision {precision!r}; known: auto, fp32, bf16")
    device = resolve_device(device)
    bf16 = precision == "bf16" or (precision == "auto" and device.type == "cuda" and experiment.model != "mlp")
    if split is None:
        split = data_module.load_dataset(
            experiment.dataset, data_root, limit=limit or settings.limit, **experiment.dataset_kwargs
        )
    data = _group_data(experiment, split, device)
    labels = {key: noisy_labels(experiment, split, *key) for key in {c.noise_key for c in pending}}
    provenance = dict(
        experiment=experiment.key, model=experiment.model, profile=profile, epochs=schedule.epochs,
        device=device_description(device) + (", bf16 autocast" if bf16 else ""), torch_version=torch.__version__, git_commit=git_commit(),
    )

    # Stage 1 of Algorithm 1: cross-entropy runs, whose models give T̂.
    estimated: dict[tuple, np.ndarray] = {}
    for key in {c.noise_key for c in pending if c.method.endswith("That")}:
        stored = store.get_transition(experiment.key, *key, profile)
        if stored is not None:
            estimated[key] = stored
    stage_one = [c for c in pending if c.method == STAGE_ONE] + [
        Cell(STAGE_ONE, *key) for key in labels
        if key not in estimated and any(c.method.endswith("That") and c.noise_key == key for c in pending)
    ]
    by_method = {STAGE_ONE: list(dict.fromkeys(stage_one))}
    for cell in pending:
        if cell.method != STAGE_ONE:
            by_method.setdefault(cell.method, []).append(cell)

    labels_digest = hashlib.sha1(
        b"".join(y.numpy().tobytes() for y in (split.y_train, split.y_val, split.y_test))).hexdigest()
    new_rows = []
    for method, method_cells in by_method.items():
        for start in range(0, len(method_cells), max_runs_per_group):
            group = method_cells[start : start + max_runs_per_group]
            checkpoint = _checkpoint_path(results_dir, experiment, method, group, profile, schedule,
                                          (split.sizes, labels_digest), device, bf16)
            rows, transitions = _train_cells(
                experiment, method, group, split, data, labels, estimated, schedule, device,
                progress, provenance, bf16, checkpoint,
            )
            estimated.update(transitions)
            store.put_transitions(
                experiment.key, [(*key, profile, T_hat) for key, T_hat in transitions.items()]
            )
            rows = [r for r in rows if cell_key(r["method"], r["noise"], r["rate"], r["run"], profile) not in done]
            store.append(rows)
            checkpoint.unlink(missing_ok=True)
            new_rows.extend(rows)
    return pd.DataFrame(new_rows)


def _checkpoint_path(results_dir, experiment: Experiment, method: str, group: list[Cell], profile: str,
                     schedule: Schedule, data_identity: tuple, device: torch.device, bf16: bool) -> Path:
    """Where a group's unfinished training is kept (``<results>/.partial/``, ignored
    by git): named by everything that determines the group's training, the data
    (``data_identity``: its sizes and a digest of its labels) included."""
    what = repr((experiment.key, method, profile, schedule, data_identity, device.type, bf16,
                 [(c.method, *c.noise_key) for c in group]))
    digest = hashlib.sha1(what.encode()).hexdigest()[:16]
    return Path(results_dir) / ".partial" / f"{experiment.key}-{method}-{digest}.pt"


def _train_cells(experiment, method, group, split, data, labels, estimated, schedule, device, progress,
                 provenance, bf16, checkpoint):
    """Train one group of runs of one method (resuming from ``checkpoint`` when it
    exists); return result rows and new T̂s (stage 1)."""
    uses_estimate = method.endswith("That")
    transitions = [estimated[c.noise_key] if uses_estimate else labels[c.noise_key].T for c in group]
    matrices = _matrices(method, transitions, device)
    stack = _build_stack(experiment, method, group, split, device, bf16)
    y_train = torch.tensor(np.stack([labels[c.noise_key].y_train for c in group]), device=device)
    y_val = torch.tensor(np.stack([labels[c.noise_key].y_val for c in group]), device=device)
    started = time.perf_counter()
    outcomes = train_group(
        stack, method, data, y_train, y_val, matrices, schedule,
        order_seeds=[order_seed(c.seed) for c in group], want_probs=method == STAGE_ONE,
        progress=progress, desc=f"{experiment.key} {method} ({len(group)} runs)", checkpoint=checkpoint,
    )
    wall = (time.perf_counter() - started) / len(group)
    new_transitions = {}
    rows = []
    for cell, outcome in zip(group, outcomes):
        T_error = math.nan
        if method == STAGE_ONE:
            new_transitions[cell.noise_key] = estimate_transition(outcome.probs, experiment.quantile)
        if uses_estimate:
            T_error = estimation_error(estimated[cell.noise_key], labels[cell.noise_key].T)
        rows.append(dict(
            provenance, method=method, noise=cell.noise, rate=cell.rate, run=cell.run, seed=cell.seed,
            test_accuracy=round(outcome.test_accuracy, 4), selected_epoch=outcome.selected_epoch,
            T_error=T_error, wall_seconds=round(wall, 3), timestamp=timestamp(),
        ))
    return rows, new_transitions


def ensure_results(
    experiment: Experiment | str,
    cells: Iterable[Cell],
    *,
    profile: str,
    reuse_results: bool = True,
    train_missing: bool = True,
    data_root=None,
    device: str | torch.device = "auto",
    results_dir="results",
    epochs: int | None = None,
    limit: int | None = None,
    progress: bool = True,
) -> tuple[pd.DataFrame, str | None]:
    """The stored runs of ``cells`` under ``profile``, training missing ones if asked.

    ``reuse_results=False`` retrains every cell into a fresh temporary store, so
    committed results are never overwritten. When the data is absent (or
    ``train_missing`` is off) nothing is trained and the returned note says why,
    e.g. ``"not run here: needs MNIST ..."``; the note is None when every cell
    has a result. Returns ``(rows, note)`` with the rows restricted to ``cells``.
    """
    experiment = get_experiment(experiment) if isinstance(experiment, str) else experiment
    cells = list(dict.fromkeys(cells))
    store_dir = results_dir if reuse_results else tempfile.mkdtemp(prefix=f"{experiment.key}-")
    note = None
    if train_missing:
        try:
            run_cells(experiment, cells, profile=profile, data_root=data_root, device=device,
                      results_dir=store_dir, epochs=epochs, limit=limit, progress=progress)
        except data_module.MissingDataError as err:
            note = _needs_data_note(experiment, err.missing or [str(err)])
    frame = ResultStore(store_dir).load(experiment.key)
    wanted = {cell_key(c.method, *c.noise_key, profile) for c in cells}
    keys = [cell_key(*row) for row in frame[list(CELL_KEY)].itertuples(index=False)]
    frame = frame.loc[np.array([k in wanted for k in keys], dtype=bool)].reset_index(drop=True)
    missing = len(wanted) - len(set(keys) & wanted)
    if missing and note is None:
        absent = data_module.missing_files(experiment.dataset, data_root)
        note = (_needs_data_note(experiment, absent) if absent
                else f"{missing} of {len(wanted)} runs ({profile} profile) not run yet")
    return frame, note


def _needs_data_note(experiment: Experiment, missing: list[str]) -> str:
    files = ", ".join(Path(m).name for m in missing)
    return f"not run here: needs {experiment.dataset} data ({files}; see the README's Data section)"
