"""Image pre-processing on the training device, for the ResNet experiments on
CIFAR-10/100 (Section 5.1): images stay ``uint8`` until a batch reaches the
model; :func:`pixel_mean` is the per-pixel mean of the training split,
:func:`prepare_images` gives ``x / 255 - mean``, and :func:`augment_batch` is
the standard augmentation (random crop after 4-pixel zero padding, random
horizontal flip), all on the tensors' own device.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["augment_batch", "pixel_mean", "prepare_images"]


def pixel_mean(x: Tensor) -> Tensor:
    """Per-pixel mean of ``x / 255``: uint8 ``(n, 3, H, W)`` -> float32 ``(3, H, W)``.

    Accumulated in float64 over chunks, on ``x``'s device (the paper subtracts
    the per-pixel mean of the training split)."""
    if x.dim() != 4 or x.shape[0] == 0:
        raise ValueError(f"pixel_mean expects a non-empty (n, c, H, W) tensor, got shape {tuple(x.shape)}")
    total = torch.zeros(x.shape[1:], dtype=torch.float64, device=x.device)
    for start in range(0, x.shape[0], 4096):
        total += x[start : start + 4096].to(torch.float64).sum(dim=0)
    return (total / (255.0 * x.shape[0])).to(torch.float32)


def prepare_images(x: Tensor, mean: Tensor) -> Tensor:
    """Model inputs: uint8 ``(n, 3, H, W)`` -> float32 ``x / 255 - mean`` on ``x``'s device."""
    out = x.to(torch.float32).div_(255.0)
    return out.sub_(mean.to(device=x.device, dtype=torch.float32))


def augment_batch(x: Tensor, generator: torch.Generator | None = None, padding: int = 4) -> Tensor:
    """Random crops and flips: float ``(n, c, H, W)`` -> the same shape.

    Each image is zero-padded by ``padding`` pixels on each side, an ``H x W``
    window is cropped at a uniformly random offset in ``[0, 2 * padding]`` per
    axis, and the crop is flipped horizontally with probability 1/2; offsets and
    flips are drawn independently per image (from ``generator`` when given, on
    its device) and applied in one gather on ``x``'s device.
    """
    if x.dim() != 4:
        raise ValueError(f"augment_batch expects (n, c, H, W), got shape {tuple(x.shape)}")
    if padding < 0:
        raise ValueError(f"padding must be >= 0, got {padding}")
    n, c, h, w = x.shape
    draw_device = generator.device if generator is not None else x.device
    offsets = torch.randint(0, 2 * padding + 1, (n, 2), generator=generator, device=draw_device).to(x.device)
    flips = torch.randint(0, 2, (n,), generator=generator, device=draw_device).to(x.device).bool()
    padded = torch.nn.functional.pad(x, (padding, padding, padding, padding))
    rows = offsets[:, :1] + torch.arange(h, device=x.device)  # (n, h)
    cols = torch.arange(w, device=x.device).expand(n, w)
    cols = torch.where(flips[:, None], cols.flip(1), cols) + offsets[:, 1:]  # (n, w)
    batch = torch.arange(n, device=x.device)[:, None, None, None]
    channel = torch.arange(c, device=x.device)[None, :, None, None]
    return padded[batch, channel, rows[:, None, :, None], cols[:, None, None, :]]
