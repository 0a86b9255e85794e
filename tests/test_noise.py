"""Noise matrices and label corruption, checked against hand-written expectations.

Every expected matrix below is written out from the definitions in Patrini et
al. (2017), Sec. 5, or built from class *names*, never with the library's own
helpers, so a wrong index or a wrong formula makes a test fail.
"""

import numpy as np
import pytest
import torch

from losscorrection import noise
from losscorrection.noise import asymmetric, corrupt, symmetric, validate_transition

CIFAR10_NAMES = [
    "airplane", "automobile", "bird", "cat", "deer",
    "dog", "frog", "horse", "ship", "truck",
]  # fmt: skip

# The official CIFAR-100 fine label names, in their alphabetical index order.
CIFAR100_FINE = [
    "apple", "aquarium_fish", "baby", "bear", "beaver",
    "bed", "bee", "beetle", "bicycle", "bottle",
    "bowl", "boy", "bridge", "bus", "butterfly",
    "camel", "can", "castle", "caterpillar", "cattle",
    "chair", "chimpanzee", "clock", "cloud", "cockroach",
    "couch", "crab", "crocodile", "cup", "dinosaur",
    "dolphin", "elephant", "flatfish", "forest", "fox",
    "girl", "hamster", "house", "kangaroo", "keyboard",
    "lamp", "lawn_mower", "leopard", "lion", "lizard",
    "lobster", "man", "maple_tree", "motorcycle", "mountain",
    "mouse", "mushroom", "oak_tree", "orange", "orchid",
    "otter", "palm_tree", "pear", "pickup_truck", "pine_tree",
    "plain", "plate", "poppy", "porcupine", "possum",
    "rabbit", "raccoon", "ray", "road", "rocket",
    "rose", "sea", "seal", "shark", "shrew",
    "skunk", "skyscraper", "snail", "snake", "spider",
    "squirrel", "streetcar", "sunflower", "sweet_pepper", "table",
    "tank", "telephone", "television", "tiger", "tractor",
    "train", "trout", "tulip", "turtle", "wardrobe",
    "whale", "willow_tree", "wolf", "woman", "worm",
]  # fmt: skip

# The official CIFAR-100 superclasses, in their (alphabetical) coarse index order.
CIFAR100_SUPERCLASSES = [
    ("aquatic_mammals", ["beaver", "dolphin", "otter", "seal", "whale"]),
    ("fish", ["aquarium_fish", "flatfish", "ray", "shark", "trout"]),
    ("flowers", ["orchid", "poppy", "rose", "sunflower", "tulip"]),
    ("food_containers", ["bottle", "bowl", "can", "cup", "plate"]),
    ("fruit_and_vegetables", ["apple", "mushroom", "orange", "pear", "sweet_pepper"]),
    ("household_electrical_devices", ["clock", "keyboard", "lamp", "telephone", "television"]),
    ("household_furniture", ["bed", "chair", "couch", "table", "wardrobe"]),
    ("insects", ["bee", "beetle", "butterfly", "caterpillar", "cockroach"]),
    ("large_carnivores", ["bear", "leopard", "lion", "tiger", "wolf"]),
    ("large_man-made_outdoor_things", ["bridge", "castle", "house", "road", "skyscraper"]),
    ("large_natural_outdoor_scenes", ["cloud", "forest", "mountain", "plain", "sea"]),
    ("large_omnivores_and_herbivores", ["camel", "cattle", "chimpanzee", "elephant", "kangaroo"]),
    ("medium_mammals", ["fox", "porcupine", "possum", "raccoon", "skunk"]),
    ("non-insect_invertebrates", ["crab", "lobster", "snail", "spider", "worm"]),
    ("people", ["baby", "boy", "girl", "man", "woman"]),
    ("reptiles", ["crocodile", "dinosaur", "lizard", "snake", "turtle"]),
    ("small_mammals", ["hamster", "mouse", "rabbit", "shrew", "squirrel"]),
    ("trees", ["maple_tree", "oak_tree", "palm_tree", "pine_tree", "willow_tree"]),
    ("vehicles_1", ["bicycle", "bus", "motorcycle", "pickup_truck", "train"]),
    ("vehicles_2", ["lawn_mower", "rocket", "streetcar", "tank", "tractor"]),
]


