"""Loss functions: cross-entropy, its forward and backward corrections, and the
baselines of the paper's Table 2.

Shapes: ``logits`` is ``(n, c)`` (the network's last, linear layer ``h(x)``),
``target`` is ``(n,)`` integer class indices (the observed, possibly noisy,
labels ỹ). ``T`` is a ``(c, c)`` row-stochastic matrix with
``T[i, j] = p(ỹ=j | y=i)``, given as a NumPy array or a tensor. Every loss
returns the batch mean, or the ``(n,)`` per-example losses with
``reduction="none"``.
"""

from __future__ import annotations

import inspect
import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from numpy.typing import ArrayLike
from torch import Tensor, nn

from .noise import validate_transition

__all__ = [
    "LOSS_NAMES",
    "backward_corrected",
    "backward_matrix",
    "bootstrap_hard",
    "bootstrap_soft",
    "clipped_cross_entropy",
    "cross_entropy",
    "forward_corrected",
    "log_transition",
    "make_loss",
    "per_example_backward",
    "per_example_forward",
    "savage",
    "sigmoid",
    "unhinged",
]

MAX_CONDITION_NUMBER = 1e6
REDUCTIONS = ("mean", "sum", "none")


def _check_inputs(logits: Tensor, target: Tensor) -> Tensor:
    """Check shapes, dtype and range; return ``target`` as int64 class indices."""
    if logits.ndim != 2:
        raise ValueError(f"logits must have shape (n, c), got {tuple(logits.shape)}")
    if target.ndim != 1 or target.shape[0] != logits.shape[0]:
        raise ValueError(
            f"target must have shape (n,) = ({logits.shape[0]},), got {tuple(target.shape)}"
        )
    if target.dtype.is_floating_point or target.dtype == torch.bool:
        raise ValueError(f"target must hold integer class indices, got dtype {target.dtype}")
    c = logits.shape[1]
    if target.numel() and (int(target.min()) < 0 or int(target.max()) >= c):
        bad = target[(target < 0) | (target >= c)][0].item()
        raise ValueError(f"target out of range: found label {bad}, expected 0 <= label < {c}")
    # uint8 would index as a boolean mask and one_hot/gather need int64.
    return target.long()


def _reduce(per_example: Tensor, reduction: str) -> Tensor:
    if reduction == "mean":
        return per_example.mean()
    if reduction == "sum":
        return per_example.sum()
    if reduction == "none":
        return per_example
    raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")


def _as_tensor(matrix: ArrayLike | Tensor, like: Tensor) -> Tensor:
    return torch.as_tensor(np.asarray(matrix) if not isinstance(matrix, Tensor) else matrix).to(
        dtype=like.dtype, device=like.device
    )


def _check_transition_size(T: np.ndarray, logits: Tensor) -> None:
    if T.shape[0] != logits.shape[1]:
        raise ValueError(
            f"T is {T.shape[0]}x{T.shape[0]} but logits have {logits.shape[1]} classes"
        )


def cross_entropy(logits: Tensor, target: Tensor, reduction: str = "mean") -> Tensor:
    """Cross-entropy ``ℓ(e_y, p̂) = -log softmax(h)_y`` (Sec. 3)."""
    target = _check_inputs(logits, target)
    return _reduce(-logits.log_softmax(dim=1).gather(1, target[:, None])[:, 0], reduction)


# --------------------------------------------------------------------------- forward


def _rows_for_targets(matrix: Tensor, target: Tensor) -> Tensor:
    """``matrix[..., target, :]``: ``(..., c, c)`` and ``(..., n)`` -> ``(..., n, c)``."""
    return torch.take_along_dim(matrix, target[..., None], dim=-2)


def per_example_forward(logits: Tensor, target: Tensor, log_T: Tensor) -> Tensor:
    """Unchecked kernel of :func:`forward_corrected`, with optional leading run dims.

    ``logits (..., n, c)``, ``target (..., n)``, ``log_T (..., c, c)`` -> ``(..., n)``:
    ``-log (T^⊤ p̂)_ỹ = -logsumexp_i (log p̂_i + log T[i, ỹ])``.
    """
    log_T_columns = _rows_for_targets(log_T.transpose(-1, -2), target)
    return -torch.logsumexp(logits.log_softmax(dim=-1) + log_T_columns, dim=-1)


