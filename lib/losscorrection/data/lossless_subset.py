"""The same CIFAR-10 images, lossless and as JPEG: what does the JPEG copy cost?

``<root>/cifar10-lossless-subset/cifar10_train_first4000.npz`` holds the first
4,000 CIFAR-10 training images (original indices 0-3,999) without loss: ``x``
uint8 ``(4000, 32, 32, 3)``, ``y`` and ``orig_index``. The JPEG copy has the
same images: within a class, its file ``NNNN`` is the class's ``NNNN``-th
training image in the original order, so original image ``i`` of class ``c``
is the ``r``-th class-``c`` image of the copy's training part (which goes class
by class), ``r`` being the number of earlier class-``c`` images, counted
within the first 4,000, which come first.

:func:`jpeg_penalty_splits` cuts the 4,000 images once (by default 2,700
training, 300 validation and 1,000 test images, stratified) and returns the
lossless and the JPEG versions of the *same* partition, so that a network
trained and tested on each measures the compression's cost and nothing else.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .cifar import CIFAR10_CLASSES, cifar10jpg_arrays
from .files import CorruptDataError, _missing, reading, resolve_data_root
from .splits import Split, _tensor, stratified_holdout

__all__ = ["LOSSLESS_SUBSET_FILE", "jpeg_penalty_splits", "load_lossless_subset"]

LOSSLESS_SUBSET_FILE = "cifar10-lossless-subset/cifar10_train_first4000.npz"
_FIX = "replace it with an intact copy of the lossless subset"
MAX_MEAN_ABS_DIFF = 12.0  # a JPEG image of quality ~75 is within a few grey levels of its original


def load_lossless_subset(data_root: str | Path | None = None) -> dict[str, np.ndarray]:
    """The lossless images: ``x`` uint8 ``(n, 3, 32, 32)``, ``y`` int64 ``(n,)`` and
    ``rank`` int64 ``(n,)``, each image's position among the subset's images of its class.

    Raises :class:`MissingDataError` when the file is absent and
    :class:`CorruptDataError` when it cannot be read or is not in original order."""
    path = resolve_data_root(data_root) / LOSSLESS_SUBSET_FILE
    if not path.is_file():
        raise _missing("CIFAR-10 lossless subset", [path], f"<root>/{LOSSLESS_SUBSET_FILE}",
                       "it holds the first CIFAR-10 training images without loss (x, y, orig_index)")
    with reading(path, _FIX), np.load(path) as archive:
        if any(key not in archive for key in ("x", "y", "orig_index")):
            raise CorruptDataError(path, "not the lossless subset (needs x, y and orig_index)", _FIX)
        x, y, original = archive["x"], archive["y"].astype(np.int64), archive["orig_index"].astype(np.int64)
    if x.ndim != 4 or x.shape[1:] != (32, 32, 3) or x.dtype != np.uint8 or len(y) != len(x):
        raise CorruptDataError(path, f"images of shape {x.shape} and dtype {x.dtype}, expected (n, 32, 32, 3) uint8", _FIX)
    if not np.array_equal(original, np.arange(len(x))) or y.min(initial=0) < 0 or y.max(initial=0) >= 10:
        raise CorruptDataError(path, "the images are not the first training images in their original order", _FIX)
    rank = np.zeros(len(y), dtype=np.int64)
    for c in range(10):
        rank[y == c] = np.arange(int((y == c).sum()))
    return {"x": np.ascontiguousarray(x.transpose(0, 3, 1, 2)), "y": y, "rank": rank}


def jpeg_penalty_splits(
    data_root: str | Path | None = None, test_fraction: float = 0.25, validation_fraction: float = 0.1,
    seed: int = 0, progress: bool = True,
) -> dict[str, Split]:
    """``{"lossless": Split, "jpeg": Split}``: the lossless subset and its JPEG
    versions under one stratified partition (``test_fraction`` of the images for
    testing, then ``validation_fraction`` of the rest for validation, the rest
    for training: 2,700 / 300 / 1,000 of 4,000 by default), clean labels.

    Raises :class:`CorruptDataError` if the JPEG images are not the lossless
    ones (mean absolute difference above :data:`MAX_MEAN_ABS_DIFF` grey levels)."""
    root = resolve_data_root(data_root)
    lossless = load_lossless_subset(root)
    copy = cifar10jpg_arrays(root, progress=progress)
    class_start = np.searchsorted(copy["y_train"], np.arange(10))  # the copy's training part goes class by class
    jpeg_index = class_start[lossless["y"]] + lossless["rank"]
    if jpeg_index.max(initial=0) >= len(copy["y_train"]) or not np.array_equal(copy["y_train"][jpeg_index], lossless["y"]):
        raise CorruptDataError(root / LOSSLESS_SUBSET_FILE, "its labels disagree with the JPEG copy's", _FIX)
    jpeg_x = copy["x_train"][jpeg_index]
    difference = np.abs(jpeg_x.astype(np.int16) - lossless["x"]).mean()
    if difference > MAX_MEAN_ABS_DIFF:
        raise CorruptDataError(root / LOSSLESS_SUBSET_FILE,
                               f"its images differ from the JPEG copy's by {difference:.1f} grey levels on average", _FIX)
    y = lossless["y"]
    rest, test = stratified_holdout(y, test_fraction, seed)
    train_part, val_part = stratified_holdout(y[rest], validation_fraction, seed + 1)
    train, val = rest[train_part], rest[val_part]
    splits = {}
    for name, x, what in (("lossless", lossless["x"], "lossless PNG originals"),
                          ("jpeg", jpeg_x, "their JPEG copies (quality ~75)")):
        splits[name] = Split(
            name=f"cifar10_first4000_{name}",
            description=(f"the first 4,000 CIFAR-10 training images, {what}: {len(train):,} training, "
                         f"{len(val):,} validation and {len(test):,} test images; uint8 3x32x32"),
            num_classes=10, x_train=_tensor(x[train]), y_train=_tensor(y[train]), x_val=_tensor(x[val]),
            y_val=_tensor(y[val]), x_test=_tensor(x[test]), y_test=_tensor(y[test]), class_names=CIFAR10_CLASSES,
        )
    return splits