def fine(name: str) -> int:
    return CIFAR100_FINE.index(name)


def coarse(name: str) -> int:
    return [n for n, _ in CIFAR100_SUPERCLASSES].index(name)


# ---------------------------------------------------------------------- symmetric


def test_symmetric_explicit_matrix():
    expected = np.array(
        [
            [0.7, 0.1, 0.1, 0.1],
            [0.1, 0.7, 0.1, 0.1],
            [0.1, 0.1, 0.7, 0.1],
            [0.1, 0.1, 0.1, 0.7],
        ]
    )
    T = symmetric(4, 0.3)
    assert T.dtype == np.float64
    np.testing.assert_allclose(T, expected, rtol=0, atol=1e-15)
    np.testing.assert_allclose(T.sum(axis=1), np.ones(4), rtol=0, atol=1e-15)


def test_symmetric_extremes():
    np.testing.assert_array_equal(symmetric(3, 0.0), np.eye(3))
    np.testing.assert_allclose(symmetric(3, 1.0), (np.ones((3, 3)) - np.eye(3)) / 2)


# --------------------------------------------------------------------- asymmetric


def test_asymmetric_mnist_written_out():
    # 2 -> 7, 3 -> 8, 5 <-> 6, 7 -> 1 with prob. 0.2; all other classes kept.
    expected = np.array(
        [
            # 0    1    2    3    4    5    6    7    8    9
            [1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],  # 0
            [0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],  # 1
            [0.0, 0.0, 0.8, 0.0, 0.0, 0.0, 0.0, 0.2, 0.0, 0.0],  # 2 -> 7
            [0.0, 0.0, 0.0, 0.8, 0.0, 0.0, 0.0, 0.0, 0.2, 0.0],  # 3 -> 8
            [0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0],  # 4
            [0.0, 0.0, 0.0, 0.0, 0.0, 0.8, 0.2, 0.0, 0.0, 0.0],  # 5 -> 6
            [0.0, 0.0, 0.0, 0.0, 0.0, 0.2, 0.8, 0.0, 0.0, 0.0],  # 6 -> 5
            [0.0, 0.2, 0.0, 0.0, 0.0, 0.0, 0.0, 0.8, 0.0, 0.0],  # 7 -> 1
            [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0],  # 8
            [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0],  # 9
        ]
    )
    T = asymmetric("mnist", 0.2)
    assert T.dtype == np.float64 and T.shape == (10, 10)
    np.testing.assert_allclose(T, expected, rtol=0, atol=1e-15)


@pytest.mark.parametrize("rate", [0.1, 0.4, 0.7])
def test_asymmetric_cifar10_from_class_names(rate):
    flips = [
        ("truck", "automobile"),
        ("bird", "airplane"),
        ("deer", "horse"),
        ("cat", "dog"),
        ("dog", "cat"),
    ]
    expected = np.zeros((10, 10))
    for k in range(10):
        expected[k, k] = 1.0
    for true_name, noisy_name in flips:
        i, j = CIFAR10_NAMES.index(true_name), CIFAR10_NAMES.index(noisy_name)
        expected[i, i] = 1.0 - rate
        expected[i, j] = rate
    T = asymmetric("cifar10", rate)
    np.testing.assert_allclose(T, expected, rtol=0, atol=1e-15)
    # Spot checks by index: truck(9) -> automobile(1), bird(2) -> airplane(0).
    assert T[9, 1] == pytest.approx(rate) and T[2, 0] == pytest.approx(rate)
    assert T[4, 7] == pytest.approx(rate) and T[7, 4] == 0.0  # deer -> horse only


def test_asymmetric_imdb():
    np.testing.assert_allclose(
        asymmetric("imdb", 0.3), [[0.95, 0.05], [0.3, 0.7]], rtol=0, atol=1e-15
    )


@pytest.mark.parametrize("dataset", ["mnist", "cifar10", "cifar100"])
def test_asymmetric_rate_zero_is_identity(dataset):
    T = asymmetric(dataset, 0.0)
    np.testing.assert_array_equal(T, np.eye(T.shape[0]))