def log_transition(T: ArrayLike | Tensor) -> np.ndarray:
    """Entrywise ``log T`` of a validated ``T`` (``-inf`` where ``T`` is zero)."""
    T = validate_transition(T)
    with np.errstate(divide="ignore"):
        return np.log(T)


def forward_corrected(
    logits: Tensor, target: Tensor, T: ArrayLike | Tensor, reduction: str = "mean"
) -> Tensor:
    """Forward-corrected cross-entropy ``ℓ→ = -log (T^⊤ softmax(h))_ỹ`` (Sec. 4.2, Thm. 2).

    Computed in log space as ``-logsumexp_i(log_softmax(h)_i + log T[i, ỹ])``, so
    the loss and its gradient stay finite for huge logits and for zero entries
    of ``T`` (the loss is ``+inf`` only if column ỹ of ``T`` is all zero).
    """
    target = _check_inputs(logits, target)
    log_T = log_transition(T)
    _check_transition_size(log_T, logits)
    return _reduce(per_example_forward(logits, target, _as_tensor(log_T, logits)), reduction)


# -------------------------------------------------------------------------- backward


def backward_matrix(
    T: ArrayLike | Tensor, identity_mix: float = 0.0, max_condition: float = MAX_CONDITION_NUMBER
) -> np.ndarray:
    """Return ``T_λ^{-1}`` for ``T_λ = (1 - λ) T + λ I`` with ``λ = identity_mix`` (Sec. 4.1).

    Raises ValueError when ``T_λ`` is singular or its condition number exceeds
    ``max_condition``: backward correction would multiply losses by huge values.
    """
    T = validate_transition(T)
    if not 0.0 <= identity_mix <= 1.0:
        raise ValueError(f"identity_mix must lie in [0, 1], got {identity_mix}")
    mixed = (1.0 - identity_mix) * T + identity_mix * np.eye(T.shape[0])
    condition = np.linalg.cond(mixed)
    if not np.isfinite(condition) or condition > max_condition:
        raise ValueError(
            f"T is singular or badly conditioned for backward correction (condition number "
            f"{condition:.3g} > {max_condition:.0e}); mix it with the identity before "
            f"inverting, e.g. identity_mix=0.1, or use forward correction"
        )
    return np.linalg.inv(mixed)


KERAS_EPSILON = 1e-7  # the probability clip of the authors' Keras losses


def clipped_cross_entropy(
    logits: Tensor, target: Tensor, reduction: str = "mean", eps: float = KERAS_EPSILON
) -> Tensor:
    """Cross-entropy of probabilities clipped to ``[ε, 1 - ε]``: ``-log clip(softmax(h)_y, ε, 1 - ε)``.

    What the authors' Keras code minimises (its ``crossentropy`` on the softmax
    output, like Keras' ``categorical_crossentropy``, with ε = :data:`KERAS_EPSILON`):
    at most ``-log ε`` ≈ 16.12 per example, and no gradient from an example
    whose label probability lies outside ``[ε, 1 - ε]`` (a confidently
    mislabelled example is ignored, where :func:`cross_entropy` pushes it with
    gradient ≈ 1). Computed in log space, ``clamp(log_softmax(h)_y, log ε,
    log(1 - ε))``, the same values without the softmax's underflow.
    """
    target = _check_inputs(logits, target)
    if not 0.0 < eps < 0.5:
        raise ValueError(f"eps must lie in (0, 0.5), got {eps}")
    log_p = logits.log_softmax(dim=1).gather(1, target[:, None])[:, 0]
    return _reduce(-log_p.clamp(math.log(eps), math.log1p(-eps)), reduction)


def per_example_backward(
    logits: Tensor, target: Tensor, T_inv: Tensor, min_prob: float | None = None
) -> Tensor:
    """Unchecked kernel of :func:`backward_corrected`, with optional leading run dims.

    ``logits (..., n, c)``, ``target (..., n)``, ``T_inv (..., c, c)`` -> ``(..., n)``:
    ``(T^{-1} ℓ(h))_ỹ = Σ_j T^{-1}[ỹ, j] · (-log softmax(h)_j)``, with every
    probability clipped below at ``min_prob`` when given (zero gradient there).
    """
    log_p = logits.log_softmax(dim=-1)
    if min_prob is not None:
        log_p = log_p.clamp(min=math.log(min_prob))
    return -(_rows_for_targets(T_inv, target) * log_p).sum(dim=-1)


