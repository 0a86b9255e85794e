"""Class-conditional label noise: the paper's transition matrices and label corruption.

Convention (Patrini et al., 2017, Sec. 4): a noise matrix ``T`` is a ``(c, c)``
float64 NumPy array with rows indexed by the true class and columns by the
observed (noisy) class,

    T[i, j] = p(noisy label = j | true label = i),

so every row sums to one. (cleanlab's ``noise_matrix`` is the transpose.)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

__all__ = [
    "ASYMMETRIC_DATASETS",
    "CIFAR100_FINE_TO_COARSE",
    "HUMAN_NOISES",
    "NOISES",
    "asymmetric",
    "ImageDependence",
    "corrupt",
    "image_dependence",
    "measured_transition",
    "random_transition",
    "symmetric",
    "validate_transition",
]

ROW_SUM_TOLERANCE = 1e-6
# Real human label sets (CIFAR-10N): labels read from the data, not drawn from a T
HUMAN_NOISES = ("aggre", "random1", "random2", "random3", "worst")
NOISES = ("none", "symmetric", "asymmetric", *HUMAN_NOISES)  # the paper's kinds of noise, then the human ones

# Coarse (superclass) index of each CIFAR-100 fine label, fine labels in their
# official alphabetical order (apple = 0, ..., worm = 99). Superclass 0 is
# "aquatic mammals" = {beaver 4, dolphin 30, otter 55, seal 72, whale 95}.
CIFAR100_FINE_TO_COARSE: np.ndarray = np.array(
    [
        4, 1, 14, 8, 0, 6, 7, 7, 18, 3,
        3, 14, 9, 18, 7, 11, 3, 9, 7, 11,
        6, 11, 5, 10, 7, 6, 13, 15, 3, 15,
        0, 11, 1, 10, 12, 14, 16, 9, 11, 5,
        5, 19, 8, 8, 15, 13, 14, 17, 18, 10,
        16, 4, 17, 4, 2, 0, 17, 4, 18, 17,
        10, 3, 2, 12, 12, 16, 12, 1, 9, 19,
        2, 10, 0, 1, 16, 12, 9, 13, 15, 13,
        16, 19, 2, 4, 6, 19, 5, 5, 8, 19,
        18, 1, 2, 15, 6, 0, 17, 8, 14, 13,
    ],
    dtype=np.int64,
)
CIFAR100_FINE_TO_COARSE.setflags(write=False)

# (true class, noisy class) pairs flipped with probability `rate` (Sec. 5.1).
_FLIPS: dict[str, list[tuple[int, int]]] = {
    # 2 -> 7, 3 -> 8, 5 <-> 6, 7 -> 1
    "mnist": [(2, 7), (3, 8), (5, 6), (6, 5), (7, 1)],
    # truck -> automobile, bird -> airplane, deer -> horse, cat <-> dog
    "cifar10": [(9, 1), (2, 0), (4, 7), (3, 5), (5, 3)],
}
IMDB_NEGATIVE_TO_POSITIVE = 0.05
ASYMMETRIC_DATASETS = ("mnist", "cifar10", "cifar100", "imdb")


def _check_rate(rate: float) -> float:
    rate = float(rate)
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"noise rate must lie in [0, 1], got {rate}")
    return rate


def symmetric(num_classes: int, rate: float) -> np.ndarray:
    """Symmetric noise: keep a label with prob. ``1 - rate``, else flip uniformly.

    Returns a ``(num_classes, num_classes)`` float64 matrix with ``1 - rate`` on
    the diagonal and ``rate / (num_classes - 1)`` elsewhere (Sec. 5.2).
    """
    if int(num_classes) != num_classes or num_classes < 2:
        raise ValueError(f"num_classes must be an integer >= 2, got {num_classes}")
    rate = _check_rate(rate)
    num_classes = int(num_classes)
    T = np.full((num_classes, num_classes), rate / (num_classes - 1))
    np.fill_diagonal(T, 1.0 - rate)
    return T


def _pair_flips(num_classes: int, pairs: list[tuple[int, int]], rate: float) -> np.ndarray:
    T = np.eye(num_classes)
    for true, noisy in pairs:
        T[true, true] = 1.0 - rate
        T[true, noisy] = rate
    return T


def _cifar100_pairs(blocks: str) -> list[tuple[int, int]]:
    if blocks == "superclass":
        groups = [np.flatnonzero(CIFAR100_FINE_TO_COARSE == k) for k in range(20)]
    elif blocks == "index":
        groups = [np.arange(5 * k, 5 * k + 5) for k in range(20)]
    else:
        raise ValueError(f"blocks must be 'superclass' or 'index', got {blocks!r}")
    return [(int(g[m]), int(g[(m + 1) % len(g)])) for g in groups for m in range(len(g))]


def asymmetric(dataset: str, rate: float, *, blocks: str = "superclass") -> np.ndarray:
    """The paper's asymmetric (class-dependent) noise matrix for ``dataset``.

    - ``"mnist"`` (10 classes): 2→7, 3→8, 5↔6, 7→1, each with prob. ``rate``.
    - ``"cifar10"`` (10 classes): truck→automobile, bird→airplane, deer→horse,
      cat↔dog.
    - ``"cifar100"`` (100 classes): inside each of the 20 superclasses every
      class flips to the next member (by fine index), circularly.
      ``blocks="index"`` instead uses blocks of 5 consecutive class indices,
      as the authors' released code did.
    - ``"imdb"`` (2 classes): 0→1 with the fixed prob. 0.05, 1→0 with ``rate``.

    Returns a row-stochastic ``(c, c)`` float64 matrix, ``T[i, j] = p(ỹ=j | y=i)``.
    """
    rate = _check_rate(rate)
    key = str(dataset).lower()
    if key in _FLIPS:
        return _pair_flips(10, _FLIPS[key], rate)
    if key == "cifar100":
        return _pair_flips(100, _cifar100_pairs(blocks), rate)
    if key == "imdb":
        return np.array(
            [[1.0 - IMDB_NEGATIVE_TO_POSITIVE, IMDB_NEGATIVE_TO_POSITIVE], [rate, 1.0 - rate]]
        )
    raise ValueError(
        f"unknown dataset {dataset!r} for asymmetric noise; known: {', '.join(ASYMMETRIC_DATASETS)}"
    )


def random_transition(num_classes: int, rng: np.random.Generator, diagonal: float = 3.0) -> np.ndarray:
    """A random noise matrix for simulations and checks: each row a draw from the
    flat Dirichlet distribution plus ``diagonal`` on its diagonal entry, divided
    by ``1 + diagonal`` so that it sums to one (float64 ``(c, c)``). Every entry
    is positive; a larger ``diagonal`` gives less noise and a better
    conditioned T (for ``diagonal >= 1`` each row's largest entry is its
    diagonal one)."""
    if num_classes < 2:
        raise ValueError(f"a noise matrix needs at least 2 classes, got {num_classes}")
    if not diagonal >= 0:
        raise ValueError(f"diagonal must be non-negative, got {diagonal}")
    T = rng.dirichlet(np.ones(num_classes), size=num_classes) + diagonal * np.eye(num_classes)
    return T / T.sum(axis=1, keepdims=True)


def validate_transition(T: ArrayLike) -> np.ndarray:
    """Return ``T`` as a float64 ``(c, c)`` array, or raise ValueError naming the problem.

    Checks: two-dimensional and square, finite, no negative entry, and every row
    summing to one within 1e-6.
    """
    if hasattr(T, "detach"):  # torch tensor
        T = T.detach().cpu().numpy()
    T = np.array(T, dtype=np.float64)
    if T.ndim != 2 or T.shape[0] != T.shape[1]:
        raise ValueError(f"transition matrix T must be square (c, c), got shape {T.shape}")
    if T.shape[0] < 2:
        raise ValueError(f"transition matrix T needs at least 2 classes, got shape {T.shape}")
    if not np.all(np.isfinite(T)):
        raise ValueError("transition matrix T contains NaN or infinite entries")
    if np.any(T < 0):
        i, j = np.argwhere(T < 0)[0]
        raise ValueError(f"transition matrix T has a negative entry T[{i}, {j}] = {T[i, j]:g}")
    sums = T.sum(axis=1)
    bad = np.flatnonzero(np.abs(sums - 1.0) > ROW_SUM_TOLERANCE)
    if bad.size:
        raise ValueError(
            f"transition matrix T is not row-stochastic: row {bad[0]} sums to "
            f"{sums[bad[0]]:.8g} (rows must sum to 1; T[i, j] = p(noisy j | true i))"
        )
    return T


def check_labels(labels: ArrayLike, num_classes: int, name: str = "labels") -> np.ndarray:
    """Return ``labels`` as a 1-D int64 array after checking they lie in ``[0, num_classes)``."""
    if hasattr(labels, "detach"):
        labels = labels.detach().cpu().numpy()
    arr = np.asarray(labels)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        if not np.all(np.equal(np.mod(arr, 1), 0)):
            raise ValueError(f"{name} must be integer class indices, got dtype {arr.dtype}")
    arr = arr.astype(np.int64)
    if arr.size and (arr.min() < 0 or arr.max() >= num_classes):
        bad = arr[(arr < 0) | (arr >= num_classes)][0]
        raise ValueError(f"{name} out of range: found {bad}, expected 0 <= label < {num_classes}")
    return arr


def corrupt(labels: ArrayLike, T: ArrayLike, seed: int | np.random.Generator) -> np.ndarray:
    """Draw noisy labels ``ỹ ~ T[y]`` independently for every clean label ``y``.

    ``labels``: ``(n,)`` integers in ``[0, c)``; ``T``: ``(c, c)`` row-stochastic.
    Returns ``(n,)`` int64 noisy labels. Vectorised (one inverse-CDF lookup per
    class); the same seed gives the same labels.
    """
    T = validate_transition(T)
    y = check_labels(labels, T.shape[0])
    rng = np.random.default_rng(seed)
    u = rng.random(y.shape[0])
    cdf = np.cumsum(T, axis=1)
    cdf /= cdf[:, -1:]  # last entry exactly 1, so u < 1 never falls past the last class
    noisy = np.empty_like(y)
    for cls in np.unique(y):
        mask = y == cls
        noisy[mask] = np.searchsorted(cdf[cls], u[mask], side="right")
    return noisy


def measured_transition(clean: ArrayLike, noisy: ArrayLike, num_classes: int) -> np.ndarray:
    """The T that a pair of label vectors shows: ``T[i, j]`` is the share of the
    examples of clean class ``i`` labelled ``j`` (float64 ``(c, c)``). A class
    with no examples gets the identity row. For real (e.g. human) noise this is
    the class-conditional summary of noise that may also depend on the input."""
    y = check_labels(clean, num_classes, "clean labels")
    y_noisy = check_labels(noisy, num_classes, "noisy labels")
    if y.shape != y_noisy.shape:
        raise ValueError(f"clean and noisy labels differ in length: {y.shape[0]} and {y_noisy.shape[0]}")
    counts = np.zeros((num_classes, num_classes))
    np.add.at(counts, (y, y_noisy), 1.0)
    empty = counts.sum(axis=1) == 0
    counts[empty, empty.nonzero()[0]] = 1.0
    return counts / counts.sum(axis=1, keepdims=True)


@dataclass(frozen=True)
class ImageDependence:
    """The result of :func:`image_dependence`."""

    statistic: float  # mean probability the model gives the noisy label of a mislabelled example
    null_mean: float  # the same with the noisy labels shuffled within each clean class
    null_std: float
    p_value: float  # one-sided: (1 + #{null >= statistic}) / (1 + permutations); NaN without mislabelled examples
    mislabelled: int  # examples whose noisy label differs from the clean one
    permutations: int

    @property
    def z(self) -> float:
        """``(statistic - null_mean) / null_std``."""
        return (self.statistic - self.null_mean) / self.null_std if self.null_std > 0 else float("inf")


def image_dependence(probs: ArrayLike, clean: ArrayLike, noisy: ArrayLike, permutations: int = 1000,
                     seed: int = 0) -> ImageDependence:
    """Does label noise depend on the input beyond its class? A permutation test.

    ``probs`` ``(n, c)``: class probabilities of each example from a model that
    never saw it (out of fold), trained on clean labels; ``clean``, ``noisy``
    ``(n,)``. The statistic is the mean of ``probs[i, noisy[i]]`` over the
    mislabelled examples: how plausible the wrong labels look to the model.
    Under class-conditional noise (the paper's Section 2 model) which example
    of a class receives which noisy label is independent of the input, so
    shuffling the noisy labels among the examples of each clean class gives
    the statistic's null distribution (the number of mislabelled examples and
    the measured T are unchanged). Human mistakes on confusing images push the
    statistic above the null; so does a correct pairing of labels and images
    (it is also how we check the mapping of CIFAR-10N's labels onto our images).
    """
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2:
        raise ValueError(f"probs must be (n, c), got shape {probs.shape}")
    y = check_labels(clean, probs.shape[1], "clean labels")
    y_noisy = check_labels(noisy, probs.shape[1], "noisy labels")
    if not len(y) == len(y_noisy) == len(probs):
        raise ValueError(f"probs, clean and noisy labels differ in length: {len(probs)}, {len(y)}, {len(y_noisy)}")
    if permutations < 1:
        raise ValueError(f"permutations must be at least 1, got {permutations}")

    def statistic(labels: np.ndarray) -> float:
        wrong = labels != y
        return float(probs[wrong, labels[wrong]].mean()) if wrong.any() else float("nan")

    observed = statistic(y_noisy)
    if np.isnan(observed):  # no mislabelled example: nothing to test
        return ImageDependence(observed, observed, observed, observed, 0, permutations)
    rng = np.random.default_rng(seed)
    members = [np.flatnonzero(y == c) for c in range(probs.shape[1])]
    null = np.empty(permutations)
    shuffled = y_noisy.copy()
    for b in range(permutations):
        for idx in members:
            shuffled[idx] = y_noisy[idx[rng.permutation(len(idx))]]
        null[b] = statistic(shuffled)
    return ImageDependence(observed, float(null.mean()), float(null.std()),
                           float((1 + (null >= observed).sum()) / (1 + permutations)),
                           int((y_noisy != y).sum()), permutations)
