"""The paper's protocol for splitting a data set (Section 5): 10% of the
official training set is held out for validation with a fixed permutation
(:func:`holdout_split`) and the official test set is kept for testing;
:class:`Split` holds the three parts as torch tensors with *clean* int64 labels
(label noise is added later, :mod:`losscorrection.noise`). Data sets without an
official test set (``mnist10k``, ``digits``) get a fixed stratified one
(:func:`stratified_holdout` with :data:`TEST_SPLIT_SEED`) and test sets stored
sorted by class a fixed shuffled order; :func:`split_arrays` applies the
protocol to your own arrays, and :class:`FullData` is a loaded data set before
the hold-out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "TEST_FRACTION",
    "TEST_SPLIT_SEED",
    "FullData",
    "Split",
    "holdout_split",
    "split_arrays",
    "stratified_holdout",
]

# Seed of the fixed stratified test splits of ``mnist10k`` and ``digits``, and of
# the fixed order given to test sets stored sorted by class. It never changes:
# the test set of a data set is the same for every run and every ``split_seed``.
TEST_SPLIT_SEED = 2017
TEST_FRACTION = 0.2


@dataclass(frozen=True, repr=False)
class Split:
    """One data set split into training, validation and test parts.

    ``x_*``: inputs (float32 features, int64 token ids, or uint8 images
    ``(n, 3, H, W)``); ``y_*``: clean labels, int64 ``(n,)`` in
    ``[0, num_classes)``. ``vocabulary`` (text only, where known) gives the
    word of each token id. ``label_sets`` (data sets with real noisy labels,
    e.g. CIFAR-10N) maps a label set's name to its ``(train, val)`` labels,
    aligned with ``y_train`` and ``y_val``.
    """

    name: str
    description: str
    num_classes: int
    x_train: Tensor
    y_train: Tensor
    x_val: Tensor
    y_val: Tensor
    x_test: Tensor
    y_test: Tensor
    class_names: tuple[str, ...]
    vocabulary: tuple[str, ...] | None = None
    label_sets: Mapping[str, tuple[Tensor, Tensor]] | None = None

    def __post_init__(self) -> None:
        for part in ("train", "val", "test"):
            x, y = getattr(self, f"x_{part}"), getattr(self, f"y_{part}")
            if x.shape[0] != y.shape[0]:
                raise ValueError(f"{self.name}: x_{part} has {x.shape[0]} rows but y_{part} has {y.shape[0]}")
            if y.dtype != torch.int64 or y.dim() != 1:
                raise ValueError(f"{self.name}: y_{part} must be a 1-d int64 tensor")
        if len(self.class_names) != self.num_classes:
            raise ValueError(
                f"{self.name}: {len(self.class_names)} class names for {self.num_classes} classes"
            )
        for set_name, (train, val) in (self.label_sets or {}).items():
            if train.shape != self.y_train.shape or val.shape != self.y_val.shape:
                raise ValueError(f"{self.name}: label set {set_name!r} does not match y_train and y_val")

    @property
    def sizes(self) -> dict[str, int]:
        """Number of examples per part: ``{"train": ..., "val": ..., "test": ...}``."""
        return {"train": len(self.y_train), "val": len(self.y_val), "test": len(self.y_test)}

    def summary(self) -> str:
        """One line: name, sizes, input shape and dtype, classes."""
        s = self.sizes
        shape = "x".join(str(d) for d in self.x_train.shape[1:])
        dtype = str(self.x_train.dtype).replace("torch.", "")
        return (
            f"{self.name}: {s['train']:,} train / {s['val']:,} val / {s['test']:,} test, "
            f"inputs {shape} {dtype}, {self.num_classes} classes"
        )

    def __repr__(self) -> str:
        return f"Split({self.summary()})"


def holdout_split(n: int, fraction: float = 0.1, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``(train_idx, val_idx)`` of a fixed hold-out of ``n`` examples.

    The permutation is ``np.random.default_rng(seed).permutation(n)``; the
    validation indices are its first ``round(fraction * n)`` entries and the
    training indices the rest, both in permutation order (int64 arrays).
    """
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"validation fraction must lie in (0, 1), got {fraction}")
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    perm = np.random.default_rng(seed).permutation(n).astype(np.int64)
    n_val = int(round(fraction * n))
    return perm[n_val:], perm[:n_val]


