"""Clothing1M, the real-world noisy data set of Section 5.3, as lists of image
files rather than tensors: :func:`load_clothing1m` reads the official key lists
and label files (about 1M noisy-labelled training images, and clean-labelled
training, validation and test parts), :class:`ImageListDataset` opens the
listed images with PIL for a ``DataLoader``, and
:func:`clothing1m_overlap_transition` counts T on the images that carry both a
clean and a noisy label, the estimate the paper's backward and forward
corrections use on this data set instead of Eq. 12-13 (Table 3).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from .files import _missing, resolve_data_root

__all__ = [
    "CLOTHING1M_CLASSES",
    "CLOTHING1M_URL",
    "Clothing1M",
    "ImageList",
    "ImageListDataset",
    "clothing1m_overlap_keys",
    "clothing1m_overlap_transition",
    "load_clothing1m",
]

CLOTHING1M_URL = "https://github.com/Cysu/noisy_label"
CLOTHING1M_CLASSES = (
    "T-Shirt", "Shirt", "Knitwear", "Chiffon", "Sweater", "Hoodie", "Windbreaker",
    "Jacket", "Down Coat", "Suit", "Shawl", "Dress", "Vest", "Underwear",
)

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
