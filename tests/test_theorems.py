"""Numerical checks of the paper's Theorems 1, 2 and 4 on the library's losses."""

import numpy as np
import pytest
import torch
from scipy.optimize import minimize
from torch import nn
from torch.func import functional_call, hessian

from losscorrection import losses, noise


@pytest.mark.parametrize("seed", range(5))
def test_theorem1_backward_correction_is_unbiased(seed):
    """Σ_ỹ T[y, ỹ] ℓ←(ỹ) = ℓ(y) for every clean label y (exact expectation)."""
    rng = np.random.default_rng(seed)
    c, n = 6, 7
    T = noise.random_transition(c, rng, diagonal=rng.uniform(0.5, 3.0))
    logits = torch.tensor(rng.normal(scale=3.0, size=(n, c)))
    # ℓ←(ỹ) for every example and every possible noisy label: (n, c)
    corrected = torch.stack(
        [
            losses.backward_corrected(logits, torch.full((n,), k), T, reduction="none")
            for k in range(c)
        ],
        dim=1,
    ).numpy()
    for y in range(c):
        expected_over_noise = corrected @ T[y]  # Σ_ỹ p(ỹ | y) ℓ←(ỹ)
        clean = losses.cross_entropy(logits, torch.full((n,), y), reduction="none").numpy()
        np.testing.assert_allclose(expected_over_noise, clean, atol=1e-6, rtol=0)


def test_theorem1_fails_for_the_wrong_matrix():
    """The same identity with T⁻¹ replaced by T⁻ᵀ does not hold: the test above is sharp."""
    rng = np.random.default_rng(0)
    c = 4
    T = noise.random_transition(c, rng, diagonal=1.0)
    logits = torch.tensor(rng.normal(size=(3, c)))
    wrong = torch.stack(
        [losses.backward_corrected(logits, torch.full((3,), k), T.T / T.T.sum(1, keepdims=True),
                                   reduction="none") for k in range(c)], dim=1
    ).numpy()
    clean = losses.cross_entropy(logits, torch.zeros(3, dtype=torch.long), reduction="none").numpy()
    assert np.abs(wrong @ T[0] - clean).max() > 1e-3


@pytest.mark.parametrize("seed", range(3))
def test_theorem2_forward_correction_minimiser_is_clean_posterior(seed):
    """argmin over the simplex of E_{ỹ ~ T^T p} ℓ→(ỹ, p̂) is p̂ = p."""
    rng = np.random.default_rng(seed)
    c = 4
    T = noise.random_transition(c, rng, diagonal=2.0)
    p = rng.dirichlet(np.ones(c))
    noisy = T.T @ p  # p(ỹ | x) = T^T p(y | x)
    labels = torch.arange(c)

    def risk_and_grad(h: np.ndarray):
        logits = torch.tensor(h, requires_grad=True)
        per_label = losses.forward_corrected(logits.expand(c, c), labels, T, reduction="none")
        risk = (torch.tensor(noisy) * per_label).sum()
        risk.backward()
        return risk.item(), logits.grad.numpy().copy()

    for start in range(4):
        h0 = rng.normal(scale=2.0, size=c)
        result = minimize(risk_and_grad, h0, jac=True, method="BFGS", options={"gtol": 1e-10})
        p_hat = np.exp(result.x - result.x.max())
        p_hat /= p_hat.sum()
        np.testing.assert_allclose(p_hat, p, atol=1e-4, err_msg=f"start {start}")
        # and it is not the noisy posterior (which plain cross-entropy would recover)
        assert np.abs(p_hat - noisy).max() > 1e-3


def _hessian_blocks(net: nn.Module, loss_fn, x: torch.Tensor, y: torch.Tensor) -> dict:
    params = {k: v.detach() for k, v in net.named_parameters()}
    return hessian(lambda p: loss_fn(functional_call(net, p, (x,)), y))(params)


