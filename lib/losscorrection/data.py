"""Datasets with the paper's splits, and image pre-processing on the training device.

Every loader returns a :class:`Split` of torch tensors with *clean* labels
(``int64``); label noise is added later (:mod:`losscorrection.noise`). The
protocol is the paper's: 10% of the official training set is held out for
validation with a fixed permutation (:func:`holdout_split`) and the official
test set is used for testing.

Data sets (:data:`DATASETS`, :func:`load_dataset`):

``mnist``
    MNIST, 54,000 / 6,000 / 10,000; ``x`` float32 ``(n, 784)`` in [0, 1].
``mnist10k``
    "MNIST-10k": the official 10k MNIST *test* set re-split with a fixed
    stratified permutation into 8,000 training and 2,000 test images, then the
    10% validation hold-out: 7,200 / 800 / 2,000. Not the paper's 60k/10k
    protocol; it runs with the MNIST test files only.
``digits``
    scikit-learn's bundled 8x8 digits (1,797 images), ``x`` float32 ``(n, 64)``
    in [0, 1]; fixed stratified 20% test split, then the 10% hold-out.
``imdb``
    IMDB reviews, 22,500 / 2,500 / 25,000; ``x`` int64 ``(n, maxlen)`` token ids
    (0 padding, 1 out of vocabulary, 2.. the most frequent training words),
    from the Keras ``imdb.npz`` (whose lists hold word ranks, 1 = most frequent;
    the start marker and the +3 offset are added by Keras' ``load_data``, not
    stored) or from the Stanford text files.
``cifar10``, ``cifar100``
    CIFAR from the python pickles, 45,000 / 5,000 / 10,000; ``x`` uint8
    ``(n, 3, 32, 32)``.
``cifar10jpg``
    CIFAR-10 from its JPEG copy (quality about 75, slightly lossy), decoded once
    into a cached uint8 array; same shapes and splits as ``cifar10``.

Clothing1M is a list of image files rather than tensors: :func:`load_clothing1m`,
:func:`clothing1m_overlap_transition` and :class:`ImageListDataset`.

The data root is the ``data_root`` argument, else ``$LOSSCORR_DATA``, else
``./data`` (:func:`resolve_data_root`). A missing file raises
:class:`MissingDataError`, whose one-line message names the missing path(s),
the accepted layouts and where to get the data.

Images stay ``uint8`` until a batch reaches the model: :func:`pixel_mean`,
:func:`prepare_images` (``x / 255 - mean``) and :func:`augment_batch` (random
crop after 4-pixel zero padding, random horizontal flip) run on the tensors'
own device.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import pickle
import re
import tarfile
import tempfile
import warnings
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "CIFAR10_CLASSES",
    "CLOTHING1M_CLASSES",
    "DATASETS",
    "Clothing1M",
    "ImageList",
    "ImageListDataset",
    "MissingDataError",
    "Split",
    "augment_batch",
    "build_vocabulary",
    "cifar10jpg_arrays",
    "clothing1m_overlap_keys",
    "clothing1m_overlap_transition",
    "holdout_split",
    "load_clothing1m",
    "load_dataset",
    "missing_files",
    "pad_sequences",
    "pixel_mean",
    "prepare_images",
    "read_idx_images",
    "read_idx_labels",
    "resolve_data_root",
    "split_arrays",
    "stratified_holdout",
    "tokenize",
]

DATA_ENV = "LOSSCORR_DATA"
CACHE_ENV = "LOSSCORR_CACHE"
DATASETS = ("mnist", "mnist10k", "digits", "imdb", "cifar10", "cifar10jpg", "cifar100")

# Seed of the fixed stratified test splits of ``mnist10k`` and ``digits``, and of
# the fixed order given to test sets stored sorted by class. It never changes:
# the test set of a data set is the same for every run and every ``split_seed``.
TEST_SPLIT_SEED = 2017
TEST_FRACTION = 0.2

CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)
CLOTHING1M_CLASSES = (
    "T-Shirt", "Shirt", "Knitwear", "Chiffon", "Sweater", "Hoodie", "Windbreaker",
    "Jacket", "Down Coat", "Suit", "Shawl", "Dress", "Vest", "Underwear",
)

MNIST_URL = "http://yann.lecun.com/exdb/mnist/"
MNIST_NPZ_URL = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/mnist.npz"
IMDB_NPZ_URL = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/imdb.npz"
IMDB_WORD_INDEX_URL = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/imdb_word_index.json"
ACLIMDB_URL = "https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz"
CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR100_URL = "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"
CLOTHING1M_URL = "https://github.com/Cysu/noisy_label"


# ----------------------------------------------------------------------- basics


class MissingDataError(FileNotFoundError):
    """A data set file is missing.

    The message is one line: the missing path(s), the accepted layouts and where
    to get the data. ``missing`` holds the missing paths as strings.
    """

    def __init__(self, message: str, missing: Iterable[str | Path] = ()) -> None:
        super().__init__(message)
        self.missing = tuple(str(p) for p in missing)

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def _missing(
    dataset: str, missing: Sequence[str | Path], accepted: str, get: str, alternative: str = ""
) -> MissingDataError:
    names = ", ".join(str(p) for p in missing) + (f" (or else {alternative})" if alternative else "")
    return MissingDataError(
        f"{dataset} data not found: missing {names}; accepted layouts: {accepted}; {get}", missing
    )


def resolve_data_root(data_root: str | Path | None = None) -> Path:
    """The data folder: ``data_root``, else ``$LOSSCORR_DATA``, else ``./data`` (absolute)."""
    if data_root is None or str(data_root) == "":
        data_root = os.environ.get(DATA_ENV) or "data"
    return Path(data_root).expanduser().resolve()


@dataclass(frozen=True, repr=False)
class Split:
    """One data set split into training, validation and test parts.

    ``x_*``: inputs (float32 features, int64 token ids, or uint8 images
    ``(n, 3, H, W)``); ``y_*``: clean labels, int64 ``(n,)`` in
    ``[0, num_classes)``. ``vocabulary`` (text only, where known) gives the
    word of each token id.
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


