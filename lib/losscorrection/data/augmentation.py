"""Image pre-processing on the training device, for the ResNet experiments on
CIFAR-10/100 (Section 5.1): images stay ``uint8`` until a batch reaches the
model; :func:`pixel_mean` is the per-pixel mean of some images,
:func:`prepare_images` gives ``x / scale - mean`` (``x / 255 - mean`` by
default), and two augmentations, all on the tensors' own device:
:func:`augment_batch`, the standard one (random crop after 4-pixel zero
padding, random horizontal flip), and :func:`shift_flip_batch`, the released
code's (Keras' ``ImageDataGenerator(width_shift_range=0.1,
height_shift_range=0.1, horizontal_flip=True)``: random shifts of up to 10 %
with the border pixels repeated, random horizontal flip).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = ["AUGMENTATIONS", "augment_batch", "pixel_mean", "prepare_images", "shift_flip_batch", "shift_images"]


def pixel_mean(x: Tensor | Sequence[Tensor], scale: float = 255.0) -> Tensor:
    """Per-pixel mean of ``x / scale``: uint8 ``(n, 3, H, W)`` -> float32 ``(3, H, W)``.

    Accumulated in float64 over chunks, on ``x``'s device (the paper subtracts
    the per-pixel mean of the training split). ``x`` may be a sequence of such
    tensors (e.g. the training and the validation images): the mean of all of
    their images together."""
    parts = [x] if isinstance(x, Tensor) else list(x)
    if not parts or any(p.dim() != 4 or p.shape[1:] != parts[0].shape[1:] for p in parts) \
            or sum(p.shape[0] for p in parts) == 0:
        shapes = ", ".join(str(tuple(p.shape)) for p in parts) or "nothing"
        raise ValueError(f"pixel_mean expects non-empty (n, c, H, W) tensors of one image shape, got {shapes}")
    total = torch.zeros(parts[0].shape[1:], dtype=torch.float64, device=parts[0].device)
    for part in parts:
        for start in range(0, part.shape[0], 4096):
            total += part[start : start + 4096].to(device=total.device, dtype=torch.float64).sum(dim=0)
    return (total / (scale * sum(p.shape[0] for p in parts))).to(torch.float32)


def prepare_images(x: Tensor, mean: Tensor, scale: float = 255.0) -> Tensor:
    """Model inputs: uint8 ``(n, 3, H, W)`` -> float32 ``x / scale - mean`` on
    ``x``'s device (``scale=1``: pixels kept in 0..255, as the released code does)."""
    out = x.to(torch.float32)
    if scale != 1.0:
        out = out.div_(scale)
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


def shift_images(x: Tensor, shifts: Tensor, flips: Tensor) -> Tensor:
    """Shift every image by its own real-valued offset, then flip the marked ones
    horizontally: float ``(n, c, H, W)`` -> the same shape.

    Before its flip, output pixel ``(i, j)`` of image ``k`` is input pixel
    ``(r(i + shifts[k, 0]), r(j + shifts[k, 1]))``, ``r(v) = clamp(floor(v +
    0.5), 0, size - 1)``: nearest-neighbour resampling with the border pixels
    repeated, what Keras 2.0-2.1.4's ``ImageDataGenerator`` computes with
    ``scipy.ndimage.affine_transform(image, I, offset=shifts[k], order=0,
    mode="nearest")``. ``shifts``: float ``(n, 2)``, rows then columns, on
    ``x``'s device; ``flips``: bool ``(n,)``."""
    if x.dim() != 4 or shifts.shape != (x.shape[0], 2) or flips.shape != (x.shape[0],):
        raise ValueError(f"shift_images expects x (n, c, H, W), shifts (n, 2) and flips (n,), got "
                         f"{tuple(x.shape)}, {tuple(shifts.shape)} and {tuple(flips.shape)}")
    n, c, h, w = x.shape

    def sources(size: int, offset: Tensor) -> Tensor:  # (n, size) source indices
        position = torch.arange(size, device=x.device, dtype=offset.dtype) + offset[:, None]
        return torch.floor(position + 0.5).long().clamp_(0, size - 1)

    rows = sources(h, shifts[:, 0])
    cols = sources(w, shifts[:, 1])
    cols = torch.where(flips[:, None], cols.flip(1), cols)
    batch = torch.arange(n, device=x.device)[:, None, None, None]
    channel = torch.arange(c, device=x.device)[None, :, None, None]
    return x[batch, channel, rows[:, None, :, None], cols[:, None, None, :]]


def shift_flip_batch(x: Tensor, generator: torch.Generator | None = None, shift_range: float = 0.1) -> Tensor:
    """Random shifts and flips, as the released code augments CIFAR (Keras'
    ``ImageDataGenerator(width_shift_range=0.1, height_shift_range=0.1,
    horizontal_flip=True)``): float ``(n, c, H, W)`` -> the same shape.

    Each image is shifted by ``u_r * H`` rows and ``u_c * W`` columns, ``u_r,
    u_c ~ U(-shift_range, shift_range)`` (up to 3.2 pixels on CIFAR, rounded
    to whole pixels, border pixels repeated: :func:`shift_images`), then
    flipped horizontally with probability 1/2; all drawn independently per
    image (from ``generator`` when given, on its device)."""
    if x.dim() != 4:
        raise ValueError(f"shift_flip_batch expects (n, c, H, W), got shape {tuple(x.shape)}")
    if not 0.0 <= shift_range < 1.0:
        raise ValueError(f"shift_range is a fraction of the image size in [0, 1), got {shift_range}")
    n, _, h, w = x.shape
    draw_device = generator.device if generator is not None else x.device
    uniform = torch.rand((n, 2), generator=generator, device=draw_device)
    sizes = torch.tensor([h, w], dtype=uniform.dtype, device=draw_device)
    shifts = (2.0 * uniform - 1.0) * shift_range * sizes
    flips = torch.rand((n,), generator=generator, device=draw_device) < 0.5
    return shift_images(x, shifts.to(x.device), flips.to(x.device))


AUGMENTATIONS = {"pad_crop": augment_batch, "shift_flip": shift_flip_batch}  # name -> f(x, generator)