def stratified_holdout(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``(rest_idx, held_idx)``: a fixed stratified hold-out of ``fraction`` of the examples.

    Exactly ``round(fraction * n)`` examples are held out; class ``c`` gives
    ``fraction * n_c`` of them rounded by largest remainder (so each class is
    within one example of its share). Within a class, the held-out examples are
    the first ones of ``np.random.default_rng(seed).permutation(n)``; both index
    arrays keep that permutation's order.
    """
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction must lie in (0, 1), got {fraction}")
    labels = np.asarray(labels)
    n = len(labels)
    classes, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    exact = fraction * counts
    quota = np.floor(exact).astype(np.int64)
    extra = int(round(fraction * n)) - int(quota.sum())
    order = np.argsort(-(exact - quota), kind="stable")
    quota[order[:extra]] += 1
    quota = np.minimum(quota, counts)
    perm = np.random.default_rng(seed).permutation(n).astype(np.int64)
    cls = inverse.reshape(-1)[perm]
    # rank of each position among the earlier positions of the same class
    rank = np.empty(n, dtype=np.int64)
    for k in range(len(classes)):
        where = np.flatnonzero(cls == k)
        rank[where] = np.arange(len(where))
    held = rank < quota[cls]
    return perm[~held], perm[held]


def _check_limit(limit: int | None) -> None:
    if limit is None:
        return
    if isinstance(limit, bool) or not isinstance(limit, (int, np.integer)) or limit < 1:
        raise ValueError(f"limit must be a positive integer or None, got {limit!r}")


class FullData(NamedTuple):
    """A data set before the validation hold-out (numpy arrays)."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: tuple[str, ...]
    description: str
    vocabulary: tuple[str, ...] | None = None
    label_sets: dict[str, np.ndarray] | None = None  # other labels of the training images, by name


def _tensor(a: np.ndarray) -> Tensor:
    return torch.from_numpy(np.ascontiguousarray(a))


def _make_split(
    name: str, full: FullData, validation_fraction: float, split_seed: int, limit: int | None
) -> Split:
    train_idx, val_idx = holdout_split(len(full.y_train), validation_fraction, split_seed)
    test_idx = np.arange(len(full.y_test))
    if limit is not None:
        train_idx, val_idx, test_idx = train_idx[:limit], val_idx[:limit], test_idx[:limit]
    y_train = np.asarray(full.y_train, dtype=np.int64)
    y_test = np.asarray(full.y_test, dtype=np.int64)
    description = full.description
    if validation_fraction != 0.1:
        description += f" [validation hold-out {validation_fraction:g} of the training set, not 10%]"
    if limit is not None:
        description += f" [limited to the first {limit} examples of each part]"
    return Split(
        name=name,
        description=description,
        num_classes=len(full.class_names),
        x_train=_tensor(full.x_train[train_idx]),
        y_train=_tensor(y_train[train_idx]),
        x_val=_tensor(full.x_train[val_idx]),
        y_val=_tensor(y_train[val_idx]),
        x_test=_tensor(full.x_test[test_idx]),
        y_test=_tensor(y_test[test_idx]),
        class_names=tuple(full.class_names),
        vocabulary=full.vocabulary,
        label_sets=None if full.label_sets is None else {
            name: (_tensor(np.asarray(y, dtype=np.int64)[train_idx]), _tensor(np.asarray(y, dtype=np.int64)[val_idx]))
            for name, y in full.label_sets.items()},
    )


def split_arrays(
    name: str,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    class_names: Sequence[str] | None = None,
    *,
    description: str = "",
    validation_fraction: float = 0.1,
    split_seed: int = 0,
) -> Split:
    """A :class:`Split` of your own data with the paper's protocol. The result goes
    wherever a loaded data set does, e.g. ``training.run_cells(..., split=)``.

    Parameters
    ----------
    name
        What the split is called in messages and results.
    x_train, y_train
        ``(n, ...)`` inputs and ``(n,)`` integer labels in ``[0, c)``, noisy or
        clean; ``validation_fraction`` of them is held out for validation by
        :func:`holdout_split` (``split_seed``). Inputs keep their dtype (float32
        features, int64 token ids, uint8 images ``(n, 3, H, W)``).
    x_test, y_test
        The test set, kept whole; its labels should be clean.
    class_names
        One name per class; ``c = len(class_names)`` (default: one more than
        the largest label).
    description
        A sentence on the data for reports (default: ``name``).

    Raises
    ------
    ValueError
        Labels that are not 1-d integers or lie outside ``[0, c)``, or inputs
        and labels of different lengths.
    """
    y_train, y_test = np.asarray(y_train), np.asarray(y_test)
    for part, y in (("y_train", y_train), ("y_test", y_test)):
        if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
            raise ValueError(f"{name}: {part} must be a 1-d array of integer labels, got {y.dtype} {y.shape}")
    if class_names is None:
        class_names = [str(c) for c in range(int(max(y_train.max(initial=0), y_test.max(initial=0))) + 1)]
    c = len(class_names)
    for part, y in (("y_train", y_train), ("y_test", y_test)):
        if len(y) and (y.min() < 0 or y.max() >= c):
            raise ValueError(f"{name}: {part} has labels outside [0, {c}) (min {y.min()}, max {y.max()})")
    x_train, x_test = np.asarray(x_train), np.asarray(x_test)
    for part, x, y in (("train", x_train, y_train), ("test", x_test, y_test)):
        if len(x) != len(y):
            raise ValueError(f"{name}: x_{part} has {len(x)} rows but y_{part} has {len(y)}")
    full = FullData(x_train, y_train, x_test, y_test, tuple(class_names), description or name)
    return _make_split(name, full, validation_fraction, split_seed, None)


def _fixed_order(n: int) -> np.ndarray:
    """The fixed order given to test sets whose files are sorted by class, so that the
    first examples (``limit``) mix the classes."""
    return np.random.default_rng(TEST_SPLIT_SEED).permutation(n)