def backward_corrected(
    logits: Tensor,
    target: Tensor,
    T: ArrayLike | Tensor,
    identity_mix: float = 0.0,
    reduction: str = "mean",
    min_prob: float | None = None,
) -> Tensor:
    """Backward-corrected cross-entropy ``ℓ← = (T^{-1} ℓ(h))_ỹ`` (Sec. 4.1, Thm. 1).

    ``ℓ(h)`` is the ``(n, c)`` matrix of cross-entropies for every possible label.
    The loss is unbiased: ``Σ_ỹ T[y, ỹ] ℓ←(ỹ) = ℓ(y)``; it can be negative, and
    since ``T⁻¹`` has negative entries it is unbounded below: a network can lower
    it forever by driving some probabilities to zero. ``min_prob`` clips every
    probability below at that value (``KERAS_EPSILON`` = 1e-7 is what the
    authors' Keras code does implicitly), which bounds the loss and stops that
    drift; the trainer uses it. ``identity_mix`` = λ inverts ``(1 - λ) T + λ I``.
    """
    target = _check_inputs(logits, target)
    T_inv = backward_matrix(T, identity_mix)
    _check_transition_size(T_inv, logits)
    _check_min_prob(min_prob)
    return _reduce(per_example_backward(logits, target, _as_tensor(T_inv, logits), min_prob), reduction)


def _check_min_prob(min_prob: float | None) -> None:
    if min_prob is not None and not 0.0 < min_prob < 1.0:
        raise ValueError(f"min_prob must lie in (0, 1) or be None, got {min_prob}")


# ------------------------------------------------------------------------- baselines


TARGETS = ("one_hot", "one_vs_rest")  # multi-class forms of the margin-based baselines


def _check_targets(targets: str) -> None:
    if targets not in TARGETS:
        raise ValueError(f"unknown targets {targets!r} for a margin loss; known: {', '.join(TARGETS)}")


def _margin_loss(margin_loss, outputs: Tensor, target: Tensor, targets: str) -> Tensor:
    """``(1/c) Σ_k φ(s_k o_k)`` per example, ``(n,)``.

    ``targets="one_hot"`` (the authors' code): ``s_k = 1`` for the labelled
    class and ``0`` elsewhere, so the other classes add the constant ``φ(0)``
    and only the labelled output gets a gradient, scaled by 1/c.
    ``targets="one_vs_rest"``: ``s_k = +1`` for the labelled class and ``-1``
    elsewhere, so every output is pushed."""
    _check_targets(targets)
    signs = F.one_hot(target, outputs.shape[1]).to(outputs.dtype)
    if targets == "one_vs_rest":
        signs = 2.0 * signs - 1.0
    return margin_loss(signs * outputs).mean(dim=1)


def unhinged(logits: Tensor, target: Tensor, reduction: str = "mean", targets: str = "one_hot") -> Tensor:
    """Unhinged loss ``φ(v) = 1 - v`` (van Rooyen, Menon & Williamson, NeurIPS 2015).

    Multi-class as ``(1/c) Σ_k φ(s_k h_k)`` with one-hot ``s`` (default, the
    authors' code: ``1 - h_y / c``) or one-vs-rest ``s = ±1`` (``targets=
    "one_vs_rest"``). Unbounded below, so the paper uses it on a
    batch-normalised output layer (method key ``unhinged_bn``).
    """
    target = _check_inputs(logits, target)
    return _reduce(_margin_loss(lambda v: 1.0 - v, logits, target, targets), reduction)


def sigmoid(logits: Tensor, target: Tensor, reduction: str = "mean", targets: str = "one_hot") -> Tensor:
    """Sigmoid loss ``φ(v) = 1 / (1 + e^v)`` (Ghosh, Manwani & Sastry, 2015).

    Multi-class like :func:`unhinged` (one-hot by default). Saturates early, so
    the paper uses it on a batch-normalised output layer (method key ``sigmoid_bn``).
    """
    target = _check_inputs(logits, target)
    return _reduce(_margin_loss(lambda v: torch.sigmoid(-v), logits, target, targets), reduction)


