"""The anchor-point estimator of T (Eq. 12-13) on oracle noisy posteriors."""

import numpy as np
import pytest
import torch

from losscorrection import noise
from losscorrection.estimation import anchor_indices, estimate_transition, estimation_error


def oracle_noisy_posteriors(
    T: np.ndarray, n: int, perfect_fraction: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Clean posteriors p(y|x) with a fraction of perfect examples per class, and
    the exact noisy posteriors p(ỹ|x) = T^T p(y|x) (Thm. 3, assumption 2)."""
    c = T.shape[0]
    y = rng.integers(0, c, size=n)
    clean = rng.dirichlet(np.full(c, 0.3), size=n)
    # make the labelled class dominant, then make some examples perfect
    clean[np.arange(n), y] += 2.0
    clean /= clean.sum(axis=1, keepdims=True)
    perfect = rng.random(n) < perfect_fraction
    clean[perfect] = np.eye(c)[y[perfect]]
    return clean @ T, y


def column_dominant(c: int, rng: np.random.Generator) -> np.ndarray:
    T = rng.dirichlet(np.ones(c), size=c) * 0.5
    T[np.arange(c), np.arange(c)] += 1.0
    T /= T.sum(axis=1, keepdims=True)
    assert np.all(np.diag(T)[None, :] >= T)  # column-diagonally dominant
    return T


@pytest.mark.parametrize("seed", range(3))
def test_argmax_recovers_T_exactly_from_perfect_examples(seed):
    rng = np.random.default_rng(seed)
    T = column_dominant(6, rng)
    probs, _ = oracle_noisy_posteriors(T, 3000, perfect_fraction=0.01, rng=rng)
    np.testing.assert_allclose(estimate_transition(probs, quantile=None), T, atol=1e-12)
    assert estimation_error(estimate_transition(probs, quantile=None), T) < 1e-12


def test_quantile_097_recovers_T_within_005_for_the_paper_matrix():
    rng = np.random.default_rng(0)
    T = noise.asymmetric("mnist", 0.3)
    probs, _ = oracle_noisy_posteriors(T, 20000, perfect_fraction=0.5, rng=rng)
    T_hat = estimate_transition(probs, quantile=0.97)
    assert np.abs(T_hat - T).max() < 0.05
    assert estimation_error(T_hat, T) < 0.05


def test_quantile_is_robust_to_overconfident_outliers_where_argmax_is_not():
    """A handful of wrong, overconfident examples hijack the argmax (Eq. 12) but
    not the 97th percentile."""
    rng = np.random.default_rng(1)
    T = noise.symmetric(4, 0.2)
    probs, _ = oracle_noisy_posteriors(T, 4000, perfect_fraction=0.5, rng=rng)
    probs[:3] = np.eye(4)[[0, 1, 2]]  # p̂(ỹ=i|x) = 1: impossible under T (max is 0.8)
    assert estimation_error(estimate_transition(probs, quantile=None), T) > 0.1
    assert estimation_error(estimate_transition(probs, quantile=0.97), T) < 0.05


def test_anchor_is_the_order_statistic_at_the_quantile():
    rng = np.random.default_rng(2)
    probs = rng.dirichlet(np.ones(3), size=101)
    for q in (0.0, 0.5, 0.97, 1.0):
        idx = anchor_indices(probs, q)
        for i in range(3):
            expected = np.sort(probs[:, i])[int(np.floor(q * 100))]
            assert probs[idx[i], i] == expected
    np.testing.assert_array_equal(anchor_indices(probs, 1.0), anchor_indices(probs, None))


def test_rows_are_the_posteriors_of_the_anchors_and_normalised():
    rng = np.random.default_rng(3)
    probs = rng.dirichlet(np.ones(5), size=200).astype(np.float32)  # float32 rounding
    idx = anchor_indices(probs, 0.9)
    raw = estimate_transition(probs, quantile=0.9, row_normalize=False)
    np.testing.assert_array_equal(raw, probs[idx].astype(np.float64))
    normalised = estimate_transition(probs, quantile=0.9)
    np.testing.assert_allclose(normalised.sum(axis=1), 1.0, atol=1e-15)
    np.testing.assert_allclose(normalised, raw / raw.sum(axis=1, keepdims=True))


def test_estimator_does_not_modify_its_input():
    rng = np.random.default_rng(4)
    probs = rng.dirichlet(np.ones(4), size=500)
    before = probs.copy()
    estimate_transition(probs)
    estimate_transition(probs, quantile=None)
    np.testing.assert_array_equal(probs, before)


def test_accepts_torch_tensors():
    probs = torch.softmax(torch.randn(50, 3), dim=1)
    T_hat = estimate_transition(probs)
    assert T_hat.shape == (3, 3) and T_hat.dtype == np.float64


def test_estimation_error_is_relative_l1():
    T = noise.symmetric(3, 0.3)
    T_hat = T.copy()
    T_hat[0] = [0.5, 0.25, 0.25]  # |0.7-0.5| + |0.15-0.25| * 2 = 0.4
    assert estimation_error(T_hat, T) == pytest.approx(0.4 / 3.0)
    with pytest.raises(ValueError, match="shape"):
        estimation_error(np.eye(2), T)


@pytest.mark.parametrize(
    "bad, match",
    [
        (np.full((4, 3), np.nan), "NaN"),
        (np.full((4, 3), 0.5), "sum to 1"),
        (np.array([[1.5, -0.5], [0.5, 0.5]]), r"\[0, 1\]"),
        (np.ones(3) / 3, "shape"),
        (np.ones((4, 1)), "shape"),
    ],
)
def test_bad_probabilities_are_rejected(bad, match):
    with pytest.raises(ValueError, match=match):
        estimate_transition(bad)


def test_bad_quantile_is_rejected():
    probs = np.full((5, 2), 0.5)
    with pytest.raises(ValueError, match="quantile"):
        estimate_transition(probs, quantile=1.5)