class _Full(NamedTuple):
    """A data set before the validation hold-out (numpy arrays)."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: tuple[str, ...]
    description: str
    vocabulary: tuple[str, ...] | None = None


def _tensor(a: np.ndarray) -> Tensor:
    return torch.from_numpy(np.ascontiguousarray(a))


def _make_split(
    name: str, full: _Full, validation_fraction: float, split_seed: int, limit: int | None
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
    """A :class:`Split` of your own data with the paper's protocol: ``validation_fraction``
    of ``(x_train (n, ...), y_train (n,))`` held out by :func:`holdout_split`, and
    ``(x_test, y_test)`` kept as the test set.

    Inputs keep their dtype (float32 features, int64 token ids, uint8 images
    ``(n, 3, H, W)``); labels are integers in ``[0, c)`` with ``c =
    len(class_names)`` (default: one more than the largest label). The result
    goes wherever a loaded data set does, e.g. ``training.run_cells(..., split=)``.
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
    full = _Full(x_train, y_train, x_test, y_test, tuple(class_names), description or name)
    return _make_split(name, full, validation_fraction, split_seed, None)


def _fixed_order(n: int) -> np.ndarray:
    """The fixed order given to test sets whose files are sorted by class, so that the
    first examples (``limit``) mix the classes."""
    return np.random.default_rng(TEST_SPLIT_SEED).permutation(n)


def _read_bytes(path: Path) -> bytes:
    """A file's bytes, gunzipped when it starts with the gzip magic number."""
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    return raw


# ------------------------------------------------------------------------ MNIST

_MNIST_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
_MNIST_LAYOUTS = (
    "torchvision <root>/MNIST/raw/{train-images-idx3-ubyte,train-labels-idx1-ubyte,"
    "t10k-images-idx3-ubyte,t10k-labels-idx1-ubyte} (each .gz or uncompressed) "
    "or Keras <root>/mnist.npz"
)
_MNIST_GET = f"pass download=True (torchvision) or get the files from {MNIST_URL} or {MNIST_NPZ_URL}"


