"""The architectures of the paper's experiments (Patrini et al., CVPR 2017, §5).

=====================  =========================================  ==================
name                   model                                      paper
=====================  =========================================  ==================
``mlp``                :class:`MLP`, 2 x 128 ReLU + dropout        §5.1, MNIST
``imdb_embedding``     :class:`EmbeddingClassifier`                §5.1, IMDB
``imdb_lstm``          :class:`LSTMClassifier`                     §5.1, IMDB
``resnet<6n+2>``       :class:`PreActResNet` (14, 32, 44, ...)     §5.1, CIFAR-10/100
``resnet50``           :func:`resnet50` (torchvision ResNet-50)    §5.3, Clothing1M
=====================  =========================================  ==================

Every model returns logits ``(n, num_classes)`` (no softmax: the losses of
:mod:`losscorrection.losses` take logits). With ``bn_head=True`` the logits
pass through :func:`output_head`, a batch normalisation without learned scale
or shift, which the paper puts "right before the loss function" for the
unhinged and sigmoid losses (§5.2). Every model exposes it as ``.head``
(``None`` without it).

Initialisation follows §5 ("initialize weights prior to ReLUs as in [He et al.
2015], otherwise by uniform sampling in [-0.05, 0.05]"), i.e. the authors'
Keras setup:

* a layer followed by a ReLU (possibly through batch normalisation): He normal,
  an untruncated normal with std ``sqrt(2 / fan_in)`` (Keras 1 ``he_normal``;
  ``fan_in`` = inputs of a dense layer, ``k*k*in_channels`` of a convolution);
* every other dense layer and every embedding: uniform in ``[-0.05, 0.05]``
  (Keras ``uniform``, the default of Keras embeddings);
* biases: zero (the LSTM's forget gate excepted, see :class:`LSTMClassifier`).

All random draws come from torch's global generator, so ``torch.manual_seed(s)``
followed by a constructor gives the same parameters every time.

The authors' released Keras code differs from the text in places (noted in
each class): MNIST dropout 0.2, ``he_normal`` also on output layers, and a
slightly different LSTM model and ResNet block; we follow the text.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "MODEL_NAMES",
    "EmbeddingClassifier",
    "LSTMClassifier",
    "MLP",
    "PreActBlock",
    "PreActResNet",
    "ResNet50",
    "SpatialDropout1d",
    "build_model",
    "output_head",
    "resnet50",
]

MODEL_NAMES = ("mlp", "imdb_embedding", "imdb_lstm", "resnet14", "resnet32", "resnet44", "resnet50")
UNIFORM_SCALE = 0.05
RESNET50_IMAGENET_URL = "https://download.pytorch.org/models/resnet50-0676ba61.pth"


# ------------------------------------------------------------------ building blocks


def output_head(num_classes: int) -> nn.BatchNorm1d:
    """The batch-normalised output layer used with the unhinged and sigmoid losses.

    §5.2: both losses misbehave on raw network outputs (unhinged is unbounded,
    sigmoid saturates), so, following the papers that introduced them, the
    logits are normalised by a batch normalisation layer placed right before
    the loss. No learned scale or shift (``affine=False``): in training mode
    each class's output has batch mean 0 and variance 1; in evaluation mode the
    running statistics are used (PyTorch defaults ``eps=1e-5``,
    ``momentum=0.1``). Input and output ``(n, num_classes)``.
    """
    return nn.BatchNorm1d(num_classes, affine=False)


def _he_normal(weight: Tensor) -> None:
    """He et al. (2015) normal, std ``sqrt(2 / fan_in)``: layers followed by ReLU."""
    nn.init.kaiming_normal_(weight, mode="fan_in", nonlinearity="relu")


def _uniform(weight: Tensor) -> None:
    """Uniform in ``[-0.05, 0.05]``: the paper's init for every other layer."""
    nn.init.uniform_(weight, -UNIFORM_SCALE, UNIFORM_SCALE)


def _init_linear(layer: nn.Linear, relu_follows: bool) -> nn.Linear:
    (_he_normal if relu_follows else _uniform)(layer.weight)
    if layer.bias is not None:
        nn.init.zeros_(layer.bias)
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

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = torch.empty(x.shape[0], 1, x.shape[2], device=x.device, dtype=x.dtype)
        keep.bernoulli_(1.0 - self.p)
        return x * keep / (1.0 - self.p)

    def extra_repr(self) -> str:
        return f"p={self.p}"


