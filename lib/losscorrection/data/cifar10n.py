"""CIFAR-10N (Wei et al., ICLR 2022): five real human labels for every CIFAR-10
training image (``aggre``, the majority vote, about 9 % wrong; ``random1`` to
``random3``, one annotator each, about 17-18 %; ``worst``, a wrong label
whenever one annotator gave one, about 40 %), joined to the training images
of the CIFAR-10 JPEG copy through the mapping file that ships with them. This
is class- *and* image-dependent noise, beyond the paper's class-conditional
model (Section 2): the true T of a label set is measured by counting, on the
training images, how often each clean class received each human label.
"""

from __future__ import annotations

import csv
import pickle
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..noise import measured_transition
from .cifar import _cifar10jpg_missing, _load_cifar10jpg
from .files import CorruptDataError, _missing, reading, resolve_data_root
from .splits import FullData

__all__ = ["CIFAR10N_URL", "LABEL_SETS", "HumanLabels", "load_cifar10n_labels"]

CIFAR10N_URL = "https://github.com/UCSC-REAL/cifar-10-100n"
LABEL_SETS = {"aggre": "aggre_label", "random1": "random_label1", "random2": "random_label2",
              "random3": "random_label3", "worst": "worse_label"}
_LABELS_FILE = "CIFAR-10_human.pt"
_MAPPING_FILE = "cifar10_train_index_to_jpgcopy.csv"
_FIX = f"replace it with an intact copy of the CIFAR-10N release ({CIFAR10N_URL})"


@dataclass(frozen=True, eq=False)
class HumanLabels:
    """Clean and human labels of the 50,000 CIFAR-10 training images, int64
    ``(50000,)`` each, in the training order of the decoded JPEG copy
    (:func:`~losscorrection.data.cifar10jpg_arrays`: classes alphabetically,
    files in name order)."""

    clean: np.ndarray
    sets: dict[str, np.ndarray]

    def noise_rate(self, label_set: str) -> float:
        """The share of images whose ``label_set`` label differs from the clean one."""
        return float((self[label_set] != self.clean).mean())

    def transition(self, label_set: str, num_classes: int = 10) -> np.ndarray:
        """T measured on the training images: ``T[i, j]`` is the share of the images
        of clean class ``i`` labelled ``j`` in ``label_set`` (float64, rows sum to one)."""
        return measured_transition(self.clean, self[label_set], num_classes)

    def __getitem__(self, label_set: str) -> np.ndarray:
        if label_set not in self.sets:
            raise ValueError(f"unknown CIFAR-10N label set {label_set!r}; known: {', '.join(self.sets)}")
        return self.sets[label_set]


def _numpy_array_globals() -> list:
    """What unpickling the release's NumPy int64 arrays needs, and nothing more:
    ``ndarray``, ``dtype``, the int64 dtype class and ``_reconstruct`` under its
    NumPy 1 (``numpy.core``, the release's) and NumPy 2 (``numpy._core``) names."""
    try:
        from numpy._core.multiarray import _reconstruct  # NumPy 2
    except ImportError:
        from numpy.core.multiarray import _reconstruct  # NumPy 1
    return [np.ndarray, np.dtype, type(np.dtype(np.int64)),
            *((_reconstruct, f"{module}.multiarray._reconstruct") for module in ("numpy.core", "numpy._core"))]


def _load_label_arrays(path: Path) -> object:
    """``torch.load`` of the labels file with ``weights_only``: tensors, plain
    containers and the NumPy int64 arrays of :func:`_numpy_array_globals`; a
    pickle asking for anything else (code to run) is refused with
    :class:`CorruptDataError`, without running it."""
    import torch

    with reading(path, _FIX):
        try:
            with torch.serialization.safe_globals(_numpy_array_globals()):
                return torch.load(path, map_location="cpu", weights_only=True)
        except RuntimeError as err:  # torch's archive reader reports a damaged file this way
            detail = str(err).split(". ")[0]
            raise CorruptDataError(path, f"cannot be read, it is truncated or damaged ({detail})", _FIX) from None
        except pickle.UnpicklingError as err:  # torch's message spans many lines: keep what was refused
            refused = re.search(r"(?:GLOBAL |but got <class ')([\w.]+)", str(err))
            first_line = (str(err) or "unpickling failed").splitlines()[0]
            problem = (f"holds more than label arrays: it asks for {refused.group(1)}, which is refused" if refused
                       else f"cannot be read, it is truncated or damaged ({first_line})")
            raise CorruptDataError(path, problem, _FIX) from None