def _read_idx(path: str | Path, magic: int, ndim: int) -> np.ndarray:
    path = Path(path)
    raw = _read_bytes(path)
    header = 4 + 4 * ndim
    if len(raw) < 4:
        raise ValueError(f"{path}: not an IDX file (only {len(raw)} bytes)")
    found = int.from_bytes(raw[:4], "big")
    if found != magic:
        raise ValueError(f"{path}: bad IDX magic number {found} (expected {magic})")
    if len(raw) < header:
        raise ValueError(f"{path}: truncated IDX header")
    dims = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = header + int(np.prod(dims, dtype=np.int64))
    if len(raw) != expected:
        raise ValueError(f"{path}: IDX size mismatch: {len(raw)} bytes, expected {expected} for shape {dims}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims).copy()


def read_idx_images(path: str | Path) -> np.ndarray:
    """Images of an IDX file (``.gz`` or not): uint8 ``(n, rows, cols)``.

    Raises ValueError on a magic number other than 2051 or a size mismatch."""
    return _read_idx(path, 2051, 3)


def read_idx_labels(path: str | Path) -> np.ndarray:
    """Labels of an IDX file (``.gz`` or not): uint8 ``(n,)``.

    Raises ValueError on a magic number other than 2049 or a size mismatch."""
    return _read_idx(path, 2049, 1)


def _idx_file(raw_dir: Path, name: str) -> Path | None:
    for candidate in (raw_dir / name, raw_dir / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _mnist_arrays(root: Path, keys: Sequence[str], download: bool) -> dict[str, np.ndarray]:
    """The MNIST arrays named by ``keys`` (uint8 images ``(n, 28, 28)``, uint8 labels)."""
    raw_dir = root / "MNIST" / "raw"
    found = {k: _idx_file(raw_dir, _MNIST_FILES[k]) for k in keys}
    npz = root / "mnist.npz"
    if any(p is None for p in found.values()) and not npz.is_file() and download:
        import torchvision

        torchvision.datasets.MNIST(str(root), train=True, download=True)
        found = {k: _idx_file(raw_dir, _MNIST_FILES[k]) for k in keys}
    if all(p is not None for p in found.values()):
        return {
            k: read_idx_images(p) if k.endswith("images") else read_idx_labels(p) for k, p in found.items()
        }
    if npz.is_file():
        names = {
            "train_images": "x_train", "train_labels": "y_train", "test_images": "x_test", "test_labels": "y_test",
        }
        with np.load(npz) as f:
            return {k: np.asarray(f[names[k]]) for k in keys}
    missing = [raw_dir / f"{_MNIST_FILES[k]}.gz" for k, p in found.items() if p is None]
    raise _missing("MNIST", missing, _MNIST_LAYOUTS, _MNIST_GET, alternative=str(npz))


def _flat_pixels(images: np.ndarray) -> np.ndarray:
    return (images.reshape(len(images), -1).astype(np.float32) / 255.0)


def _load_mnist(root: Path, download: bool) -> _Full:
    a = _mnist_arrays(root, list(_MNIST_FILES), download)
    return _Full(
        _flat_pixels(a["train_images"]), a["train_labels"], _flat_pixels(a["test_images"]), a["test_labels"],
        tuple(str(d) for d in range(10)),
        "MNIST (the paper's protocol: 60,000 training images with 10% held out for validation, "
        "official 10,000 test images); 784 pixels in [0, 1]",
    )


def _load_mnist10k(root: Path, download: bool) -> _Full:
    a = _mnist_arrays(root, ["test_images", "test_labels"], download)
    x, y = _flat_pixels(a["test_images"]), a["test_labels"]
    train_idx, test_idx = stratified_holdout(y, TEST_FRACTION, TEST_SPLIT_SEED)
    return _Full(
        x[train_idx], y[train_idx], x[test_idx], y[test_idx], tuple(str(d) for d in range(10)),
        "MNIST-10k: the official 10k MNIST test set re-split with a fixed stratified permutation "
        "into 8,000 training and 2,000 test images (20% of each class), then 10% of the training "
        "part held out for validation (7,200 / 800 / 2,000); NOT the paper's 60k/10k protocol",
    )


def _load_digits(root: Path, download: bool) -> _Full:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = (np.asarray(bunch.data, dtype=np.float32) / 16.0).astype(np.float32)
    y = np.asarray(bunch.target, dtype=np.int64)
    train_idx, test_idx = stratified_holdout(y, TEST_FRACTION, TEST_SPLIT_SEED)
    return _Full(
        x[train_idx], y[train_idx], x[test_idx], y[test_idx], tuple(str(d) for d in range(10)),
        "scikit-learn's 8x8 digits (1,797 images, 64 pixels in [0, 1]): a fixed stratified 20% test "
        "split, then 10% of the rest held out for validation; not MNIST",
    )


# ------------------------------------------------------------------------- IMDB

_TOKEN_RE = re.compile(r"[a-z0-9']+")
_ACLIMDB_RE = re.compile(r"(?:^|/)aclImdb/(train|test)/(neg|pos)/([^/]+\.txt)$")
_IMDB_LAYOUTS = (
    "Keras <root>/imdb.npz (optionally with <root>/imdb_word_index.json), "
    "Stanford <root>/aclImdb/{train,test}/{neg,pos}/*.txt or the tarball <root>/aclImdb_v1.tar.gz"
)
_IMDB_GET = f"get {IMDB_NPZ_URL} (or pass download=True) or {ACLIMDB_URL}"


def tokenize(text: str) -> list[str]:
    """Lower-case words of a review: ``<br />`` becomes a space, tokens match ``[a-z0-9']+``."""
    return _TOKEN_RE.findall(text.lower().replace("<br />", " "))


def build_vocabulary(sequences: Iterable[Iterable[Any]], size: int = 5000) -> dict[Any, int]:
    """Token ids of the ``size - 2`` most frequent tokens of ``sequences``.

    Frequency is the total number of occurrences; ties are broken by the
    tokens' natural order (alphabetical for words, rank for Keras word ranks).
    Ids start at 2: id 0 is padding and id 1 stands for every other token.
    """
    if size < 3:
        raise ValueError(f"vocabulary size must be at least 3, got {size}")
    counts: Counter = Counter()
    for seq in sequences:
        counts.update(seq)
    ordered = sorted(counts, key=lambda token: (-counts[token], token))
    return {token: i + 2 for i, token in enumerate(ordered[: size - 2])}


def pad_sequences(sequences: Sequence[Sequence[int]], maxlen: int) -> np.ndarray:
    """int64 ``(n, maxlen)``, like Keras ``pad_sequences`` defaults: sequences
    longer than ``maxlen`` keep their last ``maxlen`` ids; shorter ones are
    padded with 0 at the front."""
    if maxlen < 1:
        raise ValueError(f"maxlen must be positive, got {maxlen}")
    out = np.zeros((len(sequences), maxlen), dtype=np.int64)
    for i, seq in enumerate(sequences):
        tail = list(seq)[-maxlen:]
        if tail:
            out[i, maxlen - len(tail):] = tail
    return out


def _review_key(name: str) -> tuple[int, str]:
    stem = name.rsplit("/", 1)[-1]
    head = stem.split("_", 1)[0]
    return (int(head) if head.isdigit() else -1, stem)


def _tar_members(source: Path, pattern: re.Pattern) -> Iterator[tuple[re.Match, bytes]]:
    """``(match, content)`` of every regular file of a tarball whose name matches ``pattern``."""
    with tarfile.open(source, "r:*") as tf:
        for member in tf:
            match = pattern.search(member.name)
            if member.isfile() and match:
                handle = tf.extractfile(member)
                if handle is not None:
                    yield match, handle.read()


def _aclimdb_texts(source: Path) -> dict[str, tuple[list[str], np.ndarray]]:
    """``{"train": (texts, labels), "test": ...}`` from the folder or the tarball;
    within a part, negative reviews then positive ones, by file number."""
    found: dict[tuple[str, str], list[tuple[tuple[int, str], str]]] = {}
    if source.is_dir():
        for part in ("train", "test"):
            for label in ("neg", "pos"):
                folder = source / part / label
                files = sorted(folder.glob("*.txt")) if folder.is_dir() else []
                found[(part, label)] = [
                    (_review_key(p.name), p.read_text(encoding="utf-8", errors="replace")) for p in files
                ]
    else:
        for match, content in _tar_members(source, _ACLIMDB_RE):
            text = content.decode("utf-8", errors="replace")
            found.setdefault((match[1], match[2]), []).append((_review_key(match[3]), text))
    out = {}
    for part in ("train", "test"):
        texts: list[str] = []
        labels: list[int] = []
        for y, label in enumerate(("neg", "pos")):
            reviews = sorted(found.get((part, label), []))
            texts += [t for _, t in reviews]
            labels += [y] * len(reviews)
        if not texts:
            raise ValueError(f"{source}: no {part}/neg or {part}/pos reviews found")
        out[part] = (texts, np.asarray(labels, dtype=np.int64))
    return out


def _imdb_source(root: Path, source: str, download: bool) -> tuple[str, Path]:
    npz = root / "imdb.npz"
    folder, tarball = root / "aclImdb", root / "aclImdb_v1.tar.gz"
    if source not in ("auto", "npz", "aclimdb"):
        raise ValueError(f"unknown IMDB source {source!r}; known: auto, npz, aclimdb")
    if source in ("auto", "npz") and npz.is_file():
        return "npz", npz
    if source in ("auto", "aclimdb"):
        if (folder / "train").is_dir() and (folder / "test").is_dir():
            return "aclimdb", folder
        if tarball.is_file():
            return "aclimdb", tarball
    if download and source in ("auto", "npz"):
        from torchvision.datasets.utils import download_url

        download_url(IMDB_NPZ_URL, str(root), filename="imdb.npz")
        return "npz", npz
    wanted = {"npz": [npz], "aclimdb": [folder, tarball], "auto": [npz, folder, tarball]}[source]
    raise _missing("IMDB", [" or ".join(str(p) for p in wanted)], _IMDB_LAYOUTS, _IMDB_GET)


def _load_imdb(
    root: Path, download: bool, vocabulary_size: int = 5000, maxlen: int = 400, source: str = "auto"
) -> _Full:
    kind, path = _imdb_source(root, source, download)
    words: tuple[str, ...] | None = None
    if kind == "npz":
        with np.load(path, allow_pickle=True) as f:
            raw = {k: f[k] for k in ("x_train", "y_train", "x_test", "y_test")}
        train = [[int(w) for w in seq] for seq in raw["x_train"]]
        test = [[int(w) for w in seq] for seq in raw["x_test"]]
        y_train, y_test = raw["y_train"].astype(np.int64), raw["y_test"].astype(np.int64)
        vocab = build_vocabulary(train, vocabulary_size)
        index_file = root / "imdb_word_index.json"
        if index_file.is_file():
            by_rank = {int(r): w for w, r in json.loads(index_file.read_text(encoding="utf-8")).items()}
            words = ("<pad>", "<oov>", *(by_rank.get(r, f"#{r}") for r in vocab))
        origin = f"Keras {path.name} (word ranks)"
    else:
        parts = _aclimdb_texts(path)
        train = [tokenize(t) for t in parts["train"][0]]
        test = [tokenize(t) for t in parts["test"][0]]
        y_train, y_test = parts["train"][1], parts["test"][1]
        vocab = build_vocabulary(train, vocabulary_size)
        words = ("<pad>", "<oov>", *vocab)
        origin = f"Stanford {path.name} text"
    x_train = pad_sequences([[vocab.get(t, 1) for t in seq] for seq in train], maxlen)
    x_test = pad_sequences([[vocab.get(t, 1) for t in seq] for seq in test], maxlen)
    order = _fixed_order(len(y_test))
    return _Full(
        x_train, y_train, x_test[order], y_test[order], ("negative", "positive"),
        f"IMDB movie reviews ({origin}): {len(y_train):,} training reviews with 10% held out for "
        f"validation, {len(y_test):,} test reviews; {vocabulary_size:,}-word vocabulary of the training "
        f"reviews (0 padding, 1 out of vocabulary), sequences of {maxlen} tokens (last tokens kept, "
        "padded at the front)",
        words,
    )


# ------------------------------------------------------------------------ CIFAR


def _unpickle(path: Path) -> dict:
    with open(path, "rb") as f:
        return pickle.load(f, encoding="bytes")


def _field(d: dict, key: str) -> Any:
    if key.encode() in d:
        return d[key.encode()]
    return d[key]


def _names(values: Iterable) -> tuple[str, ...]:
    return tuple(v.decode() if isinstance(v, bytes) else str(v) for v in values)


def _cifar_images(batch: dict) -> np.ndarray:
    return np.asarray(_field(batch, "data"), dtype=np.uint8).reshape(-1, 3, 32, 32)


_CIFAR10_FILES = (*(f"data_batch_{i}" for i in range(1, 6)), "test_batch", "batches.meta")
_CIFAR100_FILES = ("train", "test", "meta")


def _cifar_files(
    root: Path, folder: str, files: Sequence[str], name: str, url: str, download: bool, cls: Callable
) -> Path:
    base = root / folder
    absent = [base / f for f in files if not (base / f).is_file()]
    if absent and download:
        cls(str(root), train=True, download=True)
        absent = [base / f for f in files if not (base / f).is_file()]
    if absent:
        raise _missing(
            name, absent, f"torchvision python version <root>/{folder}/{{{','.join(files)}}}",
            f"pass download=True (torchvision) or extract {url} into the data root",
        )
    return base


def _load_cifar10(root: Path, download: bool) -> _Full:
    import torchvision

    base = _cifar_files(root, "cifar-10-batches-py", _CIFAR10_FILES, "CIFAR-10", CIFAR10_URL, download,
                        torchvision.datasets.CIFAR10)
    batches = [_unpickle(base / f"data_batch_{i}") for i in range(1, 6)]
    test = _unpickle(base / "test_batch")
    return _Full(
        np.concatenate([_cifar_images(b) for b in batches]),
        np.concatenate([np.asarray(_field(b, "labels"), dtype=np.int64) for b in batches]),
        _cifar_images(test), np.asarray(_field(test, "labels"), dtype=np.int64),
        _names(_field(_unpickle(base / "batches.meta"), "label_names")),
        "CIFAR-10 (python pickles): 50,000 training images with 10% held out for validation, "
        "10,000 test images; uint8 3x32x32",
    )


def _load_cifar100(root: Path, download: bool) -> _Full:
    import torchvision

    base = _cifar_files(root, "cifar-100-python", _CIFAR100_FILES, "CIFAR-100", CIFAR100_URL,
                        download, torchvision.datasets.CIFAR100)
    train, test = _unpickle(base / "train"), _unpickle(base / "test")
    return _Full(
        _cifar_images(train), np.asarray(_field(train, "fine_labels"), dtype=np.int64),
        _cifar_images(test), np.asarray(_field(test, "fine_labels"), dtype=np.int64),
        _names(_field(_unpickle(base / "meta"), "fine_label_names")),
        "CIFAR-100 (python pickles, 100 fine labels): 50,000 training images with 10% held out for "
        "validation, 10,000 test images; uint8 3x32x32",
    )


# ------------------------------------------------------------ CIFAR-10 JPEG copy

_JPG_RE = re.compile(r"(?:^|/)(train|test)/([^/]+)/([^/]+\.jpe?g)$", re.IGNORECASE)
_CACHE_VERSION = 1
_JPG_LAYOUTS = (
    "<root>/cifar10-jpg/cifar10-jpg.tar.gz, <root>/cifar10-jpg.tar.gz, or the extracted "
    "<root>/cifar10-jpg/{train,test}/<class>/*.jpg"
)


def _cifar10jpg_source(root: Path) -> Path | None:
    """The tarball or the folder holding ``train/`` and ``test/``, whichever comes first."""
    folder = root / "cifar10-jpg"
    for candidate in (folder / "cifar10-jpg.tar.gz", root / "cifar10-jpg.tar.gz"):
        if candidate.is_file():
            return candidate
    for candidate in (folder, folder / "cifar10-jpg"):
        if (candidate / "train").is_dir() and (candidate / "test").is_dir():
            return candidate
    return None


def _source_stamp(source: Path) -> str:
    """Size and modification time of the source (summed/maximised over a folder's JPEGs)."""
    if source.is_file():
        st = source.stat()
        return f"tar-{st.st_size}-{st.st_mtime_ns}"
    size = count = mtime = 0
    for part in ("train", "test"):
        for path in (source / part).glob("*/*"):
            if _JPG_RE.search(path.as_posix()):
                st = path.stat()
                size, count, mtime = size + st.st_size, count + 1, max(mtime, st.st_mtime_ns)
    return f"dir-{count}-{size}-{mtime}"


def _user_cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "losscorrection").expanduser()


def _writable(folder: Path) -> bool:
    """Whether ``folder`` may be written: it allows writing for the current user and
    some write permission bit is set (a folder marked read-only counts as
    read-only even for root)."""
    try:
        return os.access(folder, os.W_OK) and bool(folder.stat().st_mode & 0o222)
    except OSError:
        return False


def _cache_locations(source: Path) -> tuple[list[Path], str]:
    name = f"cifar10jpg-v{_CACHE_VERSION}-{_source_stamp(source)}.npz"
    beside = source.parent if source.is_file() else source
    return [beside, _user_cache_dir()], name


def _collect_jpegs(source: Path) -> dict[tuple[str, str, str], bytes]:
    """``{(part, class, file name): JPEG bytes}`` from the tarball or the folder."""
    found: dict[tuple[str, str, str], bytes] = {}
    if source.is_file():
        for match, content in _tar_members(source, _JPG_RE):
            found[(match[1], match[2], match[3])] = content
    else:
        for part in ("train", "test"):
            for path in (source / part).glob("*/*"):
                match = _JPG_RE.search(path.as_posix())
                if match and path.is_file():
                    found[(match[1], match[2], match[3])] = path.read_bytes()
    return found


def _decode_cifar10_jpg(source: Path, progress: bool = True) -> dict[str, np.ndarray]:
    """Decode every JPEG of the copy: sorted class folders (label = position), sorted
    file names, RGB. Returns ``x_train``/``x_test`` uint8 ``(n, 3, H, W)``,
    ``y_train``/``y_test`` int64 and ``class_names``."""
    from PIL import Image
    from tqdm import tqdm

    found = _collect_jpegs(source)
    classes = sorted({cls for _, cls, _ in found})
    for part in ("train", "test"):
        present = sorted({cls for p, cls, _ in found if p == part})
        if present != classes:
            raise ValueError(f"{source}: {part}/ has classes {present}, expected {classes}")
    if not classes:
        raise ValueError(f"{source}: no train/<class>/*.jpg files found")
    keys = sorted(found, key=lambda k: (k[0] != "train", classes.index(k[1]), k[2]))
    bar = tqdm(keys, desc=f"decoding {source.name}", unit="img", disable=not progress, leave=False)
    x = None
    for i, key in enumerate(bar):
        with Image.open(io.BytesIO(found[key])) as img:
            pixels = np.asarray(img.convert("RGB"))
        if x is None:
            x = np.empty((len(keys), *pixels.shape), dtype=np.uint8)
        elif pixels.shape != x.shape[1:]:
            raise ValueError(f"{source}: {'/'.join(key)} is {pixels.shape[:2]}, expected {x.shape[1:3]}")
        x[i] = pixels
    assert x is not None
    x = x.transpose(0, 3, 1, 2)
    labels = np.array([classes.index(k[1]) for k in keys], dtype=np.int64)
    n_train = sum(1 for k in keys if k[0] == "train")
    return {
        "x_train": np.ascontiguousarray(x[:n_train]), "y_train": labels[:n_train],
        "x_test": np.ascontiguousarray(x[n_train:]), "y_test": labels[n_train:],
        "class_names": np.array(classes),
    }


_CACHE_KEYS = ("x_train", "y_train", "x_test", "y_test", "class_names")


def _read_cache(path: Path) -> dict[str, np.ndarray] | None:
    try:
        with np.load(path, allow_pickle=False) as f:
            return {k: f[k] for k in _CACHE_KEYS}
    except (OSError, KeyError, ValueError, EOFError):
        return None


def _write_cache(arrays: dict[str, np.ndarray], folders: list[Path], name: str) -> Path | None:
    for folder in folders:
        if folder.exists() and not _writable(folder):
            continue
        try:
            folder.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=".npz")
            try:
                with os.fdopen(fd, "wb") as f:
                    np.savez(f, **arrays)
                os.chmod(tmp, 0o644)
                os.replace(tmp, folder / name)
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)
            return folder / name
        except OSError:
            continue
    warnings.warn(f"could not write the decoded CIFAR-10 JPEG cache to any of {folders}", stacklevel=3)
    return None


