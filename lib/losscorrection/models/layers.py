"""The building blocks shared by every architecture of the paper (§5).

:func:`output_head`, the batch-normalised output layer that §5.2 puts right
before the unhinged and sigmoid losses; the initialisers of §5 (He et al. 2015
normal for layers followed by a ReLU, uniform in ``[-0.05, 0.05]`` otherwise,
zero biases); :class:`SpatialDropout1d` (Keras ``SpatialDropout1D``, used by
the IMDB embedding model of §5.1); and the check of dropout rates.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["UNIFORM_SCALE", "SpatialDropout1d", "kernels", "output_head"]

UNIFORM_SCALE = 0.05


KERAS_BN_EPS = 1e-3  # Keras BatchNormalization's epsilon
KERAS_BN_MOMENTUM = 0.01  # Keras' momentum 0.99 for the moving averages, in PyTorch's convention


def output_head(num_classes: int, affine: bool = True) -> nn.BatchNorm1d:
    """The batch-normalised output layer used with the unhinged and sigmoid losses.

    §5.2: both losses misbehave on raw network outputs (unhinged is unbounded,
    sigmoid saturates), so, following the papers that introduced them, the
    logits are normalised by a batch normalisation layer placed right before
    the loss. As in the authors' code (Keras ``BatchNormalization``), the layer
    learns a scale and a shift per class (``affine=True``) and uses Keras'
    ``eps = 1e-3`` and moving-average momentum 0.99 (PyTorch's ``momentum =
    0.01``). ``affine=False`` gives outputs with batch mean 0 and variance 1
    exactly, with PyTorch's defaults (``eps = 1e-5``, ``momentum = 0.1``). In
    evaluation mode the running statistics are used. Input and output
    ``(n, num_classes)``.
    """
    if not affine:
        return nn.BatchNorm1d(num_classes, affine=False)
    return nn.BatchNorm1d(num_classes, eps=KERAS_BN_EPS, momentum=KERAS_BN_MOMENTUM)


def kernels(module: nn.Module) -> list[nn.Parameter]:
    """The weights of ``module``'s convolution and dense layers: what the authors'
    code puts its L2 penalty on (not biases, not batch-norm scales and shifts)."""
    return [m.weight for m in module.modules() if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Linear))]


def _he_normal(weight: Tensor) -> None:
    """He et al. (2015) normal, std ``sqrt(2 / fan_in)``: layers followed by ReLU."""
    nn.init.kaiming_normal_(weight, mode="fan_in", nonlinearity="relu")


def _keras2_he_normal(weight: Tensor) -> None:
    """Keras 2 ``he_normal`` (``VarianceScaling(2, "fan_in", "normal")``): a normal
    with std ``s = sqrt(2 / fan_in)`` truncated to ``[-2s, 2s]`` (values beyond are
    redrawn), so the weights' std is ``0.8796 s``. ``fan_in = weight[0].numel()``:
    inputs of a dense layer, ``k*k*in_channels`` of a convolution."""
    std = (2.0 / weight[0].numel()) ** 0.5
    nn.init.trunc_normal_(weight, 0.0, std, -2.0 * std, 2.0 * std)


def _uniform(weight: Tensor) -> None:
    """Uniform in ``[-0.05, 0.05]``: the paper's init for every other layer."""
    nn.init.uniform_(weight, -UNIFORM_SCALE, UNIFORM_SCALE)


def _init_linear(layer: nn.Linear, relu_follows: bool) -> nn.Linear:
    (_he_normal if relu_follows else _uniform)(layer.weight)
    if layer.bias is not None:
        nn.init.zeros_(layer.bias)
    return layer


OUTPUT_INITS = ("uniform", "he_normal")


def _init_output(layer: nn.Linear, output_init: str) -> nn.Linear:
    """Initialise an output layer (no ReLU follows); zero bias.

    ``"uniform"``: in ``[-0.05, 0.05]``, as the paper's text says.
    ``"he_normal"``: the initialiser the authors' released code names, drawn
    by :func:`_he_normal` (untruncated, like the hidden layers of the MLP and
    the text models; Keras 2's own ``he_normal`` truncates at two standard
    deviations). The He normal draw replaces a uniform one made first, so a
    model's random stream up to its output layer is the same under both.
    """
    if output_init not in OUTPUT_INITS:
        raise ValueError(f"unknown output_init {output_init!r}; known: {', '.join(OUTPUT_INITS)}")
    _init_linear(layer, relu_follows=False)
    if output_init == "he_normal":
        _he_normal(layer.weight)
    return layer


def _apply_head(head: nn.BatchNorm1d | None, logits: Tensor) -> Tensor:
    return logits if head is None else head(logits)


def _check_rate(p: float, what: str) -> float:
    p = float(p)
    if not 0.0 <= p < 1.0:
        raise ValueError(f"{what} must lie in [0, 1), got {p}")
    return p


class SpatialDropout1d(nn.Module):
    """Dropout of whole feature dimensions of a sequence (Keras ``SpatialDropout1D``).

    Input ``(n, length, features)``. In training mode each (sequence, feature)
    pair is dropped with probability ``p`` at *every* position of the sequence
    at once; kept features are scaled by ``1 / (1 - p)``. Identity in
    evaluation mode. Output has the input's shape.
    """

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = _check_rate(p, "spatial dropout rate")

    def keep_mask(self, n: int, features: int, like: Tensor) -> Tensor | None:
        """The ``(n, features)`` multipliers of one training pass: 0 for a dropped
        (sequence, feature) pair, ``1 / (1 - p)`` for a kept one; ``None`` in
        evaluation mode or with ``p = 0``. Draws from torch's global generator,
        the same numbers :meth:`forward` draws."""
        if not self.training or self.p == 0.0:
            return None
        keep = torch.empty(n, 1, features, device=like.device, dtype=like.dtype)
        keep.bernoulli_(1.0 - self.p)
        return (keep / (1.0 - self.p)).view(n, features)

    def forward(self, x: Tensor) -> Tensor:
        keep = self.keep_mask(x.shape[0], x.shape[2], x)
        return x if keep is None else x * keep[:, None, :]

    def extra_repr(self) -> str:
        return f"p={self.p}"
