"""The model registry: every architecture of the paper's experiments by name (§5).

:data:`MODEL_NAMES` lists the names of §5 (``mlp`` for MNIST, ``imdb_embedding``
and ``imdb_lstm`` for IMDB, ``resnet14/32/44`` for CIFAR-10/100 in §5.1,
``resnet50`` for Clothing1M in §5.3) and :func:`build_model` builds any of
them, plus any ``resnet<6n+2>``, with the requested number of classes,
dropout and optional §5.2 output head.
"""

from __future__ import annotations

import re

from torch import nn

from .mlp import MLP
from .resnet import PreActResNet, resnet50
from .text import EmbeddingClassifier, LSTMClassifier

__all__ = ["MODEL_NAMES", "build_model"]

MODEL_NAMES = ("mlp", "imdb_embedding", "imdb_lstm", "resnet14", "resnet32", "resnet44", "resnet50")


def _resnet_depth(name: str) -> int | None:
    match = re.fullmatch(r"resnet([1-9][0-9]*)", name)
    return int(match.group(1)) if match else None


def build_model(
    name: str,
    num_classes: int,
    *,
    input_dim: int | None = None,
    bn_head: bool = False,
    dropout: float | None = None,
    **kwargs,
) -> nn.Module:
    """A model by name (:data:`MODEL_NAMES`, plus any ``resnet<6n+2>``).

    ``resnet<6n+2>`` is a :class:`PreActResNet`, except ``resnet50``: the
    torchvision ResNet-50 of :func:`resnet50` (``kwargs`` may give
    ``weights_path``).

    ``input_dim``: number of input features for ``mlp`` (required), the
    sequence length for ``imdb_embedding`` (default 400); ignored by the other
    models. ``dropout``: the model's dropout rate (``imdb_embedding``: its
    spatial dropout); ``None`` keeps the model's default; the ResNets have no
    dropout. ``bn_head`` adds :func:`output_head`. Other ``kwargs`` go to the
    constructor. Unknown names raise ``ValueError``.
    """
    rate = {} if dropout is None else {"dropout": dropout}
    if name == "mlp":
        if input_dim is None:
            raise ValueError("model 'mlp' needs input_dim (the number of input features)")
        return MLP(input_dim, num_classes, bn_head=bn_head, **rate, **kwargs)
    if name == "imdb_embedding":
        length = kwargs.pop("length", None)
        if length is not None and input_dim is not None and int(length) != int(input_dim):
            raise ValueError(f"imdb_embedding: length={length} contradicts input_dim={input_dim}")
        length = length if length is not None else (input_dim if input_dim is not None else 400)
        if dropout is not None:
            kwargs["spatial_dropout"] = dropout
        return EmbeddingClassifier(length=length, num_classes=num_classes, bn_head=bn_head, **kwargs)
    if name == "imdb_lstm":
        return LSTMClassifier(num_classes=num_classes, bn_head=bn_head, **rate, **kwargs)
    depth = _resnet_depth(name)
    if depth is not None:
        if dropout is not None:
            raise ValueError(f"model {name!r} has no dropout")
        if depth == 50:
            return resnet50(num_classes, bn_head=bn_head, **kwargs)
        return PreActResNet(depth, num_classes, bn_head=bn_head, **kwargs)
    raise ValueError(
        f"unknown model {name!r}; known: {', '.join(MODEL_NAMES)} (and any resnet<6n+2>)"
    )