def cifar10jpg_arrays(data_root: str | Path | None = None, progress: bool = True) -> dict[str, np.ndarray]:
    """The decoded CIFAR-10 JPEG copy (official train/test parts), from the cache if present.

    The cache, ``cifar10jpg-v1-<source size and mtime>.npz``, is written next to
    the source, or under ``$LOSSCORR_CACHE`` (default ``~/.cache/losscorrection``)
    when that folder is read-only; a changed source gets a new name and is
    decoded again. Keys: ``x_train`` uint8 ``(50000, 3, 32, 32)``, ``y_train``
    int64, ``x_test``, ``y_test``, ``class_names``.
    """
    root = resolve_data_root(data_root)
    source = _cifar10jpg_source(root)
    if source is None:
        raise _missing(
            "CIFAR-10 (JPEG copy)", [root / "cifar10-jpg" / "cifar10-jpg.tar.gz"], _JPG_LAYOUTS,
            "this copy is not distributed by the library: use the lossless CIFAR-10 (dataset 'cifar10', "
            f"download=True or {CIFAR10_URL}) instead",
        )
    folders, name = _cache_locations(source)
    for folder in folders:
        if (folder / name).is_file():
            cached = _read_cache(folder / name)
            if cached is not None:
                return cached
    arrays = _decode_cifar10_jpg(source, progress=progress)
    _write_cache(arrays, folders, name)
    return arrays