# ----------------------------------------------------------------------- MNIST


class MLP(nn.Module):
    """The fully connected network of the MNIST experiments (§5.1).

    ``hidden`` dense layers (the paper: two of 128 units), each followed by
    ReLU and dropout with probability ``dropout``, then a dense output layer
    and, with ``bn_head``, :func:`output_head`. The paper states dropout 0.5
    (the default); the authors' released code uses 0.2.

    Forward, exactly (``StackedMLP`` in :mod:`losscorrection.training`
    relies on it): for each hidden layer ``Linear -> ReLU -> Dropout(p)``;
    then the output ``Linear``; then the optional head.

    Init: hidden layers He normal (fan_in), output layer uniform in
    [-0.05, 0.05], zero biases (the released code uses ``he_normal`` on the
    output layer as well).

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
    ) -> None:
        super().__init__()
        self.input_dim = int(input_dim)
        self.num_classes = int(num_classes)
        self.dropout = _check_rate(dropout, "dropout")
        sizes = [self.input_dim, *(int(h) for h in hidden)]
        self.hidden = nn.ModuleList(
            _init_linear(nn.Linear(a, b), relu_follows=True) for a, b in zip(sizes[:-1], sizes[1:])
        )
        self.output = _init_linear(nn.Linear(sizes[-1], self.num_classes), relu_follows=False)
        self.head = output_head(self.num_classes) if bn_head else None

    def linear_layers(self) -> list[nn.Linear]:
        """The dense layers in forward order, the output layer last."""
        return [*self.hidden, self.output]

    def forward(self, x: Tensor) -> Tensor:
        h = x.reshape(x.shape[0], -1)
        for layer in self.hidden:
            h = F.dropout(torch.relu(layer(h)), self.dropout, self.training)
        return _apply_head(self.head, self.output(h))


# ------------------------------------------------------------------------ IMDB


class EmbeddingClassifier(nn.Module):
    """The word-embedding model of the IMDB experiments (§5.1).

    ``Embedding(vocab_size, embedding_dim=50) -> spatial dropout (0.8) -> ReLU
    -> flatten -> Linear(length * embedding_dim, num_classes)`` and, with
    ``bn_head``, :func:`output_head`. The dropout follows the released code's
    ``SpatialDropout1D``: a dropped embedding dimension is zero at every
    position of the review (:class:`SpatialDropout1d`).

    Init: embedding and output layer uniform in [-0.05, 0.05], zero bias (the
    released code uses ``he_normal`` on the output layer).

    Input int64 token ids ``(n, length)`` (reviews padded or truncated to
    ``length``, 400 in the paper); output logits ``(n, num_classes)``.
    """

    def __init__(
        self,
        vocab_size: int = 5000,
        length: int = 400,
        embedding_dim: int = 50,
        spatial_dropout: float = 0.8,
        num_classes: int = 2,
        bn_head: bool = False,
    ) -> None:
        super().__init__()
        self.length = int(length)
        self.embedding = nn.Embedding(vocab_size, embedding_dim)
        _uniform(self.embedding.weight)
        self.spatial_dropout = SpatialDropout1d(spatial_dropout)
        self.output = _init_linear(nn.Linear(self.length * embedding_dim, num_classes), relu_follows=False)
        self.head = output_head(num_classes) if bn_head else None

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 2 or x.shape[1] != self.length:
            raise ValueError(f"expected token ids of shape (n, {self.length}), got {tuple(x.shape)}")
        h = torch.relu(self.spatial_dropout(self.embedding(x)))
        return _apply_head(self.head, self.output(h.flatten(1)))


class LSTMClassifier(nn.Module):
    """The word-embedding + LSTM model of the IMDB experiments (§5.1).

    ``Embedding(vocab_size, 256) -> LSTM(512) -> Linear(512) -> ReLU ->
    Dropout(0.5) -> Linear(num_classes)`` and, with ``bn_head``,
    :func:`output_head`. The LSTM reads the sequence left to right
    (``batch_first``) and the classifier takes its hidden state at the *last*
    time step: sequences are padded with 0 at the front, so the last step is
    the end of the review. Any sequence length works.

    Init: embedding uniform in [-0.05, 0.05]; LSTM input weights uniform in
    [-0.05, 0.05] (the released code's ``kernel_initializer='uniform'``),
    recurrent weights orthogonal and forget-gate bias 1, other biases 0
    (the Keras LSTM defaults the released code keeps; the text does not say);
    hidden dense layer He normal (fan_in); output layer uniform; zero biases.
    The released code differs from the text here: embedding 512, a spatial
    dropout of 0.8 on the embedding; we follow the text.

    Input int64 token ids ``(n, length)``; output logits ``(n, num_classes)``.
    """

    def __init__(
        self,
        vocab_size: int = 5000,
        embedding_dim: int = 256,
        hidden_size: int = 512,
        dense: int = 512,
        dropout: float = 0.5,
        num_classes: int = 2,
        bn_head: bool = False,
    ) -> None:
        super().__init__()
        self.dropout = _check_rate(dropout, "dropout")
        self.embedding = nn.Embedding(vocab_size, embedding_dim)
        self.lstm = nn.LSTM(embedding_dim, hidden_size, batch_first=True)
        self.dense = _init_linear(nn.Linear(hidden_size, dense), relu_follows=True)
        self.output = _init_linear(nn.Linear(dense, num_classes), relu_follows=False)
        self.head = output_head(num_classes) if bn_head else None
        _uniform(self.embedding.weight)
        _uniform(self.lstm.weight_ih_l0)
        nn.init.orthogonal_(self.lstm.weight_hh_l0)
        nn.init.zeros_(self.lstm.bias_ih_l0)
        nn.init.zeros_(self.lstm.bias_hh_l0)
        with torch.no_grad():  # PyTorch gate order: input, forget, cell, output
            self.lstm.bias_ih_l0[hidden_size : 2 * hidden_size] = 1.0

    def forward(self, x: Tensor) -> Tensor:
        states, _ = self.lstm(self.embedding(x))
        h = F.dropout(torch.relu(self.dense(states[:, -1])), self.dropout, self.training)
        return _apply_head(self.head, self.output(h))


# ----------------------------------------------------------------------- CIFAR


class PreActBlock(nn.Module):
    """Basic pre-activation residual block (He et al. 2016, "Identity mappings").

    ``a = ReLU(BN(x))``; ``out = conv3x3(ReLU(BN(conv3x3(a, stride)))) + s``
    with ``s = x`` (identity) when the shape is kept, else ``s = conv1x1(a,
    stride)``, a projection of the pre-activated input. Convolutions have no
    bias. Input ``(n, in_channels, H, W)``; output ``(n, out_channels, H/stride,
    W/stride)``.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.shortcut = None
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        a = torch.relu(self.bn1(x))
        shortcut = x if self.shortcut is None else self.shortcut(a)
        h = self.conv1(a)
        h = self.conv2(torch.relu(self.bn2(h)))
        return h + shortcut


class PreActResNet(nn.Module):
    """Pre-activation ResNet for CIFAR (§5.1; He et al. 2016, "Identity mappings in
    deep residual networks"): ResNet-14/32 on CIFAR-10, ResNet-44 on CIFAR-100.

    ``depth = 6n + 2``: a 3x3 convolution to 16 channels; three stages of ``n``
    :class:`PreActBlock` with 16, 32 and 64 channels, the first block of
    stages 2 and 3 with stride 2 and a 1x1 projection shortcut; then
    ``BN -> ReLU -> global average pooling -> Linear(64, num_classes)`` and,
    with ``bn_head``, :func:`output_head`.

    Init: convolutions He normal with ``mode='fan_in'`` (std ``sqrt(2 /
    (9 * in_channels))`` for 3x3; Keras ``he_normal``, as in the released
    code), batch norm weight 1 and bias 0, final dense layer uniform in
    [-0.05, 0.05] with zero bias (the released code: ``he_normal``). The
    released Keras network also differs slightly in its blocks (a BN-ReLU
    after the stem in place of the first block's pre-activation, projections
    of the raw input, convolution biases).

    Input float ``(n, 3, 32, 32)`` (other sizes work too: the pooling is
    global; the channels-last memory format is supported); output logits ``(n, num_classes)``.
    """

    def __init__(self, depth: int, num_classes: int = 10, bn_head: bool = False) -> None:
        super().__init__()
        if depth < 8 or (depth - 2) % 6 != 0:
            raise ValueError(f"depth must be 6n+2 with n >= 1 (8, 14, 20, 32, 44, ...), got {depth}")
        self.depth = int(depth)
        n = (depth - 2) // 6
        self.stem = nn.Conv2d(3, 16, 3, padding=1, bias=False)
        stages = []
        in_channels = 16
        for i, channels in enumerate((16, 32, 64)):
            blocks = []
            for j in range(n):
                stride = 2 if i > 0 and j == 0 else 1
                blocks.append(PreActBlock(in_channels, channels, stride))
                in_channels = channels
            stages.append(nn.Sequential(*blocks))
        self.stage1, self.stage2, self.stage3 = stages
        self.bn = nn.BatchNorm2d(in_channels)
        self.fc = _init_linear(nn.Linear(in_channels, num_classes), relu_follows=False)
        self.head = output_head(num_classes) if bn_head else None
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                _he_normal(module.weight)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, x: Tensor) -> Tensor:
        h = self.stage3(self.stage2(self.stage1(self.stem(x))))
        h = torch.relu(self.bn(h)).mean(dim=(2, 3))
        return _apply_head(self.head, self.fc(h))