def savage(logits: Tensor, target: Tensor, reduction: str = "mean", targets: str = "one_hot") -> Tensor:
    """Savage loss ``φ(v) = 1 / (1 + e^{2v})^2`` (Masnadi-Shirazi & Vasconcelos, NeurIPS 2008).

    Default, the authors' code: applied to the softmax probabilities ``p``
    (clipped to ``[ε, 1 - ε]``, ε = :data:`KERAS_EPSILON`) with one-hot targets,
    ``(1/c) Σ_k φ(y_k p_k)``. ``targets="one_vs_rest"``: applied to the logits
    with ``s = ±1`` targets, like :func:`unhinged`. Plain linear output in both
    cases; ``φ`` is computed as ``sigmoid(-2v)^2``, which never overflows.
    """
    target = _check_inputs(logits, target)
    _check_targets(targets)
    outputs = logits
    if targets == "one_hot":
        outputs = logits.softmax(dim=1).clamp(KERAS_EPSILON, 1.0 - KERAS_EPSILON)
    return _reduce(_margin_loss(lambda v: torch.sigmoid(-2.0 * v) ** 2, outputs, target, targets), reduction)


def _bootstrap(logits: Tensor, target: Tensor, beta: float, hard: bool, reduction: str) -> Tensor:
    target = _check_inputs(logits, target)
    if not 0.0 <= beta <= 1.0:
        raise ValueError(f"bootstrap beta must lie in [0, 1], got {beta}")
    log_q = logits.log_softmax(dim=1)
    c = logits.shape[1]
    model_target = F.one_hot(log_q.argmax(dim=1), c).to(log_q.dtype) if hard else log_q.exp()
    mixed = beta * F.one_hot(target, c).to(log_q.dtype) + (1.0 - beta) * model_target
    return _reduce(-(mixed * log_q).sum(dim=1), reduction)


def bootstrap_soft(
    logits: Tensor, target: Tensor, beta: float = 0.95, reduction: str = "mean"
) -> Tensor:
    """Soft bootstrapping ``-Σ_k (β t_k + (1-β) q_k) log q_k``, ``q = softmax(h)``.

    Reed et al., "Training deep neural networks on noisy labels with
    bootstrapping" (ICLR workshop 2015), with their β = 0.95. As in that paper
    the gradient flows through both occurrences of ``q``. Plain linear output.
    """
    return _bootstrap(logits, target, beta, hard=False, reduction=reduction)


def bootstrap_hard(
    logits: Tensor, target: Tensor, beta: float = 0.8, reduction: str = "mean"
) -> Tensor:
    """Hard bootstrapping ``-Σ_k (β t_k + (1-β) z_k) log q_k``, ``z = onehot(argmax q)``.

    Reed et al. (2015), with their β = 0.8. Plain linear output.
    """
    return _bootstrap(logits, target, beta, hard=True, reduction=reduction)


# --------------------------------------------------------------------------- modules


class _Loss(nn.Module):
    """A loss as a module: ``loss(logits, target)`` with fixed keyword arguments."""

    def __init__(self, fn, reduction: str = "mean", **kwargs: Any) -> None:
        super().__init__()
        if reduction not in REDUCTIONS:
            raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
        self.fn, self.reduction, self.kwargs = fn, reduction, kwargs

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        return self.fn(logits, target, reduction=self.reduction, **self.kwargs)

    def extra_repr(self) -> str:
        return f"{self.fn.__name__}, reduction={self.reduction!r}"