def _load_cifar10jpg(root: Path, download: bool, progress: bool = True) -> _Full:
    a = cifar10jpg_arrays(root, progress=progress)
    order = _fixed_order(len(a["y_test"]))
    return _Full(
        a["x_train"], a["y_train"], a["x_test"][order], a["y_test"][order],
        tuple(str(c) for c in a["class_names"]),
        "CIFAR-10 (JPEG copy, quality ~75; slightly lossy): 50,000 training images with 10% held out "
        "for validation, 10,000 test images; uint8 3x32x32",
    )


# ------------------------------------------------------------------- registry

_LOADERS: dict[str, Callable[..., _Full]] = {
    "mnist": _load_mnist,
    "mnist10k": _load_mnist10k,
    "digits": _load_digits,
    "imdb": _load_imdb,
    "cifar10": _load_cifar10,
    "cifar10jpg": _load_cifar10jpg,
    "cifar100": _load_cifar100,
}


def _known(name: str) -> str:
    key = str(name).lower()
    if key not in _LOADERS:
        raise ValueError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")
    return key


def load_dataset(
    name: str,
    data_root: str | Path | None = None,
    *,
    validation_fraction: float = 0.1,
    split_seed: int = 0,
    limit: int | None = None,
    download: bool = False,
    **kwargs: Any,
) -> Split:
    """Load a data set of :data:`DATASETS` with the paper's protocol.

    ``validation_fraction`` of the official training set is held out for
    validation by :func:`holdout_split` (``split_seed``); the test set is the
    official one (for ``mnist10k`` and ``digits``: a fixed stratified 20%).
    ``limit`` keeps at most that many examples of each of train, val and test
    (the first ones after the split), for fast smoke runs. ``download=True``
    fetches data torchvision can download (MNIST, CIFAR) and the Keras IMDB
    file. Extra keyword arguments go to the data set's loader: ``imdb`` takes
    ``vocabulary_size=5000``, ``maxlen=400`` and ``source="auto"|"npz"|"aclimdb"``;
    ``cifar10jpg`` takes ``progress=True``.

    Raises :class:`MissingDataError` when files are missing and ValueError for
    an unknown name.
    """
    key = _known(name)
    if not 0.0 < validation_fraction < 1.0:
        raise ValueError(f"validation fraction must lie in (0, 1), got {validation_fraction}")
    _check_limit(limit)
    full = _LOADERS[key](resolve_data_root(data_root), download, **kwargs)
    return _make_split(key, full, validation_fraction, split_seed, limit)