@pytest.mark.parametrize("dataset", ["mnist", "cifar10", "cifar100", "imdb"])
@pytest.mark.parametrize("rate", [0.0, 0.25, 0.5, 1.0])
def test_asymmetric_rows_sum_to_one(dataset, rate):
    T = asymmetric(dataset, rate)
    assert np.all(T >= 0)
    np.testing.assert_allclose(T.sum(axis=1), 1.0, rtol=0, atol=1e-12)


# ----------------------------------------------------------------------- cifar100


def test_cifar100_name_tables_are_consistent():
    # Guards the expectations themselves: 100 distinct, alphabetical fine labels,
    # 20 superclasses that partition them into groups of exactly 5.
    assert len(CIFAR100_FINE) == 100 == len(set(CIFAR100_FINE))
    assert CIFAR100_FINE == sorted(CIFAR100_FINE)
    members = [m for _, group in CIFAR100_SUPERCLASSES for m in group]
    assert len(CIFAR100_SUPERCLASSES) == 20
    assert all(len(group) == 5 for _, group in CIFAR100_SUPERCLASSES)
    assert sorted(members) == CIFAR100_FINE


def test_cifar100_fine_to_coarse_matches_official_superclasses():
    f2c = np.asarray(noise.CIFAR100_FINE_TO_COARSE)
    assert f2c.shape == (100,)
    assert np.issubdtype(f2c.dtype, np.integer)
    np.testing.assert_array_equal(np.bincount(f2c, minlength=20), np.full(20, 5))
    expected = np.empty(100, dtype=np.int64)
    for k, (_, group) in enumerate(CIFAR100_SUPERCLASSES):
        for name in group:
            expected[fine(name)] = k
    np.testing.assert_array_equal(f2c, expected)


@pytest.mark.parametrize(
    "superclass, names",
    [
        ("aquatic_mammals", ["beaver", "dolphin", "otter", "seal", "whale"]),
        ("flowers", ["orchid", "poppy", "rose", "sunflower", "tulip"]),
        ("vehicles_1", ["bicycle", "bus", "motorcycle", "pickup_truck", "train"]),
        ("people", ["baby", "boy", "girl", "man", "woman"]),
    ],
)
def test_cifar100_known_superclasses_by_index(superclass, names):
    f2c = np.asarray(noise.CIFAR100_FINE_TO_COARSE)
    idx = sorted(fine(n) for n in names)
    np.testing.assert_array_equal(np.flatnonzero(f2c == coarse(superclass)), idx)


def test_cifar100_aquatic_mammals_literal_indices():
    # beaver 4, dolphin 30, otter 55, seal 72, whale 95 in the official list.
    assert [fine(n) for n in ["beaver", "dolphin", "otter", "seal", "whale"]] == [4, 30, 55, 72, 95]
    f2c = np.asarray(noise.CIFAR100_FINE_TO_COARSE)
    assert {int(f2c[i]) for i in (4, 30, 55, 72, 95)} == {0}


def expected_cifar100_superclass_T(rate):
    T = np.zeros((100, 100))
    for _, group in CIFAR100_SUPERCLASSES:
        idx = sorted(fine(n) for n in group)  # "next" by fine index, circularly
        for m in range(5):
            i, j = idx[m], idx[(m + 1) % 5]
            T[i, i] = 1.0 - rate
            T[i, j] = rate
    return T


def expected_cifar100_index_T(rate):
    T = np.zeros((100, 100))
    for start in range(0, 100, 5):
        for m in range(5):
            i, j = start + m, start + (m + 1) % 5
            T[i, i] = 1.0 - rate
            T[i, j] = rate
    return T


@pytest.mark.parametrize("rate", [0.2, 0.6])
def test_cifar100_superclass_flips(rate):
    T = asymmetric("cifar100", rate)
    assert T.shape == (100, 100) and T.dtype == np.float64
    np.testing.assert_allclose(T, expected_cifar100_superclass_T(rate), rtol=0, atol=1e-15)
    cycle = ["beaver", "dolphin", "otter", "seal", "whale", "beaver"]
    for a, b in zip(cycle, cycle[1:]):
        assert T[fine(a), fine(b)] == pytest.approx(rate)
        assert T[fine(a), fine(a)] == pytest.approx(1 - rate)
        assert np.count_nonzero(T[fine(a)]) == 2
    assert T[fine("tulip"), fine("orchid")] == pytest.approx(rate)  # circular
    assert T[fine("pickup_truck"), fine("train")] == pytest.approx(rate)


