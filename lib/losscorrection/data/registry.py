"""The data sets of the paper's experiments by name (Section 5): :data:`REGISTRY`
gives each name of :data:`DATASETS` a :class:`DatasetEntry` holding its loader
(the official training and test parts) together with its missing-files check,
so that :func:`load_dataset` (the data set with the paper's 10% validation
hold-out) and :func:`missing_files` (what loading would report missing, with
nothing read or downloaded) always agree about a data set.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from .cifar import (
    _cifar10_missing, _cifar10jpg_missing, _cifar100_missing, _load_cifar10, _load_cifar10jpg,
    _load_cifar100,
)
from .cifar10n import _cifar10n_missing, _load_cifar10n
from .files import resolve_data_root
from .imdb import _imdb_missing, _load_imdb
from .mnist import (
    _digits_missing, _load_digits, _load_mnist, _load_mnist10k, _mnist10k_missing, _mnist_missing,
)
from .splits import FullData, Split, _check_limit, _make_split

__all__ = ["DATASETS", "REGISTRY", "DatasetEntry", "load_dataset", "missing_files", "nominal_train_size"]


@dataclass(frozen=True)
class DatasetEntry:
    """One data set of the registry.

    ``load(root, download, **kwargs)``: the data set before the validation
    hold-out (raises :class:`~losscorrection.data.MissingDataError` when files
    are missing); ``missing(root)``: the paths ``load`` would report missing
    (empty when the data is present; nothing is read or downloaded);
    ``train_size``: training examples after the paper's 10% hold-out, known
    without reading the data (what a cost estimate needs).
    """

    load: Callable[..., FullData]
    missing: Callable[[Path], list[str]]
    train_size: int


REGISTRY: Mapping[str, DatasetEntry] = MappingProxyType({
    "mnist": DatasetEntry(_load_mnist, _mnist_missing, 54_000),
    "mnist10k": DatasetEntry(_load_mnist10k, _mnist10k_missing, 7_200),
    "digits": DatasetEntry(_load_digits, _digits_missing, 1_294),
    "imdb": DatasetEntry(_load_imdb, _imdb_missing, 22_500),
    "cifar10": DatasetEntry(_load_cifar10, _cifar10_missing, 45_000),
    "cifar10jpg": DatasetEntry(_load_cifar10jpg, _cifar10jpg_missing, 45_000),
    "cifar10n": DatasetEntry(_load_cifar10n, _cifar10n_missing, 45_000),
    "cifar100": DatasetEntry(_load_cifar100, _cifar100_missing, 45_000),
})
DATASETS = tuple(REGISTRY)


def nominal_train_size(name: str) -> int:
    """Training examples of a registered data set after the 10% hold-out, 0 for a
    name the registry does not hold (your own data)."""
    entry = REGISTRY.get(str(name).lower())
    return entry.train_size if entry is not None else 0


def _known(name: str) -> str:
    key = str(name).lower()
    if key not in REGISTRY:
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
    """Load a data set of :data:`DATASETS` with the paper's protocol: the official
    test set (for ``mnist10k`` and ``digits``: a fixed stratified 20%) and a
    validation split held out of the official training set.

    Parameters
    ----------
    name
        A key of :data:`DATASETS`. ``cifar10n`` is the JPEG copy with the
        CIFAR-10N human labels in ``Split.label_sets``.
    data_root
        Where the files are (default: ``$LOSSCORR_DATA``, else ``./data``).
    validation_fraction, split_seed
        The share of the training set held out for validation and the seed of
        its permutation (:func:`holdout_split`).
    limit
        Keep at most that many examples of each of train, val and test (the
        first ones after the split), for fast smoke runs; None keeps all.
    download
        Fetch what torchvision can download (MNIST, CIFAR) and the Keras IMDB file.
    **kwargs
        Go to the data set's loader: ``imdb`` takes ``vocabulary_size=5000``,
        ``maxlen=400`` and ``source="auto"|"npz"|"aclimdb"``; ``cifar10jpg`` and
        ``cifar10n`` take ``progress=True``.

    Raises
    ------
    MissingDataError
        Files are missing (it names them and where to get them).
    ValueError
        An unknown name, a validation fraction outside (0, 1) or a bad limit.
    """
    key = _known(name)
    if not 0.0 < validation_fraction < 1.0:
        raise ValueError(f"validation fraction must lie in (0, 1), got {validation_fraction}")
    _check_limit(limit)
    full = REGISTRY[key].load(resolve_data_root(data_root), download, **kwargs)
    return _make_split(key, full, validation_fraction, split_seed, limit)


def missing_files(name: str, data_root: str | Path | None = None) -> list[str]:
    """What :func:`load_dataset` would report missing for ``name`` (empty when the
    data is present; nothing is read or downloaded)."""
    key = _known(name)
    return REGISTRY[key].missing(resolve_data_root(data_root))
