"""Anchor-point estimator of the noise matrix T (Patrini et al., 2017, Sec. 4.3, Thm. 3)."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from .noise import validate_transition

__all__ = ["anchor_indices", "estimate_transition", "estimation_error"]

PROBABILITY_TOLERANCE = 1e-3  # softmax outputs in float32 sum to 1 only up to rounding


def _check_probabilities(probs: ArrayLike) -> np.ndarray:
    if hasattr(probs, "detach"):
        probs = probs.detach().cpu().numpy()
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] < 2 or p.shape[0] < 1:
        raise ValueError(f"probs must have shape (n, c) with n >= 1 and c >= 2, got {p.shape}")
    if not np.all(np.isfinite(p)):
        raise ValueError("probs contains NaN or infinite values")
    if p.min() < 0.0 or p.max() > 1.0:
        raise ValueError(
            f"probs must lie in [0, 1] (softmax outputs), found values in [{p.min():g}, {p.max():g}]"
        )
    sums = p.sum(axis=1)
    bad = np.flatnonzero(np.abs(sums - 1.0) > PROBABILITY_TOLERANCE)
    if bad.size:
        raise ValueError(
            f"rows of probs must sum to 1 (softmax outputs): row {bad[0]} sums to {sums[bad[0]]:.6g}"
        )
    return p


def anchor_indices(probs: ArrayLike, quantile: float | None = 0.97) -> np.ndarray:
    """Index of the anchor ("perfect example") of every class, Eq. (12).

    ``probs``: ``(n, c)`` noisy-class posteriors p̂(ỹ | x). For class ``i`` the
    anchor is the example whose ``probs[:, i]`` is the order statistic at
    ``quantile`` (rank ``floor(quantile · (n - 1))`` in increasing order): the
    paper's α-percentile, robust to a few overconfident outliers.
    ``quantile=None`` (or 1.0) takes the argmax, as Eq. (12) states.
    Returns ``(c,)`` int64 indices into the rows of ``probs``.
    """
    return _anchors(_check_probabilities(probs), quantile)


def _anchors(p: np.ndarray, quantile: float | None) -> np.ndarray:
    if quantile is None:
        return p.argmax(axis=0)
    if not 0.0 <= quantile <= 1.0:
        raise ValueError(f"quantile must lie in [0, 1] or be None, got {quantile}")
    rank = int(np.floor(quantile * (p.shape[0] - 1)))
    return np.argpartition(p, rank, axis=0)[rank]


def estimate_transition(
    probs: ArrayLike, quantile: float | None = 0.97, row_normalize: bool = True
) -> np.ndarray:
    """Estimate T from the softmax outputs of a network trained on noisy labels.

    Eq. (12)–(13): for each class ``i`` take its anchor ``x̄_i`` (see
    :func:`anchor_indices`) and set ``T̂[i, :] = p̂(ỹ | x̄_i)``.

    Parameters
    ----------
    probs
        ``(n, c)`` softmax outputs of the stage-1 network on any sample X' (the
        paper uses the training and validation inputs); never modified.
    quantile
        The percentile α of the anchor within column ``i`` (0.97 in the paper);
        None takes the arg-max of Eq. 12.
    row_normalize
        Rescale every row to sum to one, as the paper does after estimation.

    Returns
    -------
    numpy.ndarray
        ``(c, c)`` float64, row ``i`` the prediction at the anchor of class ``i``.
    """
    p = _check_probabilities(probs)
    T_hat = p[_anchors(p, quantile)]  # fancy indexing copies
    if row_normalize:
        T_hat /= T_hat.sum(axis=1, keepdims=True)
    return T_hat


def estimation_error(T_hat: ArrayLike, T: ArrayLike) -> float:
    """Relative entrywise L1 error ``‖T̂ - T‖₁ / ‖T‖₁`` (sums of absolute entries)."""
    T = validate_transition(T)
    T_hat = np.asarray(T_hat, dtype=np.float64)
    if T_hat.shape != T.shape:
        raise ValueError(f"T_hat has shape {T_hat.shape} but T has shape {T.shape}")
    return float(np.abs(T_hat - T).sum() / np.abs(T).sum())