def test_cifar100_index_blocks():
    rate = 0.4
    T = asymmetric("cifar100", rate, blocks="index")
    np.testing.assert_allclose(T, expected_cifar100_index_T(rate), rtol=0, atol=1e-15)
    for i, j in [(0, 1), (1, 2), (2, 3), (3, 4), (4, 0), (95, 96), (99, 95)]:
        assert T[i, j] == pytest.approx(rate)
    assert T[4, 5] == 0.0  # never leaves the block
    superclass_T = asymmetric("cifar100", rate, blocks="superclass")
    assert not np.allclose(T, superclass_T)
    assert np.array_equal(asymmetric("cifar100", rate), superclass_T)  # the default


def test_cifar100_bad_blocks():
    with pytest.raises(ValueError, match="blocks"):
        asymmetric("cifar100", 0.2, blocks="random")


# ------------------------------------------------------------------ bad arguments


def test_unknown_dataset_lists_known_names():
    with pytest.raises(ValueError) as err:
        asymmetric("svhn", 0.2)
    message = str(err.value)
    assert "svhn" in message
    for name in ("mnist", "cifar10", "cifar100", "imdb"):
        assert name in message


@pytest.mark.parametrize("rate", [-0.01, 1.01, float("nan"), float("inf")])
def test_rate_outside_unit_interval(rate):
    with pytest.raises(ValueError, match="rate"):
        symmetric(4, rate)
    for dataset in ("mnist", "cifar10", "cifar100", "imdb"):
        with pytest.raises(ValueError, match="rate"):
            asymmetric(dataset, rate)


@pytest.mark.parametrize("c", [1, 0, 2.5])
def test_symmetric_bad_num_classes(c):
    with pytest.raises(ValueError):
        symmetric(c, 0.2)


# ------------------------------------------------------------ validate_transition


def test_validate_transition_returns_float64():
    T = validate_transition([[0.75, 0.25], [0.5, 0.5]])
    assert isinstance(T, np.ndarray) and T.dtype == np.float64
    np.testing.assert_array_equal(T, [[0.75, 0.25], [0.5, 0.5]])
    T32 = validate_transition(np.array([[0.75, 0.25], [0.5, 0.5]], dtype=np.float32))
    assert T32.dtype == np.float64


@pytest.mark.parametrize(
    "T, match",
    [
        (np.full((2, 3), 1 / 3), "square"),
        (np.array([0.5, 0.5]), "square"),
        (np.array([[np.nan, 1.0], [0.0, 1.0]]), "NaN"),
        (np.array([[np.inf, 0.0], [0.0, 1.0]]), "infinite"),
        (np.array([[1.2, -0.2], [0.0, 1.0]]), "negative"),
        (np.array([[0.5, 0.51], [0.0, 1.0]]), "row 0 sums to 1.01"),
        (np.array([[1.0, 0.0], [0.4, 0.5]]), "row 1 sums to 0.9"),
    ],
)
def test_validate_transition_names_the_problem(T, match):
    with pytest.raises(ValueError, match=match):
        validate_transition(T)


def test_validate_transition_tolerates_rounding():
    T = np.array([[0.5, 0.5 + 1e-8], [0.3, 0.7 - 1e-8]])
    np.testing.assert_array_equal(validate_transition(T), T)


def test_validate_transition_accepts_torch():
    T = torch.tensor([[0.9, 0.1], [0.2, 0.8]], dtype=torch.float32, requires_grad=True)
    out = validate_transition(T)
    assert isinstance(out, np.ndarray) and out.dtype == np.float64
    np.testing.assert_allclose(out, [[0.9, 0.1], [0.2, 0.8]], rtol=1e-6)


# ------------------------------------------------------------------------ corrupt


