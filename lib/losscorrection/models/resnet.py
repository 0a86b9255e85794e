"""The residual networks of the image experiments (§5.1 and §5.3).

:class:`PreActResNet` (built from :class:`PreActBlock`): the pre-activation
ResNets of depth ``6n + 2`` of He et al. (2016), ResNet-14/32 on CIFAR-10 and
ResNet-44 on CIFAR-100 (§5.1), or with ``architecture="released"`` the
network of the authors' released Keras code; :class:`ResNet50` and its builder
:func:`resnet50`: torchvision's ResNet-50, optionally loaded with ImageNet
weights, for Clothing1M (§5.3). Each returns logits, optionally through the
§5.2 :func:`~losscorrection.models.layers.output_head`.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .layers import (
    KERAS_BN_EPS,
    KERAS_BN_MOMENTUM,
    _apply_head,
    _he_normal,
    _init_linear,
    _keras2_he_normal,
    output_head,
)

__all__ = [
    "RESNET50_IMAGENET_URL",
    "RESNET_ARCHITECTURES",
    "PreActBlock",
    "PreActResNet",
    "ResNet50",
    "resnet50",
    "tensorflow_same_padding",
]

RESNET50_IMAGENET_URL = "https://download.pytorch.org/models/resnet50-0676ba61.pth"


# ----------------------------------------------------------------------- CIFAR

RESNET_ARCHITECTURES = ("preact", "released")


def _check_architecture(architecture: str) -> bool:
    """Whether ``architecture`` is the released Keras network; ValueError if unknown."""
    if architecture not in RESNET_ARCHITECTURES:
        raise ValueError(
            f"unknown ResNet architecture {architecture!r}; known: {', '.join(RESNET_ARCHITECTURES)}"
        )
    return architecture == "released"


def _batch_norm(channels: int, released: bool) -> nn.BatchNorm2d:
    """PyTorch's batch normalisation, or Keras' (``eps = 1e-3``, momentum 0.99)."""
    if released:
        return nn.BatchNorm2d(channels, eps=KERAS_BN_EPS, momentum=KERAS_BN_MOMENTUM)
    return nn.BatchNorm2d(channels)


def tensorflow_same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """The zeros TensorFlow's ``padding="SAME"`` adds (before, after) along one axis of
    ``size`` pixels: ``ceil(size / stride)`` outputs, the odd one of an odd total after.
    For ``size = 32, kernel = 3, stride = 2``: ``(0, 1)``, where PyTorch's
    ``padding=1`` gives ``(1, 1)`` (the same 16 outputs, windows shifted by a pixel)."""
    outputs = -(-size // stride)
    total = max((outputs - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class PreActBlock(nn.Module):
    """Basic pre-activation residual block (He et al. 2016, "Identity mappings").

    ``a = ReLU(BN(x))``; ``out = conv3x3(ReLU(BN(conv3x3(a, stride)))) + s``
    with ``s = x`` (identity) when the shape is kept, else ``s = conv1x1(a,
    stride)``, a projection of the pre-activated input. Convolutions have no
    bias. Input ``(n, in_channels, H, W)``; output ``(n, out_channels, H/stride,
    W/stride)``.

    ``architecture="released"``: the block of the authors' Keras code
    (``resnet.residual``): ``s = conv1x1(x, stride)`` projects the raw input,
    every convolution has a bias, batch norms use Keras' ``eps = 1e-3`` and
    momentum 0.99 (``momentum=0.01`` here), and a strided 3x3 convolution pads
    as TensorFlow's ``"SAME"`` (:func:`tensorflow_same_padding`).
    ``preactivate=False`` drops ``ReLU(BN(.))``: ``a = x`` (the released
    network's first block, whose input is already normalised; ``bn1`` is None).

    Parameters
    ----------
    in_channels, out_channels : int
        Channels of the input and of the output.
    stride : int
        Stride of the first 3x3 convolution and of the projection.
    architecture : str
        ``"preact"`` or ``"released"``.
    preactivate : bool
        Apply ``ReLU(BN(.))`` to the input first.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int = 1,
        architecture: str = "preact",
        preactivate: bool = True,
    ) -> None:
        super().__init__()
        released = _check_architecture(architecture)
        self.bn1 = _batch_norm(in_channels, released) if preactivate else None
        self.pad_like_tensorflow = released and stride != 1
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride,
                               padding=0 if self.pad_like_tensorflow else 1, bias=released)
        self.bn2 = _batch_norm(out_channels, released)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=released)
        self.shortcut = None
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=released)
        self.project_raw_input = released

    def forward(self, x: Tensor) -> Tensor:
        a = x if self.bn1 is None else torch.relu(self.bn1(x))
        shortcut = x if self.shortcut is None else self.shortcut(x if self.project_raw_input else a)
        if self.pad_like_tensorflow:
            (stride, _), (kernel, _) = self.conv1.stride, self.conv1.kernel_size
            rows, cols = (tensorflow_same_padding(size, kernel, stride) for size in a.shape[-2:])
            a = F.pad(a, (*cols, *rows))
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
    with ``bn_head``, :func:`output_head`. Feature maps: ``(n, 16, 32, 32)``
    after the stem and stage 1, ``(n, 32, 16, 16)`` after stage 2, ``(n, 64,
    8, 8)`` after stage 3, ``(n, 64)`` after pooling.

    Init (``architecture="preact"``): convolutions He normal with
    ``mode='fan_in'`` (std ``sqrt(2 / (9 * in_channels))`` for 3x3), batch norm
    weight 1 and bias 0, final dense layer uniform in [-0.05, 0.05] with zero
    bias; no convolution has a bias.

    ``architecture="released"``: the network of the authors' Keras code
    (``resnet.cifar10_resnet``, Keras 2 on TensorFlow), same depths, channels
    and feature-map shapes, differing in:

    - stem: ``conv3x3(3 -> 16) -> BN -> ReLU`` (``stem_bn``); the first block
      of stage 1 has no pre-activation (``bn1`` is None), so its input
      ``(n, 16, 32, 32)`` is normalised once, not twice;
    - shortcuts: the 1x1 stride-2 projections (``(n, 16, 32, 32) -> (n, 32,
      16, 16)`` and ``(n, 32, 16, 16) -> (n, 64, 8, 8)``) read the block's raw
      input ``x``, not ``ReLU(BN(x))``;
    - biases: every convolution (stem, 3x3, 1x1 projections) has a bias,
      initialised to zero (Keras ``Conv2D``'s ``use_bias=True``);
    - padding: a stride-2 3x3 convolution pads ``"SAME"`` as TensorFlow does,
      0 zeros before and 1 after on a 32 or 16 pixel axis (windows centred on
      odd pixels), where ``padding=1`` pads 1 and 1;
    - init: every convolution and the dense layer Keras 2 ``he_normal``, a
      normal of std ``sqrt(2 / fan_in)`` truncated at two standard deviations
      (the dense layer's ``fan_in`` is 64); dense bias zero;
    - batch norm (every one): Keras' ``eps = 1e-3`` and moving
      averages with momentum 0.99, i.e. PyTorch ``momentum = 0.01`` (the
      running variance is PyTorch's unbiased one);
    - parameters: ResNet-14 with 10 classes has 175,626 (the pre-activation
      network: 175,066; the difference is the 560 convolution
      biases).

    Both: the L2 weight decay of the released code falls on the convolution
    and dense kernels only (:func:`~losscorrection.models.layers.kernels`),
    never on biases or batch-norm parameters; the released code's 8x8 average
    pooling is the global average pooling of a 32x32 input.

    Input float ``(n, 3, 32, 32)`` (other sizes work too: the pooling is
    global; the channels-last memory format is supported); output logits ``(n, num_classes)``.

    Parameters
    ----------
    depth : int
        ``6n + 2`` with ``n >= 1`` (8, 14, 20, 32, 44, ...).
    num_classes : int
        Outputs of the dense layer.
    bn_head : bool
        Add :func:`output_head` after the dense layer (§5.2).
    architecture : str
        ``"preact"`` (default) or ``"released"`` (see above).
    """

    def __init__(self, depth: int, num_classes: int = 10, bn_head: bool = False,
                 architecture: str = "preact") -> None:
        super().__init__()
        if depth < 8 or (depth - 2) % 6 != 0:
            raise ValueError(f"depth must be 6n+2 with n >= 1 (8, 14, 20, 32, 44, ...), got {depth}")
        released = _check_architecture(architecture)
        self.depth = int(depth)
        self.architecture = architecture
        n = (depth - 2) // 6
        self.stem = nn.Conv2d(3, 16, 3, padding=1, bias=released)
        self.stem_bn = _batch_norm(16, released) if released else None
        stages = []
        in_channels = 16
        for i, channels in enumerate((16, 32, 64)):
            blocks = []
            for j in range(n):
                stride = 2 if i > 0 and j == 0 else 1
                first = i == 0 and j == 0
                blocks.append(PreActBlock(in_channels, channels, stride, architecture,
                                          preactivate=not (released and first)))
                in_channels = channels
            stages.append(nn.Sequential(*blocks))
        self.stage1, self.stage2, self.stage3 = stages
        self.bn = _batch_norm(in_channels, released)
        self.fc = _init_linear(nn.Linear(in_channels, num_classes), relu_follows=False)
        self.head = output_head(num_classes) if bn_head else None
        he_normal = _keras2_he_normal if released else _he_normal
        if released:
            he_normal(self.fc.weight)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                he_normal(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, x: Tensor) -> Tensor:
        h = self.stem(x)
        if self.stem_bn is not None:
            h = torch.relu(self.stem_bn(h))
        h = self.stage3(self.stage2(self.stage1(h)))
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