def missing_files(name: str, data_root: str | Path | None = None) -> list[str]:
    """What :func:`load_dataset` would report missing for ``name`` (empty when the
    data is present; nothing is read or downloaded)."""
    key = _known(name)
    root = resolve_data_root(data_root)
    try:
        if key in ("mnist", "mnist10k"):
            keys = list(_MNIST_FILES) if key == "mnist" else ["test_images", "test_labels"]
            raw_dir = root / "MNIST" / "raw"
            if (root / "mnist.npz").is_file() or all(_idx_file(raw_dir, _MNIST_FILES[k]) for k in keys):
                return []
            return [str(raw_dir / f"{_MNIST_FILES[k]}.gz") for k in keys
                    if not _idx_file(raw_dir, _MNIST_FILES[k])]
        if key == "imdb":
            _imdb_source(root, "auto", download=False)
        elif key in ("cifar10", "cifar100"):
            folder, names = {
                "cifar10": ("cifar-10-batches-py", _CIFAR10_FILES),
                "cifar100": ("cifar-100-python", _CIFAR100_FILES),
            }[key]
            return [str(root / folder / f) for f in names if not (root / folder / f).is_file()]
        elif key == "cifar10jpg" and _cifar10jpg_source(root) is None:
            return [str(root / "cifar10-jpg" / "cifar10-jpg.tar.gz")]
    except MissingDataError as err:
        return list(err.missing)
    return []