def flip_counts(y, noisy, c):
    counts = np.zeros((c, c), dtype=np.int64)
    np.add.at(counts, (y, noisy), 1)
    return counts


def assert_frequencies_match(y, noisy, T):
    c = T.shape[0]
    counts = flip_counts(y, noisy, c)
    n_i = counts.sum(axis=1, keepdims=True)
    np.testing.assert_array_equal(n_i[:, 0], np.bincount(y, minlength=c))
    freq = counts / n_i
    se = np.sqrt(T * (1 - T) / n_i)
    assert np.all(np.abs(freq - T) <= 4 * se), np.max(np.abs(freq - T) / np.maximum(se, 1e-300))
    assert np.all(counts[T == 0] == 0)  # impossible flips never happen


def test_corrupt_frequencies_mnist():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 10, size=100_000)
    T = asymmetric("mnist", 0.3)
    noisy = corrupt(y, T, seed=1)
    assert noisy.shape == y.shape and noisy.dtype == np.int64
    assert_frequencies_match(y, noisy, T)
    # Classes without a flip are untouched.
    keep = np.isin(y, [0, 1, 4, 8, 9])
    np.testing.assert_array_equal(noisy[keep], y[keep])


def test_corrupt_frequencies_dense_dirichlet():
    rng = np.random.default_rng(3)
    c = 6
    T = rng.dirichlet(np.ones(c), size=c)
    y = rng.integers(0, c, size=100_000)
    noisy = corrupt(y, T, seed=4)
    assert_frequencies_match(y, noisy, T)


def test_corrupt_permutation_is_exact():
    perm = np.array([3, 0, 4, 1, 2])
    T = np.eye(5)[perm]  # T[i, perm[i]] = 1
    y = np.random.default_rng(0).integers(0, 5, size=1000)
    np.testing.assert_array_equal(corrupt(y, T, seed=0), perm[y])


def test_corrupt_seeding():
    y = np.random.default_rng(0).integers(0, 10, size=100_000)
    T = asymmetric("mnist", 0.3)
    a = corrupt(y, T, seed=7)
    np.testing.assert_array_equal(a, corrupt(y, T, seed=7))
    assert not np.array_equal(a, corrupt(y, T, seed=8))
    # A Generator is accepted too.
    np.testing.assert_array_equal(
        corrupt(y, T, np.random.default_rng(5)), corrupt(y, T, np.random.default_rng(5))
    )


def test_corrupt_does_not_modify_labels():
    y = np.random.default_rng(0).integers(0, 4, size=1000)
    before = y.copy()
    corrupt(y, symmetric(4, 0.5), seed=0)
    np.testing.assert_array_equal(y, before)


@pytest.mark.parametrize("bad", [-1, 4])
def test_corrupt_labels_out_of_range(bad):
    with pytest.raises(ValueError, match="out of range"):
        corrupt(np.array([0, 1, bad, 2]), symmetric(4, 0.2), seed=0)


def test_corrupt_non_integer_labels():
    with pytest.raises(ValueError, match="integer"):
        corrupt(np.array([0.0, 1.5, 2.0]), symmetric(4, 0.2), seed=0)


def test_corrupt_validates_T():
    with pytest.raises(ValueError, match="row-stochastic"):
        corrupt(np.array([0, 1]), np.array([[0.5, 0.6], [0.0, 1.0]]), seed=0)


def test_corrupt_zero_final_column_never_drawn():
    T = np.array(
        [
            [0.5, 0.3, 0.2, 0.0],
            [0.1, 0.1, 0.8, 0.0],
            [0.0, 0.0, 1.0, 0.0],
            [0.25, 0.25, 0.5, 0.0],
        ]
    )
    y = np.random.default_rng(0).integers(0, 4, size=200_000)
    noisy = corrupt(y, T, seed=11)
    assert noisy.max() <= 2
    assert np.all(noisy[y == 2] == 2)


def test_corrupt_a_million_labels():
    # Vectorised: a per-label Python loop would take far longer than this test.
    y = np.random.default_rng(0).integers(0, 10, size=1_000_000)
    T = symmetric(10, 0.4)
    noisy = corrupt(y, T, seed=0)
    assert noisy.shape == (1_000_000,)
    assert noisy.min() >= 0 and noisy.max() <= 9
    assert abs(np.mean(noisy != y) - 0.4) < 0.005  # sd ~ 0.0005