def _mlp(activation: nn.Module, sizes: list[int], seed: int) -> nn.Module:
    torch.manual_seed(seed)
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(activation)
    return nn.Sequential(*layers).double()


def _layer(name: str) -> str:
    return name.split(".")[0]


THEOREM4_TS = [
    np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6]]),
    np.array([[0.6, 0.4, 0.0], [0.0, 0.6, 0.4], [0.4, 0.0, 0.6]]),
    np.array([[0.9, 0.05, 0.05], [0.3, 0.7, 0.0], [0.0, 0.45, 0.55]]),
]


@pytest.mark.parametrize("T", THEOREM4_TS)
def test_theorem4_relu_hessian_blocks_do_not_depend_on_T(T):
    """ReLU network: each layer's Hessian block of ℓ← equals that of ℓ, for any T.

    The difference ℓ← - ℓ is a zero-sum combination of logits, which is
    piecewise linear in the parameters of any single layer when the activations
    are ReLUs, so every within-layer block of the two Hessians coincides.
    """
    net = _mlp(nn.ReLU(), [5, 7, 6, 3], seed=1)
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(16, 5, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 3, (16,), generator=gen)
    H_ce = _hessian_blocks(net, losses.cross_entropy, x, y)
    H_bw = _hessian_blocks(net, lambda h, t: losses.backward_corrected(h, t, T), x, y)
    checked = 0
    for a in H_ce:
        for b in H_ce[a]:
            if _layer(a) == _layer(b):
                torch.testing.assert_close(H_bw[a][b], H_ce[a][b], atol=1e-10, rtol=0)
                checked += 1
    assert checked == 12  # 3 layers x (weight, bias)^2
    # the blocks are not trivially zero: curvature comes from the log-partition
    assert H_ce["0.weight"]["0.weight"].abs().max() > 1e-3


@pytest.mark.parametrize("T", THEOREM4_TS)
def test_theorem4_relu_cross_layer_blocks_do_depend_on_T(T):
    """Scope of Theorem 4: a logit is bilinear in the weights of two layers, so
    the blocks that mix layers differ between ℓ← and ℓ (the paper's proof treats
    the network as linear in all parameters jointly)."""
    net = _mlp(nn.ReLU(), [5, 7, 3], seed=1)
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(16, 5, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 3, (16,), generator=gen)
    H_ce = _hessian_blocks(net, losses.cross_entropy, x, y)
    H_bw = _hessian_blocks(net, lambda h, t: losses.backward_corrected(h, t, T), x, y)
    assert (H_bw["0.weight"]["2.weight"] - H_ce["0.weight"]["2.weight"]).abs().max() > 1e-3


@pytest.mark.parametrize("T", THEOREM4_TS)
def test_theorem4_does_not_hold_for_sigmoid_networks(T):
    net = _mlp(nn.Sigmoid(), [5, 7, 3], seed=1)
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(16, 5, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 3, (16,), generator=gen)
    H_ce = _hessian_blocks(net, losses.cross_entropy, x, y)
    H_bw = _hessian_blocks(net, lambda h, t: losses.backward_corrected(h, t, T), x, y)
    assert (H_bw["0.weight"]["0.weight"] - H_ce["0.weight"]["0.weight"]).abs().max() > 1e-4


def test_theorem4_forward_correction_changes_the_relu_hessian():
    """Table 1: forward correction gives no such guarantee."""
    net = _mlp(nn.ReLU(), [5, 7, 3], seed=1)
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(16, 5, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 3, (16,), generator=gen)
    T = THEOREM4_TS[0]
    H_ce = _hessian_blocks(net, losses.cross_entropy, x, y)
    H_fw = _hessian_blocks(net, lambda h, t: losses.forward_corrected(h, t, T), x, y)
    assert (H_fw["2.weight"]["2.weight"] - H_ce["2.weight"]["2.weight"]).abs().max() > 1e-4