# ----------------------------------------------------------- image operations


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


# ------------------------------------------------------------------ Clothing1M

_CLOTHING1M_LISTS = {
    "noisy_train": ("noisy_train_key_list.txt", "noisy"),
    "clean_train": ("clean_train_key_list.txt", "clean"),
    "clean_val": ("clean_val_key_list.txt", "clean"),
    "clean_test": ("clean_test_key_list.txt", "clean"),
}
_CLOTHING1M_KV = {"noisy": "noisy_label_kv.txt", "clean": "clean_label_kv.txt"}


class ImageList(NamedTuple):
    """Image paths relative to the data set root, and their int64 labels ``(n,)``."""

    paths: list[str]
    labels: np.ndarray


@dataclass(frozen=True, eq=False)
class Clothing1M:
    """Clothing1M in its official layout.

    ``noisy_train``: the (about 1M) noisy-labelled training images;
    ``clean_train``/``clean_val``/``clean_test``: the clean-labelled parts;
    ``noisy_labels``/``clean_labels``: every key of ``noisy_label_kv.txt`` /
    ``clean_label_kv.txt`` with its label (0..13).
    """

    root: Path
    noisy_train: ImageList
    clean_train: ImageList
    clean_val: ImageList
    clean_test: ImageList
    noisy_labels: dict[str, int]
    clean_labels: dict[str, int]
    class_names: tuple[str, ...] = CLOTHING1M_CLASSES

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def _read_kv(path: Path) -> dict[str, int]:
    labels: dict[str, int] = {}
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            parts = line.split()
            if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
                raise ValueError(f"{path}:{number}: expected '<image path> <label>', got {line.strip()!r}")
            label = int(parts[1])
            if not 0 <= label < len(CLOTHING1M_CLASSES):
                raise ValueError(f"{path}:{number}: label {label} outside 0..{len(CLOTHING1M_CLASSES) - 1}")
            labels[parts[0]] = label
    return labels


def _read_keys(path: Path) -> list[str]:
    with open(path, encoding="utf-8") as f:
        return [line.strip() for line in f if line.strip()]