def test_corrupt_rows_summing_just_below_one_stay_in_range():
    # Rows may miss 1 by up to 1e-6; a draw u in [row sum, 1) must still map
    # to a valid class (here about 3 such draws are expected).
    T = np.array([[0.5, 0.5 - 9.9e-7], [0.5, 0.5]])
    validate_transition(T)  # accepted: within the 1e-6 row-sum tolerance
    y = np.zeros(3_000_000, dtype=np.int64)
    noisy = corrupt(y, T, seed=0)
    assert noisy.min() >= 0 and noisy.max() <= 1
    assert abs(np.mean(noisy == 1) - 0.5) < 0.002


def test_measured_transition_counts_each_clean_class():
    clean = np.array([0, 0, 0, 0, 1, 1, 2])
    noisy = np.array([0, 1, 1, 2, 1, 0, 2])
    T = noise.measured_transition(clean, noisy, 4)
    expected = np.array([[0.25, 0.5, 0.25, 0], [0.5, 0.5, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]])
    np.testing.assert_allclose(T, expected)  # class 3 has no example: identity row
    validate_transition(T)
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 20000)
    T_true = symmetric(3, 0.3)
    np.testing.assert_allclose(noise.measured_transition(y, corrupt(y, T_true, rng), 3), T_true, atol=0.02)
    with pytest.raises(ValueError, match="differ in length"):
        noise.measured_transition(clean, noisy[:-1], 4)
    with pytest.raises(ValueError, match="noisy labels out of range"):
        noise.measured_transition(clean, noisy + 2, 4)


def test_image_dependence_detects_input_dependent_noise_and_not_class_conditional_noise():
    rng = np.random.default_rng(0)
    n, c = 3000, 3
    clean = rng.integers(0, c, n)
    probs = rng.dirichlet(np.ones(c), n)  # a model's out-of-fold beliefs
    # class-conditional noise: which example is flipped ignores probs
    flips = corrupt(clean, symmetric(c, 0.3), rng)
    calm = noise.image_dependence(probs, clean, flips, permutations=200)
    assert calm.p_value > 0.01 and abs(calm.z) < 3
    assert calm.mislabelled == int((flips != clean).sum())
    # input-dependent noise: an annotator picks the wrong class the model finds most plausible
    plausible = probs.copy()
    plausible[np.arange(n), clean] = -1
    human = np.where(rng.random(n) < 0.3, plausible.argmax(1), clean)
    dependent = noise.image_dependence(probs, clean, human, permutations=200)
    assert dependent.p_value == pytest.approx(1 / 201) and dependent.z > 10
    # the statistic by hand
    wrong = human != clean
    assert dependent.statistic == pytest.approx(probs[wrong, human[wrong]].mean())
    with pytest.raises(ValueError, match="differ in length"):
        noise.image_dependence(probs[:-1], clean, human)
    nothing = noise.image_dependence(probs, clean, clean)
    assert nothing.mislabelled == 0 and np.isnan(nothing.p_value)


@pytest.mark.parametrize("diagonal", [0.0, 1.0, 3.0])
def test_random_transition_is_dirichlet_rows_plus_a_weighted_diagonal(diagonal):
    c = 6
    T = noise.random_transition(c, np.random.default_rng(7), diagonal=diagonal)
    rows = np.random.default_rng(7).dirichlet(np.ones(c), size=c)  # the same draws, independently
    np.testing.assert_allclose(T * (1 + diagonal), rows + diagonal * np.eye(c), rtol=1e-12)
    noise.validate_transition(T)  # row-stochastic
    assert (T > 0).all()
    if diagonal >= 1:
        assert (T.argmax(axis=1) == np.arange(c)).all()


def test_random_transition_refuses_too_few_classes_or_a_negative_diagonal():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="at least 2 classes"):
        noise.random_transition(1, rng)
    with pytest.raises(ValueError, match="non-negative"):
        noise.random_transition(3, rng, diagonal=-0.5)