class _CorrectedLoss(nn.Module):
    """Forward or backward correction with its matrix prepared once (log T or T⁻¹)."""

    def __init__(self, kind: str, matrix: np.ndarray, reduction: str = "mean",
                 min_prob: float | None = None) -> None:
        super().__init__()
        if reduction not in REDUCTIONS:
            raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
        _check_min_prob(min_prob)
        self.kind, self.reduction, self.min_prob = kind, reduction, min_prob
        self.register_buffer("matrix", torch.as_tensor(matrix, dtype=torch.float64))

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        target = _check_inputs(logits, target)
        if self.matrix.shape[0] != logits.shape[1]:
            raise ValueError(
                f"T is {self.matrix.shape[0]}x{self.matrix.shape[0]} but logits have "
                f"{logits.shape[1]} classes"
            )
        matrix = self.matrix.to(dtype=logits.dtype, device=logits.device)
        per_example = (
            per_example_forward(logits, target, matrix)
            if self.kind == "forward"
            else per_example_backward(logits, target, matrix, self.min_prob)
        )
        return _reduce(per_example, self.reduction)

    def extra_repr(self) -> str:
        return f"{self.kind}, classes={self.matrix.shape[0]}, reduction={self.reduction!r}"


_SIMPLE_LOSSES = {
    "cross_entropy": cross_entropy,
    "unhinged": unhinged,
    "sigmoid": sigmoid,
    "savage": savage,
    "bootstrap_soft": bootstrap_soft,
    "bootstrap_hard": bootstrap_hard,
}
LOSS_NAMES = ("cross_entropy", "forward", "backward", *list(_SIMPLE_LOSSES)[1:])


def _check_kwargs(fn, name: str, kwargs: dict[str, Any], positional: int) -> None:
    """Reject keyword arguments ``fn`` does not take after its positional inputs."""
    try:
        inspect.signature(fn).bind_partial(*[None] * positional, **kwargs)
    except TypeError as err:
        raise ValueError(f"bad arguments for loss {name!r}: {err}") from None


def make_loss(name: str, T: ArrayLike | Tensor | None = None, **kwargs: Any) -> nn.Module:
    """Build a loss module ``loss(logits (n, c), target (n,)) -> Tensor`` by name.

    The correction matrix (``log T`` for the forward correction, ``T⁻¹`` for the
    backward one) is computed once here, stored as a float64 buffer (it moves
    with ``.to(device)``) and cast to the logits' dtype on use.

    Parameters
    ----------
    name
        One of :data:`LOSS_NAMES`: ``"forward"`` (ℓ→ = −log Tᵀp̂, Section 4.2)
        and ``"backward"`` (ℓ← = T⁻¹ℓ, Theorem 1) are the paper's corrections;
        the others are its baselines.
    T
        ``(c, c)`` row-stochastic noise matrix, ``T[i, j] = p(ỹ = j | y = i)``;
        needed by ``forward`` and ``backward``, refused by the others.
    **kwargs
        ``reduction`` (``"mean"``, ``"sum"`` or ``"none"``) for every loss;
        ``backward``: ``identity_mix`` (mix T with the identity before inverting,
        default 0), ``max_condition`` (refuse a T whose condition number exceeds
        it, default :data:`MAX_CONDITION_NUMBER`) and ``min_prob`` (clip
        probabilities below, e.g. :data:`KERAS_EPSILON`; default None);
        ``bootstrap_soft`` and ``bootstrap_hard``: ``beta`` (default 0.95 and 0.8);
        ``unhinged``, ``sigmoid`` and ``savage``: ``targets`` (``"one_hot"``, the
        authors' code, or ``"one_vs_rest"``). Any other keyword is refused by name.
    """
    reduction = kwargs.pop("reduction", "mean")
    if name in ("forward", "backward"):
        if T is None:
            raise ValueError(f"loss {name!r} needs the noise matrix T (make_loss({name!r}, T=...))")
        if name == "forward":
            _check_kwargs(log_transition, name, kwargs, positional=1)
            return _CorrectedLoss("forward", log_transition(T), reduction)
        min_prob = kwargs.pop("min_prob", None)
        _check_kwargs(backward_matrix, name, kwargs, positional=1)
        return _CorrectedLoss("backward", backward_matrix(T, **kwargs), reduction, min_prob)
    if name not in _SIMPLE_LOSSES:
        raise ValueError(f"unknown loss {name!r}; known: {', '.join(LOSS_NAMES)}")
    if T is not None:
        raise ValueError(f"loss {name!r} does not use a noise matrix T")
    _check_kwargs(_SIMPLE_LOSSES[name], name, kwargs, positional=2)
    return _Loss(_SIMPLE_LOSSES[name], reduction, **kwargs)