# ------------------------------------------------------------------- Clothing1M


class ResNet50(nn.Module):
    """torchvision's ResNet-50 (the bottleneck architecture) with an optional
    :func:`output_head`; built by :func:`resnet50`.

    The layers are those of ``torchvision.models.resnet50(weights=None)``
    (same init, same ``state_dict`` keys, same forward), held directly by this
    module so that ``.head`` can follow ``fc``; torchvision is imported only
    when one is built. Input float ``(n, 3, H, W)`` (224x224 in the paper);
    output logits ``(n, num_classes)``.
    """

    def __init__(self, bn_head: bool = False) -> None:
        super().__init__()
        import torchvision  # slow to import: only when needed

        for name, layer in torchvision.models.resnet50(weights=None).named_children():
            self.add_module(name, layer)
        self.head = output_head(self.fc.out_features) if bn_head else None

    def replace_fc(self, num_classes: int) -> None:
        """A new ``Linear(2048, num_classes)`` output layer (uniform init, zero bias)."""
        self.fc = _init_linear(nn.Linear(self.fc.in_features, num_classes), relu_follows=False)
        if self.head is not None:
            self.head = output_head(num_classes)

    def forward(self, x: Tensor) -> Tensor:
        h = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        h = self.layer4(self.layer3(self.layer2(self.layer1(h))))
        return _apply_head(self.head, self.fc(torch.flatten(self.avgpool(h), 1)))


