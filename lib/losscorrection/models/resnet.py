"""The residual networks of the image experiments (§5.1 and §5.3).

:class:`PreActResNet` (built from :class:`PreActBlock`): the pre-activation
ResNets of depth ``6n + 2`` of He et al. (2016), ResNet-14/32 on CIFAR-10 and
ResNet-44 on CIFAR-100 (§5.1); :class:`ResNet50` and its builder
:func:`resnet50`: torchvision's ResNet-50, optionally loaded with ImageNet
weights, for Clothing1M (§5.3). Each returns logits, optionally through the
§5.2 :func:`~losscorrection.models.layers.output_head`.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from .layers import _apply_head, _he_normal, _init_linear, output_head

__all__ = ["RESNET50_IMAGENET_URL", "PreActBlock", "PreActResNet", "ResNet50", "resnet50"]

RESNET50_IMAGENET_URL = "https://download.pytorch.org/models/resnet50-0676ba61.pth"


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