def _jpeg_order(paths: list[str]) -> np.ndarray:
    """Position of each ``.../train/<class>/<file>.jpg`` in the decoded copy's
    training order (classes alphabetically, then file names)."""
    keys = [tuple(Path(p).parts[-2:]) for p in paths]
    rank = {key: i for i, key in enumerate(sorted(keys))}
    return np.array([rank[key] for key in keys], dtype=np.int64)


def _cifar10n_missing(root: Path) -> list[str]:
    base = root / "cifar10n"
    return _cifar10jpg_missing(root) + [str(base / n) for n in (_LABELS_FILE, _MAPPING_FILE)
                                        if not (base / n).is_file()]


def _load_cifar10n(root: Path, download: bool, progress: bool = True) -> FullData:
    """The CIFAR-10 JPEG copy with the five CIFAR-10N label sets of its training images."""
    absent = _cifar10n_missing(root)
    if absent:
        raise _missing("CIFAR-10N on the CIFAR-10 JPEG copy", absent,
                       f"<root>/cifar10-jpg/cifar10-jpg.tar.gz and <root>/cifar10n/{{{_LABELS_FILE},{_MAPPING_FILE}}}",
                       f"get the labels from {CIFAR10N_URL} (licence CC BY-NC 4.0) with the mapping onto the JPEG copy")
    images = _load_cifar10jpg(root, download, progress)
    human = load_cifar10n_labels(root)
    if not np.array_equal(human.clean, images.y_train):
        raise CorruptDataError(root / "cifar10n" / _MAPPING_FILE,
                               "maps the human labels onto images of other classes", _FIX)
    rates = ", ".join(f"{name} {human.noise_rate(name):.1%}" for name in human.sets)
    return images._replace(
        label_sets=dict(human.sets),
        description=f"{images.description}; CIFAR-10N human labels of the training images (wrong: {rates})",
    )


def load_cifar10n_labels(data_root: str | Path | None = None) -> HumanLabels:
    """The CIFAR-10N labels from ``<root>/cifar10n/`` (``CIFAR-10_human.pt`` and
    ``cifar10_train_index_to_jpgcopy.csv``), in the JPEG copy's training order.

    Raises :class:`MissingDataError` when a file is absent and
    :class:`CorruptDataError` when one cannot be read or the two disagree."""
    base = resolve_data_root(data_root) / "cifar10n"
    absent = [base / name for name in (_LABELS_FILE, _MAPPING_FILE) if not (base / name).is_file()]
    if absent:
        raise _missing("CIFAR-10N", absent, f"<root>/cifar10n/{{{_LABELS_FILE},{_MAPPING_FILE}}}",
                       f"get the labels from {CIFAR10N_URL} (licence CC BY-NC 4.0) and the mapping onto the JPEG "
                       "copy with them")
    labels_path, mapping_path = base / _LABELS_FILE, base / _MAPPING_FILE
    raw = _load_label_arrays(labels_path)  # a dict of NumPy arrays
    wanted = ["clean_label", *LABEL_SETS.values()]
    if not isinstance(raw, dict) or any(k not in raw for k in wanted):
        raise CorruptDataError(labels_path, f"not the CIFAR-10N label file (needs {', '.join(wanted)})", _FIX)
    arrays = {k: np.asarray(raw[k], dtype=np.int64) for k in wanted}
    with reading(mapping_path, _FIX), open(mapping_path, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    n = len(arrays["clean_label"])
    if len(rows) != n or any(len(a) != n for a in arrays.values()):
        raise CorruptDataError(mapping_path, f"{len(rows)} mapped images for {n} labels", _FIX)
    try:
        original = np.array([int(r["orig_index"]) for r in rows])
        mapped_clean = np.array([int(r["clean_label"]) for r in rows])
        paths = [r["jpg_path"] for r in rows]
    except (KeyError, TypeError, ValueError) as err:
        raise CorruptDataError(mapping_path, f"unreadable row ({err})", _FIX) from None
    if not np.array_equal(mapped_clean, arrays["clean_label"][original]):
        raise CorruptDataError(mapping_path, "its clean labels disagree with the CIFAR-10N clean labels", _FIX)
    position = _jpeg_order(paths)
    ordered = {}
    for key, values in arrays.items():
        out = np.empty(n, dtype=np.int64)
        out[position] = values[original]
        ordered[key] = out
    return HumanLabels(ordered.pop("clean_label"), {name: ordered[key] for name, key in LABEL_SETS.items()})
