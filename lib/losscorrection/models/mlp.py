"""The fully connected network of the MNIST experiments (§5.1).

:class:`MLP`: two hidden layers of 128 ReLU units, each followed by dropout
(0.5 in the text), then a dense output layer and optionally the §5.2
:func:`~losscorrection.models.layers.output_head`; hidden layers He normal,
output layer uniform in ``[-0.05, 0.05]`` (the text) or He normal (the
released code).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .layers import _apply_head, _check_rate, _init_linear, _init_output, output_head

__all__ = ["MLP"]


class MLP(nn.Module):
    """The fully connected network of the MNIST experiments (§5.1).

    ``hidden`` dense layers (the paper: two of 128 units), each followed by
    ReLU and dropout with probability ``dropout``, then a dense output layer
    and, with ``bn_head``, :func:`output_head`. The paper states dropout 0.5
    (the default); the authors' released code uses 0.2.

    Forward, exactly (``StackedMLP`` in :mod:`losscorrection.training`
    relies on it): for each hidden layer ``Linear -> ReLU -> Dropout(p)``;
    then the output ``Linear``; then the optional head.

    Init: hidden layers He normal (fan_in); output layer uniform in
    [-0.05, 0.05] as the text says for layers not followed by a ReLU
    (``output_init="uniform"``), or He normal as the released code has it
    (``output_init="he_normal"``: its three ``Dense`` layers all use Keras'
    ``he_normal``); zero biases.

    Input ``(n, input_dim)`` float (any ``(n, ...)`` with ``input_dim``
    elements per example is flattened); output logits ``(n, num_classes)``.
    """

    def __init__(
        self,
        input_dim: int = 784,
        num_classes: int = 10,
        hidden: Sequence[int] = (128, 128),
        dropout: float = 0.5,
        bn_head: bool = False,
        output_init: str = "uniform",
    ) -> None:
        super().__init__()
        self.input_dim = int(input_dim)
        self.num_classes = int(num_classes)
        self.dropout = _check_rate(dropout, "dropout")
        sizes = [self.input_dim, *(int(h) for h in hidden)]
        self.hidden = nn.ModuleList(
            _init_linear(nn.Linear(a, b), relu_follows=True) for a, b in zip(sizes[:-1], sizes[1:])
        )
        self.output = _init_output(nn.Linear(sizes[-1], self.num_classes), output_init)
        self.head = output_head(self.num_classes) if bn_head else None

    def linear_layers(self) -> list[nn.Linear]:
        """The dense layers in forward order, the output layer last."""
        return [*self.hidden, self.output]

    def forward(self, x: Tensor) -> Tensor:
        h = x.reshape(x.shape[0], -1)
        for layer in self.hidden:
            h = F.dropout(torch.relu(layer(h)), self.dropout, self.training)
        return _apply_head(self.head, self.output(h))
