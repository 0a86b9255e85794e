"""One network, one loss, a plain PyTorch loop: :func:`fit`.

The batched trainer (:func:`~losscorrection.training.train_group`) trains
many runs of the paper's networks at once. :func:`fit` is the loop for
everything else: your own network and data loaders (the book's last chapter)
and Clothing1M's ResNet-50. The loss is any of
:func:`losscorrection.losses.make_loss`'s, so forward or backward correction
is one argument; model selection follows the paper: with a validation loader,
the epoch with the lowest validation loss, computed with the same (corrected)
loss on the noisy validation labels, is kept.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable

import torch
from torch import nn

__all__ = ["fit"]


def fit(
    model: nn.Module,
    loss_fn: nn.Module,
    train_loader: Iterable,
    optimizer: torch.optim.Optimizer,
    *,
    epochs: int,
    val_loader: Iterable | None = None,
    lr_scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    max_steps: int | None = None,
    device: str | torch.device = "cpu",
) -> nn.Module:
    """Train ``model`` on ``train_loader`` and return it in eval mode.

    Parameters
    ----------
    model
        Maps a batch of inputs ``(b, ...)`` to logits ``(b, c)``; moved to ``device``.
    loss_fn
        ``loss_fn(logits (b, c), labels (b,))`` -> the batch mean, e.g.
        ``losses.make_loss("forward", T=T_hat)`` (Eq. 11).
    train_loader, val_loader
        Iterables of ``(inputs, labels)`` batches (e.g. ``DataLoader``\\ s); the
        labels are the noisy ones. With ``val_loader``, the parameters of the
        epoch with the lowest mean ``loss_fn`` over its examples are restored
        at the end (the first such epoch on ties); without it, the last epoch's
        are kept.
    optimizer
        Built on ``model``'s parameters.
    epochs
        Passes over ``train_loader``.
    lr_scheduler
        Stepped after every epoch (e.g. ``MultiStepLR`` for a piecewise-constant rate).
    max_steps
        Stop after this many optimiser steps in all, even within an epoch (that
        epoch is still validated): a quick check of a long training's code path.
    device
        Where the model, the loss and each batch go.
    """
    if epochs < 1:
        raise ValueError(f"epochs must be at least 1, got {epochs}")
    if max_steps is not None and max_steps < 1:
        raise ValueError(f"max_steps must be at least 1, got {max_steps}")
    model, loss_fn = model.to(device), loss_fn.to(device)
    best_loss, best_state, steps = math.inf, None, 0
    for _ in range(epochs):
        model.train()
        for inputs, labels in train_loader:
            loss = loss_fn(model(inputs.to(device, non_blocking=True)), labels.to(device, non_blocking=True))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            steps += 1
            if steps == max_steps:
                break
        if lr_scheduler is not None:
            lr_scheduler.step()
        if val_loader is not None:
            val_loss = _mean_loss(model, loss_fn, val_loader, device)
            if val_loss < best_loss:
                best_loss, best_state = val_loss, copy.deepcopy(model.state_dict())
        if steps == max_steps:
            break
    if best_state is not None:
        model.load_state_dict(best_state)
    return model.eval()


@torch.no_grad()
def _mean_loss(model: nn.Module, loss_fn: nn.Module, loader: Iterable, device: str | torch.device) -> float:
    """``loss_fn`` averaged over every example of ``loader`` (batch means weighted by batch size)."""
    model.eval()
    total, count = 0.0, 0
    for inputs, labels in loader:
        total += loss_fn(model(inputs.to(device)), labels.to(device)).item() * len(labels)
        count += len(labels)
    return total / count