def resnet50(num_classes: int = 14, weights_path: str | Path | None = None, bn_head: bool = False) -> ResNet50:
    """ResNet-50 for Clothing1M (§5.3: "a 50-layer ResNet pre-trained on ImageNet").

    ``weights_path``: a local file holding ImageNet weights, a ``state_dict``
    of torchvision's ResNet-50 saved with ``torch.save`` (any ``fc`` in it,
    e.g. the 1000-class ImageNet one, is ignored). Without it the backbone
    keeps torchvision's random init (He normal, fan_out). Either way the
    output layer is then a new ``Linear(2048, num_classes)``, uniform in
    [-0.05, 0.05] with zero bias, followed by :func:`output_head` with
    ``bn_head``. Input float ``(n, 3, H, W)``; output ``(n, num_classes)``.

    Raises ``FileNotFoundError`` if ``weights_path`` does not exist and
    ``ValueError`` if the file does not match the architecture.
    """
    state = None
    if weights_path is not None:
        path = Path(weights_path).expanduser()
        if not path.is_file():
            raise FileNotFoundError(
                f"ResNet-50 ImageNet weights not found at {path}. Download torchvision's "
                f"ResNet50_Weights.IMAGENET1K_V1 from {RESNET50_IMAGENET_URL} (or save "
                "torchvision.models.resnet50(weights='IMAGENET1K_V1').state_dict() with "
                "torch.save) and pass that file's path."
            )
        state = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(state, dict):
            raise ValueError(f"{path}: expected a state_dict, got {type(state).__name__}")
    model = ResNet50(bn_head=bn_head)
    if state is not None:
        own = ("fc.", "head.")  # replaced or built afresh, never loaded
        backbone = {k: v for k, v in state.items() if not k.startswith(own)}
        result = model.load_state_dict(backbone, strict=False)
        missing = [k for k in result.missing_keys if not k.startswith(own)]
        if missing or result.unexpected_keys:
            raise ValueError(
                f"{weights_path} is not a torchvision ResNet-50 state_dict "
                f"(missing: {missing[:5]}, unexpected: {result.unexpected_keys[:5]})"
            )
    model.replace_fc(num_classes)
    return model


# ----------------------------------------------------------------------- factory


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
