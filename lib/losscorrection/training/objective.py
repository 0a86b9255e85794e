"""The training objective of K runs at once: per-example losses of every method
of Table 2 on stacked logits ``(K, B, c)``, with each run's own matrix for the
corrections (log T for the forward correction, Eq. 11; T⁻¹ for the backward
one, Eq. 8, made invertible by mixing with the identity when T is badly
conditioned, Section 4.1).
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from torch import Tensor

from .. import losses
from ..methods import method_spec

__all__ = [
    "IDENTITY_MIXES", "correction_matrices", "identity_mix_for", "invertible_backward_matrix", "per_run_losses",
]

IDENTITY_MIXES = (0.0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5)


def identity_mix_for(T: np.ndarray) -> float:
    """The smallest λ of :data:`IDENTITY_MIXES` for which ``T_λ = (1 − λ) T + λ I``
    is well conditioned enough to invert (§4.1); ValueError explaining why when
    none is. A sweep must not stop because one T̂ (or a true T at a singular
    rate, such as 5↔6 flips at N = 0.5) cannot be inverted."""
    for mix in IDENTITY_MIXES:
        try:
            losses.backward_matrix(T, identity_mix=mix)
        except ValueError as err:
            failure = err
            continue
        return mix
    raise failure


def invertible_backward_matrix(T: np.ndarray) -> np.ndarray:
    """``T_λ⁻¹`` with λ = :func:`identity_mix_for` ``(T)``, warning when λ > 0."""
    mix = identity_mix_for(T)
    if mix:
        warnings.warn(f"T is badly conditioned for backward correction; mixed with the identity, "
                      f"identity_mix={mix}", RuntimeWarning, stacklevel=2)
    return losses.backward_matrix(T, identity_mix=mix)


def correction_matrices(method: str, transitions: list[np.ndarray], device: torch.device) -> Tensor | None:
    """Per-run ``(K, c, c)`` matrix of a correction, float32 on ``device``: log T
    for the forward correction, T⁻¹ for the backward one; None for a baseline."""
    correction = method_spec(method).correction
    if correction == "forward":
        stacked = [losses.log_transition(T) for T in transitions]
    elif correction == "backward":  # the mixing is recorded with each run (identity_mix)
        stacked = [losses.backward_matrix(T, identity_mix=identity_mix_for(T)) for T in transitions]
    else:
        return None
    return torch.tensor(np.stack(stacked), dtype=torch.float32, device=device)


_BASELINE_LOSSES = {
    "cross_entropy": losses.cross_entropy,
    "unhinged": losses.unhinged,
    "sigmoid": losses.sigmoid,
    "savage": losses.savage,
    "bootstrap_soft": losses.bootstrap_soft,
    "bootstrap_hard": losses.bootstrap_hard,
}


def per_run_losses(method: str, logits: Tensor, target: Tensor, matrices: Tensor | None,
                   clipped_cross_entropy: bool = False) -> Tensor:
    """Per-example losses ``(K, B)`` of K runs of ``method``: logits ``(K, B, c)``,
    target ``(K, B)``, ``matrices`` from :func:`correction_matrices` (corrections only).
    ``clipped_cross_entropy``: cross-entropy on probabilities clipped to ``[ε, 1 − ε]``
    (:func:`~losscorrection.losses.clipped_cross_entropy`, the released code's)."""
    spec = method_spec(method)
    if spec.correction == "forward":
        return losses.per_example_forward(logits, target, matrices)
    if spec.correction == "backward":  # clipped as in the authors' code: bounded below
        return losses.per_example_backward(logits, target, matrices, losses.KERAS_EPSILON)
    K, B, c = logits.shape
    loss = losses.clipped_cross_entropy if clipped_cross_entropy and spec.loss == "cross_entropy" \
        else _BASELINE_LOSSES[spec.loss]
    return loss(logits.reshape(K * B, c), target.reshape(K * B), reduction="none").view(K, B)
