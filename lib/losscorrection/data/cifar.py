"""The CIFAR data sets of the ResNet experiments (Section 5.1): 45,000 / 5,000 /
10,000 uint8 ``(n, 3, 32, 32)`` images after the 10% hold-out. ``cifar10`` and
``cifar100`` (fine labels) come from torchvision's python pickles;
``cifar10jpg`` is CIFAR-10 from its JPEG copy (quality about 75, slightly
lossy), decoded once by :func:`cifar10jpg_arrays` into a cache
(``cifar10jpg-v1-<source size and mtime>.npz``) next to the source, or under
``$LOSSCORR_CACHE`` when that folder is read-only; it has the same shapes and
splits as ``cifar10``.
"""

from __future__ import annotations

import io
import pickle
import re
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .files import (
    _missing, _read_cache, _tar_members, _user_cache_dir, _write_cache, reading, resolve_data_root, source_stamp,
)
from .splits import FullData, _fixed_order

__all__ = ["CIFAR100_URL", "CIFAR10_CLASSES", "CIFAR10_URL", "cifar10jpg_arrays"]

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR100_URL = "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"

CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)


# ---------------------------------------------------------------- python pickles


def _unpickle(path: Path) -> dict:
    url = CIFAR100_URL if "cifar-100" in path.parent.name else CIFAR10_URL
    with reading(path, f"delete its folder and extract {url} again (or pass download=True)"), open(path, "rb") as f:
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


def _load_cifar10(root: Path, download: bool) -> FullData:
    import torchvision

    base = _cifar_files(root, "cifar-10-batches-py", _CIFAR10_FILES, "CIFAR-10", CIFAR10_URL, download,
                        torchvision.datasets.CIFAR10)
    batches = [_unpickle(base / f"data_batch_{i}") for i in range(1, 6)]
    test = _unpickle(base / "test_batch")
    return FullData(
        np.concatenate([_cifar_images(b) for b in batches]),
        np.concatenate([np.asarray(_field(b, "labels"), dtype=np.int64) for b in batches]),
        _cifar_images(test), np.asarray(_field(test, "labels"), dtype=np.int64),
        _names(_field(_unpickle(base / "batches.meta"), "label_names")),
        "CIFAR-10 (python pickles): 50,000 training images with 10% held out for validation, "
        "10,000 test images; uint8 3x32x32",
    )


def _load_cifar100(root: Path, download: bool) -> FullData:
    import torchvision

    base = _cifar_files(root, "cifar-100-python", _CIFAR100_FILES, "CIFAR-100", CIFAR100_URL,
                        download, torchvision.datasets.CIFAR100)
    train, test = _unpickle(base / "train"), _unpickle(base / "test")
    return FullData(
        _cifar_images(train), np.asarray(_field(train, "fine_labels"), dtype=np.int64),
        _cifar_images(test), np.asarray(_field(test, "fine_labels"), dtype=np.int64),
        _names(_field(_unpickle(base / "meta"), "fine_label_names")),
        "CIFAR-100 (python pickles, 100 fine labels): 50,000 training images with 10% held out for "
        "validation, 10,000 test images; uint8 3x32x32",
    )


def _missing_pickles(root: Path, folder: str, files: Sequence[str]) -> list[str]:
    """The pickles of ``<root>/<folder>/`` that are missing."""
    return [str(root / folder / f) for f in files if not (root / folder / f).is_file()]


def _cifar10_missing(root: Path) -> list[str]:
    return _missing_pickles(root, "cifar-10-batches-py", _CIFAR10_FILES)


def _cifar100_missing(root: Path) -> list[str]:
    return _missing_pickles(root, "cifar-100-python", _CIFAR100_FILES)


# ------------------------------------------------------------- CIFAR-10 JPEG copy

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


def _cache_locations(source: Path) -> tuple[list[Path], str]:
    name = f"cifar10jpg-v{_CACHE_VERSION}-{source_stamp(source, _JPG_RE)}.npz"
    beside = source.parent if source.is_file() else source
    return [beside, _user_cache_dir()], name


_JPG_FIX = "replace it with an intact copy (the data README gives the tarball's md5)"


def _collect_jpegs(source: Path) -> dict[tuple[str, str, str], bytes]:
    """``{(part, class, file name): JPEG bytes}`` from the tarball or the folder."""
    found: dict[tuple[str, str, str], bytes] = {}
    if source.is_file():
        with reading(source, _JPG_FIX):
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
        with reading(f"{source} ({'/'.join(key)})", _JPG_FIX), Image.open(io.BytesIO(found[key])) as img:
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
            cached = _read_cache(folder / name, _CACHE_KEYS)
            if cached is not None:
                return cached
    arrays = _decode_cifar10_jpg(source, progress=progress)
    _write_cache(arrays, folders, name, "decoded CIFAR-10 JPEG cache")
    return arrays


def _load_cifar10jpg(root: Path, download: bool, progress: bool = True) -> FullData:
    a = cifar10jpg_arrays(root, progress=progress)
    order = _fixed_order(len(a["y_test"]))
    return FullData(
        a["x_train"], a["y_train"], a["x_test"][order], a["y_test"][order],
        tuple(str(c) for c in a["class_names"]),
        "CIFAR-10 (JPEG copy, quality ~75; slightly lossy): 50,000 training images with 10% held out "
        "for validation, 10,000 test images; uint8 3x32x32",
    )


def _cifar10jpg_missing(root: Path) -> list[str]:
    """The tarball's usual place when no layout of the JPEG copy is found."""
    if _cifar10jpg_source(root) is None:
        return [str(root / "cifar10-jpg" / "cifar10-jpg.tar.gz")]
    return []