def load_clothing1m(data_root: str | Path | None = None) -> Clothing1M:
    """Clothing1M's key lists and labels from ``<root>/clothing1m/`` or ``<root>`` itself.

    Needs ``noisy_label_kv.txt``, ``clean_label_kv.txt`` (lines
    ``images/0/00/xxx.jpg 3``), ``noisy_train_key_list.txt``,
    ``clean_train_key_list.txt``, ``clean_val_key_list.txt`` and
    ``clean_test_key_list.txt``; ``category_names_eng.txt`` is optional. Images
    are not opened (see :class:`ImageListDataset`).
    """
    root = resolve_data_root(data_root)
    needed = [*_CLOTHING1M_KV.values(), *(f for f, _ in _CLOTHING1M_LISTS.values())]
    candidates = [root / "clothing1m", root]
    base = next((c for c in candidates if (c / needed[0]).is_file()), candidates[0])
    absent = [base / f for f in needed if not (base / f).is_file()]
    if absent:
        raise _missing(
            "Clothing1M", absent,
            "the official layout (images/, *_label_kv.txt, *_key_list.txt) in <root>/clothing1m/ or <root>",
            f"Clothing1M is distributed by its authors on request, see {CLOTHING1M_URL}",
        )
    kv = {kind: _read_kv(base / name) for kind, name in _CLOTHING1M_KV.items()}
    parts = {}
    for part, (name, kind) in _CLOTHING1M_LISTS.items():
        keys = _read_keys(base / name)
        unknown = [k for k in keys if k not in kv[kind]]
        if unknown:
            raise ValueError(
                f"{base / name}: {len(unknown)} keys have no label in {_CLOTHING1M_KV[kind]}, "
                f"e.g. {', '.join(unknown[:3])}"
            )
        parts[part] = ImageList(keys, np.array([kv[kind][k] for k in keys], dtype=np.int64))
    class_names = CLOTHING1M_CLASSES
    names_file = base / "category_names_eng.txt"
    if names_file.is_file():
        names = tuple(_read_keys(names_file))
        if len(names) == len(CLOTHING1M_CLASSES):
            class_names = names
    return Clothing1M(
        base, **parts, noisy_labels=kv["noisy"], clean_labels=kv["clean"], class_names=class_names
    )


def clothing1m_overlap_keys(c: Clothing1M, split: str = "train") -> list[str]:
    """The images that carry both a clean and a noisy label.

    ``split="train"``: only those in ``clean_train_key_list.txt``, so that no
    validation or test label enters the estimate; ``split="all"``: every image
    present in both label files.
    """
    if split == "train":
        candidates = c.clean_train.paths
    elif split == "all":
        candidates = list(c.clean_labels)
    else:
        raise ValueError(f"unknown split {split!r}; known: train, all")
    return [key for key in candidates if key in c.noisy_labels and key in c.clean_labels]


def clothing1m_overlap_transition(c: Clothing1M, split: str = "train") -> np.ndarray:
    """T counted on the doubly labelled images of ``split`` (see :func:`clothing1m_overlap_keys`).

    ``T[i, j]`` = fraction of those images with clean label ``i`` whose noisy
    label is ``j`` (float64 ``(14, 14)``, rows sum to one). Raises ValueError
    naming the classes that no such image has as clean label.
    """
    k = c.num_classes
    counts = np.zeros((k, k), dtype=np.float64)
    both = clothing1m_overlap_keys(c, split)
    if both:
        clean = np.array([c.clean_labels[key] for key in both])
        noisy = np.array([c.noisy_labels[key] for key in both])
        np.add.at(counts, (clean, noisy), 1.0)
    rows = counts.sum(axis=1)
    empty = np.flatnonzero(rows == 0)
    if len(empty):
        names = ", ".join(f"{i} ({c.class_names[i]})" for i in empty)
        raise ValueError(f"no doubly labelled image in split {split!r} for clean class(es) {names}: "
                         "T cannot be estimated")
    return counts / rows[:, None]


class ImageListDataset(torch.utils.data.Dataset):
    """Images listed by path (relative to ``root``) with labels, opened with PIL as RGB.

    ``dataset[i]`` is ``(transform(image), label)`` (the PIL image when
    ``transform`` is None). A missing image raises :class:`MissingDataError`;
    :meth:`check_files` checks every file up front.
    """

    def __init__(
        self,
        root: str | Path,
        paths: Sequence[str],
        labels: Sequence[int] | np.ndarray,
        transform: Callable | None = None,
    ) -> None:
        self.root = Path(root)
        self.paths = list(paths)
        self.labels = np.asarray(labels, dtype=np.int64)
        if len(self.paths) != len(self.labels):
            raise ValueError(f"{len(self.paths)} paths but {len(self.labels)} labels")
        self.transform = transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int):
        from PIL import Image

        path = self.root / self.paths[index]
        try:
            with Image.open(path) as img:
                image = img.convert("RGB")
        except FileNotFoundError:
            raise _missing("image", [path], "images listed relative to the data set root",
                           "check the data root and the key lists") from None
        if self.transform is not None:
            image = self.transform(image)
        return image, int(self.labels[index])

    def check_files(self) -> None:
        """Raise :class:`MissingDataError` naming the listed images that do not exist."""
        absent = [self.root / p for p in self.paths if not (self.root / p).is_file()]
        if absent:
            shown = [str(p) for p in absent[:5]]
            if len(absent) > 5:
                shown.append(f"and {len(absent) - 5} more")
            raise _missing(f"{len(absent)} image(s)", shown, "images listed relative to the data set root",
                           "check the data root and the key lists")
