"""The digit data sets of the fully connected experiments (Section 5.1): IDX
readers (gzipped or not), ``mnist`` with the paper's protocol (54,000 / 6,000 /
10,000, from torchvision's ``<root>/MNIST/raw/`` or the Keras ``mnist.npz``),
``mnist10k`` (the official 10k MNIST *test* set re-split with a fixed
stratified permutation into 8,000 training and 2,000 test images, then the 10%
hold-out: 7,200 / 800 / 2,000; not the paper's 60k/10k protocol, it needs the
MNIST test files only) and scikit-learn's bundled 8x8 ``digits`` (1,797
images; a fixed stratified 20% test split, then the hold-out). Inputs are
float32 pixels in [0, 1], ``(n, 784)`` or ``(n, 64)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .files import CorruptDataError, _missing, _read_bytes, reading
from .splits import TEST_FRACTION, TEST_SPLIT_SEED, FullData, stratified_holdout

__all__ = ["MNIST_NPZ_URL", "MNIST_URL", "read_idx_images", "read_idx_labels"]

MNIST_URL = "http://yann.lecun.com/exdb/mnist/"
MNIST_NPZ_URL = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/mnist.npz"

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
_MNIST10K_KEYS = ("test_images", "test_labels")


_MNIST_FIX = f"delete it and get it again (download=True, or from {MNIST_URL})"


def _read_idx(path: str | Path, magic: int, ndim: int) -> np.ndarray:
    path = Path(path)
    with reading(path, _MNIST_FIX):
        raw = _read_bytes(path)
    header = 4 + 4 * ndim
    if len(raw) < 4:
        raise CorruptDataError(path, f"not an IDX file (only {len(raw)} bytes)", _MNIST_FIX)
    found = int.from_bytes(raw[:4], "big")
    if found != magic:
        raise CorruptDataError(path, f"bad IDX magic number {found} (expected {magic})", _MNIST_FIX)
    if len(raw) < header:
        raise CorruptDataError(path, "truncated IDX header", _MNIST_FIX)
    dims = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = header + int(np.prod(dims, dtype=np.int64))
    if len(raw) != expected:
        raise CorruptDataError(
            path, f"IDX size mismatch: {len(raw)} bytes, expected {expected} for shape {dims}", _MNIST_FIX
        )
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
        with reading(npz, f"delete it and get it again from {MNIST_NPZ_URL}"), np.load(npz) as f:
            return {k: np.asarray(f[names[k]]) for k in keys}
    missing = [raw_dir / f"{_MNIST_FILES[k]}.gz" for k, p in found.items() if p is None]
    raise _missing("MNIST", missing, _MNIST_LAYOUTS, _MNIST_GET, alternative=str(npz))


def _flat_pixels(images: np.ndarray) -> np.ndarray:
    return (images.reshape(len(images), -1).astype(np.float32) / 255.0)


def _load_mnist(root: Path, download: bool) -> FullData:
    a = _mnist_arrays(root, list(_MNIST_FILES), download)
    return FullData(
        _flat_pixels(a["train_images"]), a["train_labels"], _flat_pixels(a["test_images"]), a["test_labels"],
        tuple(str(d) for d in range(10)),
        "MNIST (the paper's protocol: 60,000 training images with 10% held out for validation, "
        "official 10,000 test images); 784 pixels in [0, 1]",
    )


def _load_mnist10k(root: Path, download: bool) -> FullData:
    a = _mnist_arrays(root, _MNIST10K_KEYS, download)
    x, y = _flat_pixels(a["test_images"]), a["test_labels"]
    train_idx, test_idx = stratified_holdout(y, TEST_FRACTION, TEST_SPLIT_SEED)
    return FullData(
        x[train_idx], y[train_idx], x[test_idx], y[test_idx], tuple(str(d) for d in range(10)),
        "MNIST-10k: the official 10k MNIST test set re-split with a fixed stratified permutation "
        "into 8,000 training and 2,000 test images (20% of each class), then 10% of the training "
        "part held out for validation (7,200 / 800 / 2,000); NOT the paper's 60k/10k protocol",
    )


def _load_digits(root: Path, download: bool) -> FullData:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = (np.asarray(bunch.data, dtype=np.float32) / 16.0).astype(np.float32)
    y = np.asarray(bunch.target, dtype=np.int64)
    train_idx, test_idx = stratified_holdout(y, TEST_FRACTION, TEST_SPLIT_SEED)
    return FullData(
        x[train_idx], y[train_idx], x[test_idx], y[test_idx], tuple(str(d) for d in range(10)),
        "scikit-learn's 8x8 digits (1,797 images, 64 pixels in [0, 1]): a fixed stratified 20% test "
        "split, then 10% of the rest held out for validation; not MNIST",
    )


def _missing_idx_files(root: Path, keys: Sequence[str]) -> list[str]:
    """The MNIST files named by ``keys`` that are missing (none when ``mnist.npz`` is there)."""
    raw_dir = root / "MNIST" / "raw"
    if (root / "mnist.npz").is_file() or all(_idx_file(raw_dir, _MNIST_FILES[k]) for k in keys):
        return []
    return [str(raw_dir / f"{_MNIST_FILES[k]}.gz") for k in keys
            if not _idx_file(raw_dir, _MNIST_FILES[k])]


def _mnist_missing(root: Path) -> list[str]:
    return _missing_idx_files(root, list(_MNIST_FILES))


def _mnist10k_missing(root: Path) -> list[str]:
    return _missing_idx_files(root, list(_MNIST10K_KEYS))


def _digits_missing(root: Path) -> list[str]:
    """Nothing: scikit-learn bundles the digits."""
    return []
