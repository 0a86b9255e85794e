"""Losses checked against NumPy references written from the papers' definitions.

The references below use explicit loops and the naive formulas (plain softmax,
explicit matrix inverse) on moderate logits, independently of the library's
log-space implementations. Everything is float64.
"""

import math

import numpy as np
import pytest
import torch
from torch import nn

from losscorrection import losses
from losscorrection.losses import (
    LOSS_NAMES,
    backward_corrected,
    bootstrap_hard,
    bootstrap_soft,
    cross_entropy,
    forward_corrected,
    make_loss,
    savage,
    sigmoid,
    unhinged,
)
from losscorrection.noise import asymmetric, symmetric

# ------------------------------------------------------------------ references


def np_softmax(h):
    """Naive softmax of one row of logits (fine for moderate logits)."""
    e = np.array([math.exp(v) for v in h])
    return e / e.sum()


def ref_cross_entropy(h, y):
    return -math.log(np_softmax(h)[y])


def ref_losses_all_classes(h):
    """ℓ-vector: the cross-entropy for every possible label."""
    p = np_softmax(h)
    return np.array([-math.log(p[k]) for k in range(len(h))])


def ref_forward(h, y, T):
    # -log (T^T p)_ỹ = -log Σ_i p_i T[i, ỹ]
    p = np_softmax(h)
    return -math.log(sum(p[i] * T[i, y] for i in range(len(h))))


def ref_backward(h, y, T, identity_mix=0.0):
    c = len(h)
    T_mix = (1.0 - identity_mix) * np.asarray(T) + identity_mix * np.eye(c)
    return (np.linalg.inv(T_mix) @ ref_losses_all_classes(h))[y]


def ref_one_vs_rest(phi, h, y):
    c = len(h)
    total = 0.0
    for k in range(c):
        s = 1.0 if k == y else -1.0
        total += phi(s * h[k])
    return total / c


def phi_unhinged(v):
    return 1.0 - v


def phi_sigmoid(v):
    return 1.0 / (1.0 + math.exp(v))


def phi_savage(v):
    return 1.0 / (1.0 + math.exp(2.0 * v)) ** 2


# The authors' Keras losses (loss.py of giorgiop/loss-correction), transcribed
# with NumPy for one example: y_true is one-hot, y_pred the network's output
# (batch-normalised for unhinged and sigmoid, softmax for Savage).
KERAS_EPSILON = 1e-7


def released_unhinged(y_true, y_pred):
    return np.mean(1.0 - y_true * y_pred, axis=-1)


def released_sigmoid(y_true, y_pred):
    beta = 1.0
    return np.mean(1.0 / (1.0 + np.exp(beta * y_true * y_pred)), axis=-1)


def released_savage(y_true, y_pred):
    y_pred = y_pred / np.sum(y_pred, axis=-1, keepdims=True)
    y_pred = np.clip(y_pred, KERAS_EPSILON, 1.0 - KERAS_EPSILON)
    return np.mean(1.0 / np.square(1.0 + np.exp(2 * y_true * y_pred)), axis=-1)


def released_batch(loss, h, y, on_softmax=False):
    """The released loss of every row of ``h``: one-hot targets, softmax outputs
    where the released model ends in a softmax."""
    y_true = np.eye(h.shape[1])[y]
    y_pred = np.stack([np_softmax(row) for row in h]) if on_softmax else h
    return loss(y_true, y_pred)


def ref_bootstrap_soft(h, y, beta=0.95):
    q = np_softmax(h)
    return -sum(
        (beta * (1.0 if k == y else 0.0) + (1.0 - beta) * q[k]) * math.log(q[k])
        for k in range(len(h))
    )


def ref_bootstrap_hard(h, y, beta=0.8):
    q = np_softmax(h)
    top = int(np.argmax(q))
    return -sum(
        (beta * (1.0 if k == y else 0.0) + (1.0 - beta) * (1.0 if k == top else 0.0))
        * math.log(q[k])
        for k in range(len(h))
    )


def per_example(ref, h, y, *args, **kwargs):
    return np.array([ref(h[m], int(y[m]), *args, **kwargs) for m in range(len(y))])


# --------------------------------------------------------------------- fixtures


def batch(seed, n=16, c=10, scale=3.0):
    rng = np.random.default_rng(seed)
    h = rng.normal(scale=scale, size=(n, c))
    y = rng.integers(0, c, size=n)
    return h, y


def as_torch(h, y):
    return torch.tensor(h, dtype=torch.float64), torch.tensor(y, dtype=torch.int64)


def dirichlet_T(seed, c=10, diagonal=0.0, zeros=False):
    rng = np.random.default_rng(seed)
    T = rng.dirichlet(np.ones(c), size=c) + diagonal * np.eye(c)
    if zeros:  # knock out about a third of the off-diagonal entries
        mask = (rng.random((c, c)) < 0.35) & ~np.eye(c, dtype=bool)
        T[mask] = 0.0
    return T / T.sum(axis=1, keepdims=True)


FORWARD_MATRICES = {
    "mnist": asymmetric("mnist", 0.3),
    "mnist_half": asymmetric("mnist", 0.5),  # singular, fine for forward
    "symmetric": symmetric(10, 0.6),
    "dirichlet": dirichlet_T(0),
    "dirichlet_zeros": dirichlet_T(1, zeros=True),
}
BACKWARD_MATRICES = {
    "mnist": asymmetric("mnist", 0.3),
    "symmetric": symmetric(10, 0.4),
    "dirichlet": dirichlet_T(2, diagonal=2.0),
    "dirichlet_zeros": dirichlet_T(3, diagonal=2.0, zeros=True),
}

RTOL = 1e-10
ATOL = 1e-12

# ----------------------------------------------------------------- cross-entropy


@pytest.mark.parametrize("seed", range(3))
def test_cross_entropy_matches_numpy(seed):
    h, y = batch(seed)
    out = cross_entropy(*as_torch(h, y), reduction="none")
    assert out.dtype == torch.float64
    np.testing.assert_allclose(out.numpy(), per_example(ref_cross_entropy, h, y), RTOL, ATOL)


def test_cross_entropy_large_logits_exact():
    h = torch.tensor([[1000.0, 0.0], [0.0, -1000.0]], dtype=torch.float64)
    out = cross_entropy(h, torch.tensor([1, 0]), reduction="none")
    np.testing.assert_allclose(out.numpy(), [1000.0, 0.0], rtol=1e-15, atol=1e-300)


# ---------------------------------------------------------------------- forward


@pytest.mark.parametrize("name", list(FORWARD_MATRICES))
def test_forward_matches_naive_formula(name):
    T = FORWARD_MATRICES[name]
    h, y = batch(10)
    expected = per_example(ref_forward, h, y, T)
    logits, target = as_torch(h, y)
    out = forward_corrected(logits, target, T, reduction="none")
    np.testing.assert_allclose(out.numpy(), expected, RTOL, ATOL)
    module = make_loss("forward", T=T, reduction="none")
    np.testing.assert_allclose(module(logits, target).numpy(), expected, RTOL, ATOL)
    # T as a tensor gives the same.
    out_t = forward_corrected(logits, target, torch.tensor(T), reduction="none")
    np.testing.assert_allclose(out_t.numpy(), expected, RTOL, ATOL)


def test_forward_differs_from_cross_entropy_and_from_transpose():
    # Guards the orientation: (T^T p)_ỹ, not (T p)_ỹ.
    T = dirichlet_T(4)
    h, y = batch(11)
    logits, target = as_torch(h, y)
    out = forward_corrected(logits, target, T, reduction="none").numpy()
    assert not np.allclose(out, per_example(ref_forward, h, y, T.T))
    assert not np.allclose(out, per_example(ref_cross_entropy, h, y))


def test_forward_identity_is_cross_entropy():
    h, y = batch(12)
    logits, target = as_torch(h, y)
    np.testing.assert_allclose(
        forward_corrected(logits, target, np.eye(10), reduction="none").numpy(),
        per_example(ref_cross_entropy, h, y),
        RTOL,
        ATOL,
    )


@pytest.mark.parametrize(
    "fn, extra",
    [
        (cross_entropy, {}),
        (forward_corrected, {"T": FORWARD_MATRICES["dirichlet_zeros"]}),
        (backward_corrected, {"T": BACKWARD_MATRICES["dirichlet"]}),
        (unhinged, {}),
        (sigmoid, {}),
        (savage, {}),
        (bootstrap_soft, {}),
        (bootstrap_hard, {}),
    ],
)
def test_reductions_are_consistent(fn, extra):
    logits, target = as_torch(*batch(13))
    none = fn(logits, target, reduction="none", **extra)
    assert none.shape == (16,)
    total = fn(logits, target, reduction="sum", **extra)
    mean = fn(logits, target, reduction="mean", **extra)
    default = fn(logits, target, **extra)
    assert total.ndim == 0 and mean.ndim == 0
    np.testing.assert_allclose(total.item(), float(np.sum(none.numpy())), rtol=1e-12)
    np.testing.assert_allclose(mean.item(), float(np.mean(none.numpy())), rtol=1e-12)
    assert default.item() == mean.item()
    with pytest.raises(ValueError, match="reduction"):
        fn(logits, target, reduction="avg", **extra)


# -------------------------------------------------------------------- stability


def column_only_through_class_1():
    # Column 1 receives mass only from row 1; row 0 (the confident class) never
    # produces label 1.
    return np.array(
        [
            [1.0, 0.0, 0.0, 0.0, 0.0],
            [0.0, 0.5, 0.5, 0.0, 0.0],
            [0.0, 0.0, 1.0, 0.0, 0.0],
            [0.0, 0.0, 0.0, 1.0, 0.0],
            [0.0, 0.0, 0.0, 0.0, 1.0],
        ]
    )


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_forward_is_stable_at_huge_logits(dtype):
    T = column_only_through_class_1()
    h = torch.tensor([[1e4, -1e4, 0.0, 0.0, 0.0]], dtype=dtype, requires_grad=True)
    target = torch.tensor([1])

    # The naive formula underflows: softmax(h) @ T has a zero in column 1.
    naive = -torch.log(torch.softmax(h, dim=1) @ torch.tensor(T, dtype=dtype))[0, 1]
    assert not torch.isfinite(naive)
    (naive_grad,) = torch.autograd.grad(naive, h)
    assert not torch.all(torch.isfinite(naive_grad))

    loss = forward_corrected(h, target, T)
    assert torch.isfinite(loss)
    # Exact: -log(0.5 p_1) with log p_1 = -2e4.
    rel = 1e-6 if dtype == torch.float32 else 1e-14
    assert loss.item() == pytest.approx(2e4 + math.log(2.0), rel=rel)
    (grad,) = torch.autograd.grad(loss, h)
    assert torch.all(torch.isfinite(grad))
    # d/dh (-log p_1) = p - e_1 = (1, -1, 0, 0, 0).
    np.testing.assert_allclose(grad.double().numpy(), [[1.0, -1.0, 0.0, 0.0, 0.0]], atol=1e-6)


def test_forward_is_stable_at_huge_logits_with_mnist_T():
    T = asymmetric("mnist", 0.3)  # column 7 gets mass from rows 2 (0.3) and 7 (0.7)
    h = torch.full((1, 10), -1e4, dtype=torch.float64)
    h[0, 0] = 1e4
    h.requires_grad_(True)
    naive = -torch.log(torch.softmax(h, dim=1) @ torch.tensor(T))[0, 7]
    assert not torch.isfinite(naive)

    loss = forward_corrected(h, torch.tensor([7]), T)
    assert loss.item() == pytest.approx(2e4, rel=1e-14)  # -log(0.3 p + 0.7 p), p = e^-2e4
    (grad,) = torch.autograd.grad(loss, h)
    expected = np.zeros((1, 10))
    expected[0, 0], expected[0, 2], expected[0, 7] = 1.0, -0.3, -0.7
    np.testing.assert_allclose(grad.numpy(), expected, atol=1e-12)


def test_forward_finite_for_random_huge_logits_and_zeros_in_T():
    rng = np.random.default_rng(5)
    T = FORWARD_MATRICES["dirichlet_zeros"]
    assert np.any(T == 0)
    h = torch.tensor(rng.choice([-1e4, 0.0, 1e4], size=(32, 10)), requires_grad=True)
    target = torch.tensor(rng.integers(0, 10, size=32))
    for module in (make_loss("forward", T=T), lambda a, b: forward_corrected(a, b, T)):
        loss = module(h, target)
        assert torch.isfinite(loss)
        (grad,) = torch.autograd.grad(loss, h)
        assert torch.all(torch.isfinite(grad))


# --------------------------------------------------------------------- backward


@pytest.mark.parametrize("name", list(BACKWARD_MATRICES))
def test_backward_matches_inverse_times_loss_vector(name):
    T = BACKWARD_MATRICES[name]
    h, y = batch(20)
    expected = per_example(ref_backward, h, y, T)
    logits, target = as_torch(h, y)
    out = backward_corrected(logits, target, T, reduction="none")
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-9, atol=1e-10)
    module = make_loss("backward", T=T, reduction="none")
    np.testing.assert_allclose(module(logits, target).numpy(), expected, rtol=1e-9, atol=1e-10)
    if not np.allclose(T, T.T):  # orientation: not the transpose's inverse
        assert not np.allclose(out.numpy(), per_example(ref_backward, h, y, T.T))


def test_backward_2x2_by_hand():
    # T = [[0.8, 0.2], [0.3, 0.7]], det = 0.5, T^{-1} = [[1.4, -0.4], [-0.6, 1.6]].
    T = np.array([[0.8, 0.2], [0.3, 0.7]])
    h = np.array([[0.5, -1.0]])
    l0, l1 = ref_losses_all_classes(h[0])
    logits = torch.tensor(h)
    out0 = backward_corrected(logits, torch.tensor([0]), T).item()
    out1 = backward_corrected(logits, torch.tensor([1]), T).item()
    assert out0 == pytest.approx(1.4 * l0 - 0.4 * l1, rel=1e-12)
    assert out1 == pytest.approx(-0.6 * l0 + 1.6 * l1, rel=1e-12)


@pytest.mark.parametrize("lam", [0.1, 0.5, 1.0])
def test_backward_identity_mix(lam):
    T = BACKWARD_MATRICES["dirichlet"]
    h, y = batch(21)
    expected = per_example(ref_backward, h, y, T, identity_mix=lam)
    logits, target = as_torch(h, y)
    out = backward_corrected(logits, target, T, identity_mix=lam, reduction="none")
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-9, atol=1e-10)
    module = make_loss("backward", T=T, identity_mix=lam, reduction="none")
    np.testing.assert_allclose(module(logits, target).numpy(), expected, rtol=1e-9, atol=1e-10)
    assert not np.allclose(out.numpy(), per_example(ref_backward, h, y, T))
    if lam == 1.0:  # λ = 1 inverts the identity: plain cross-entropy
        np.testing.assert_allclose(out.numpy(), per_example(ref_cross_entropy, h, y), RTOL, ATOL)


def test_backward_singular_T_needs_identity_mix():
    T = asymmetric("mnist", 0.5)
    np.testing.assert_array_equal(T[5], T[6])  # the reason it is singular
    logits, target = as_torch(*batch(22))
    with pytest.raises(ValueError, match="identity_mix"):
        backward_corrected(logits, target, T)
    with pytest.raises(ValueError, match="identity_mix"):
        make_loss("backward", T=T)

    out = backward_corrected(logits, target, T, identity_mix=0.2, reduction="none")
    expected = per_example(ref_backward, *batch(22), T, identity_mix=0.2)
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-9, atol=1e-10)
    module = make_loss("backward", T=T, identity_mix=0.2, reduction="none")
    np.testing.assert_allclose(module(logits, target).numpy(), expected, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("lam", [-0.1, 1.5])
def test_backward_identity_mix_out_of_range(lam):
    logits, target = as_torch(*batch(23))
    with pytest.raises(ValueError, match="identity_mix"):
        backward_corrected(logits, target, symmetric(10, 0.2), identity_mix=lam)


# -------------------------------------------------------------------- baselines


@pytest.mark.parametrize(
    "fn, phi",
    [(unhinged, phi_unhinged), (sigmoid, phi_sigmoid), (savage, phi_savage)],
    ids=["unhinged", "sigmoid", "savage"],
)
@pytest.mark.parametrize("seed", range(2))
def test_one_vs_rest_margin_losses(fn, phi, seed):
    h, y = batch(30 + seed, scale=2.0)
    expected = per_example(lambda row, k: ref_one_vs_rest(phi, row, k), h, y)
    out = fn(*as_torch(h, y), reduction="none", targets="one_vs_rest")
    np.testing.assert_allclose(out.numpy(), expected, RTOL, ATOL)


def test_margin_losses_by_hand():
    # c = 2, h = (1, -2), y = 0: one-vs-rest margins s*h = (1, 2); one-hot margins (1, 0).
    logits, target = torch.tensor([[1.0, -2.0]], dtype=torch.float64), torch.tensor([0])
    ovr = {"targets": "one_vs_rest"}
    assert unhinged(logits, target, **ovr).item() == pytest.approx(((1 - 1) + (1 - 2)) / 2, rel=1e-14)
    expected_sigmoid = (1 / (1 + math.e**1) + 1 / (1 + math.e**2)) / 2
    assert sigmoid(logits, target, **ovr).item() == pytest.approx(expected_sigmoid, rel=1e-14)
    expected_savage = (1 / (1 + math.e**2) ** 2 + 1 / (1 + math.e**4) ** 2) / 2
    assert savage(logits, target, **ovr).item() == pytest.approx(expected_savage, rel=1e-14)
    assert unhinged(logits, target).item() == pytest.approx(((1 - 1) + 1) / 2, rel=1e-14)
    assert sigmoid(logits, target).item() == pytest.approx((1 / (1 + math.e) + 0.5) / 2, rel=1e-14)
    p = 1 / (1 + math.exp(-3.0))  # softmax probability of class 0
    assert savage(logits, target).item() == pytest.approx((1 / (1 + math.exp(2 * p)) ** 2 + 0.25) / 2, rel=1e-12)


RELEASED = {"unhinged": (unhinged, released_unhinged, False), "sigmoid": (sigmoid, released_sigmoid, False),
            "savage": (savage, released_savage, True)}


@pytest.mark.parametrize("name", list(RELEASED))
@pytest.mark.parametrize("seed", range(3))
def test_margin_losses_equal_the_released_code(name, seed):
    """Values and gradients of the default (one-hot) baselines against a NumPy
    transcription of the authors' Keras losses; gradients by central differences."""
    fn, released, on_softmax = RELEASED[name]
    h, y = batch(60 + seed, scale=2.0)
    logits, target = as_torch(h, y)
    logits.requires_grad_(True)
    out = fn(logits, target, reduction="none")
    np.testing.assert_allclose(out.detach().numpy(), released_batch(released, h, y, on_softmax), RTOL, ATOL)
    out.sum().backward()
    step = 1e-6
    numeric = np.zeros_like(h)
    for i, j in np.ndindex(*h.shape):
        up, down = h.copy(), h.copy()
        up[i, j] += step
        down[i, j] -= step
        numeric[i, j] = (released_batch(released, up, y, on_softmax)[i]
                         - released_batch(released, down, y, on_softmax)[i]) / (2 * step)
    np.testing.assert_allclose(logits.grad.numpy(), numeric, rtol=1e-5, atol=1e-9)


@pytest.mark.parametrize("fn", [unhinged, sigmoid])
def test_one_hot_margin_losses_move_only_the_labelled_output(fn):
    """With one-hot targets the other classes add a constant: their gradient is zero
    and the labelled output's is 1/c of the one-vs-rest one."""
    h, y = batch(70)
    logits, target = as_torch(h, y)
    logits.requires_grad_(True)
    fn(logits, target, reduction="sum").backward()
    one_hot = logits.grad.clone()
    logits.grad = None
    fn(logits, target, reduction="sum", targets="one_vs_rest").backward()
    labelled = torch.nn.functional.one_hot(target, h.shape[1]).bool()
    assert (one_hot[~labelled] == 0).all()
    torch.testing.assert_close(one_hot[labelled], logits.grad[labelled])
    assert (logits.grad[~labelled] != 0).any()


def test_unknown_margin_targets_are_rejected():
    logits, target = as_torch(*batch(71))
    for fn in (unhinged, sigmoid, savage):
        with pytest.raises(ValueError, match="unknown targets 'pm1'"):
            fn(logits, target, targets="pm1")


@pytest.mark.parametrize("beta", [None, 0.5])
def test_bootstrap_soft(beta):
    h, y = batch(40)
    kwargs = {} if beta is None else {"beta": beta}
    expected = per_example(ref_bootstrap_soft, h, y, **kwargs)  # default β = 0.95
    out = bootstrap_soft(*as_torch(h, y), reduction="none", **kwargs)
    np.testing.assert_allclose(out.numpy(), expected, RTOL, ATOL)
    if beta is None:  # the default really is 0.95
        other = per_example(ref_bootstrap_soft, h, y, beta=0.8)
        assert not np.allclose(out.numpy(), other)


@pytest.mark.parametrize("beta", [None, 0.3])
def test_bootstrap_hard(beta):
    h, y = batch(41)
    kwargs = {} if beta is None else {"beta": beta}
    expected = per_example(ref_bootstrap_hard, h, y, **kwargs)  # default β = 0.8
    out = bootstrap_hard(*as_torch(h, y), reduction="none", **kwargs)
    np.testing.assert_allclose(out.numpy(), expected, RTOL, ATOL)
    if beta is None:
        other = per_example(ref_bootstrap_hard, h, y, beta=0.95)
        assert not np.allclose(out.numpy(), other)


def test_bootstrap_beta_one_is_cross_entropy_and_bad_beta_raises():
    h, y = batch(42)
    logits, target = as_torch(h, y)
    ce = per_example(ref_cross_entropy, h, y)
    for fn in (bootstrap_soft, bootstrap_hard):
        out = fn(logits, target, beta=1.0, reduction="none")
        np.testing.assert_allclose(out.numpy(), ce, RTOL, ATOL)
        with pytest.raises(ValueError, match="beta"):
            fn(logits, target, beta=1.2)


def test_bootstrap_soft_gradient_flows_through_q():
    h, y = batch(43, n=3, c=5, scale=1.5)
    logits = torch.tensor(h, requires_grad=True)
    target = torch.tensor(y)
    (grad,) = torch.autograd.grad(bootstrap_soft(logits, target, reduction="sum"), logits)

    def total(flat):
        H = flat.reshape(h.shape)
        return sum(ref_bootstrap_soft(H[m], int(y[m])) for m in range(len(y)))

    eps = 1e-6
    flat = h.ravel().copy()
    fd = np.empty_like(flat)
    for k in range(flat.size):
        up, down = flat.copy(), flat.copy()
        up[k] += eps
        down[k] -= eps
        fd[k] = (total(up) - total(down)) / (2 * eps)
    np.testing.assert_allclose(grad.numpy().ravel(), fd, rtol=1e-6, atol=1e-8)

    # Treating q as a constant target would give a different gradient.
    log_q = logits.log_softmax(dim=1)
    t = torch.nn.functional.one_hot(target, 5).double()
    detached = -((0.95 * t + 0.05 * log_q.exp().detach()) * log_q).sum()
    (grad_detached,) = torch.autograd.grad(detached, logits)
    assert not np.allclose(grad_detached.numpy(), grad.numpy(), rtol=1e-6, atol=1e-8)


# -------------------------------------------------------------------- make_loss

T_FOR = {"forward": FORWARD_MATRICES["mnist"], "backward": BACKWARD_MATRICES["dirichlet"]}
FUNCTIONS = {
    "cross_entropy": cross_entropy,
    "forward": forward_corrected,
    "backward": backward_corrected,
    "unhinged": unhinged,
    "sigmoid": sigmoid,
    "savage": savage,
    "bootstrap_soft": bootstrap_soft,
    "bootstrap_hard": bootstrap_hard,
}
REFERENCES = {
    "cross_entropy": lambda h, y: ref_cross_entropy(h, y),
    "forward": lambda h, y: ref_forward(h, y, T_FOR["forward"]),
    "backward": lambda h, y: ref_backward(h, y, T_FOR["backward"]),
    "unhinged": lambda h, y: released_batch(released_unhinged, h[None], [y])[0],
    "sigmoid": lambda h, y: released_batch(released_sigmoid, h[None], [y])[0],
    "savage": lambda h, y: released_batch(released_savage, h[None], [y], on_softmax=True)[0],
    "bootstrap_soft": lambda h, y: ref_bootstrap_soft(h, y),
    "bootstrap_hard": lambda h, y: ref_bootstrap_hard(h, y),
}


def functional(name, logits, target, **kwargs):
    if name in T_FOR:
        return FUNCTIONS[name](logits, target, T_FOR[name], **kwargs)
    return FUNCTIONS[name](logits, target, **kwargs)


def build(name, **kwargs):
    return make_loss(name, T=T_FOR.get(name), **kwargs)


def test_loss_names():
    assert set(LOSS_NAMES) == set(FUNCTIONS)
    assert len(LOSS_NAMES) == len(set(LOSS_NAMES)) == 8


@pytest.mark.parametrize("name", LOSS_NAMES)
def test_make_loss_matches_function(name):
    module = build(name)
    assert isinstance(module, nn.Module)
    h, y = batch(50)
    logits, target = as_torch(h, y)
    expected = per_example(REFERENCES[name], h, y)
    np.testing.assert_allclose(module(logits, target).item(), expected.mean(), rtol=1e-9)
    np.testing.assert_allclose(
        build(name, reduction="none")(logits, target).numpy(),
        functional(name, logits, target, reduction="none").numpy(),
        rtol=1e-12,
        atol=1e-12,
    )
    np.testing.assert_allclose(
        build(name, reduction="sum")(logits, target).item(),
        functional(name, logits, target, reduction="sum").item(),
        rtol=1e-12,
    )


@pytest.mark.parametrize("name", ["bootstrap_soft", "bootstrap_hard"])
def test_make_loss_passes_beta(name):
    h, y = batch(51)
    logits, target = as_torch(h, y)
    module = make_loss(name, beta=0.6, reduction="none")
    ref = ref_bootstrap_soft if name == "bootstrap_soft" else ref_bootstrap_hard
    np.testing.assert_allclose(
        module(logits, target).numpy(), per_example(ref, h, y, beta=0.6), RTOL, ATOL
    )


@pytest.mark.parametrize("name", LOSS_NAMES)
def test_make_loss_float64_precision(name):
    module = build(name, reduction="none").to(torch.float64)
    h, y = batch(52)
    logits, target = as_torch(h, y)
    out = module(logits, target)
    assert out.dtype == torch.float64
    direct = functional(name, logits, target, reduction="none")
    np.testing.assert_allclose(out.numpy(), direct.numpy(), rtol=1e-12, atol=1e-12)
    reference = per_example(REFERENCES[name], h, y)
    np.testing.assert_allclose(out.numpy(), reference, rtol=1e-9, atol=1e-10)
    # float32 logits give float32 losses close to the float64 ones.
    out32 = module(logits.float(), target)
    assert out32.dtype == torch.float32
    np.testing.assert_allclose(out32.double().numpy(), out.numpy(), rtol=1e-4, atol=1e-4)


def test_make_loss_unknown_name_lists_names():
    with pytest.raises(ValueError) as err:
        make_loss("focal")
    for name in LOSS_NAMES:
        assert name in str(err.value)


@pytest.mark.parametrize("name", ["forward", "backward"])
def test_make_loss_needs_T(name):
    with pytest.raises(ValueError, match="T"):
        make_loss(name)


@pytest.mark.parametrize("name", [n for n in LOSS_NAMES if n not in ("forward", "backward")])
def test_make_loss_rejects_unused_T(name):
    with pytest.raises(ValueError, match="does not use"):
        make_loss(name, T=symmetric(10, 0.2))


@pytest.mark.parametrize(
    "name, kwargs",
    [
        ("cross_entropy", {"beta": 0.9}),
        ("unhinged", {"identity_mix": 0.1}),
        ("forward", {"identity_mix": 0.1}),
        ("backward", {"beta": 0.9}),
        ("bootstrap_soft", {"betta": 0.9}),
        ("cross_entropy", {"reduction": "avg"}),
        ("forward", {"reduction": "avg"}),
        ("backward", {"identity_mix": 2.0}),
    ],
)
def test_make_loss_bad_kwargs(name, kwargs):
    with pytest.raises(ValueError):
        make_loss(name, T=T_FOR.get(name), **kwargs)


def test_make_loss_bad_T():
    with pytest.raises(ValueError, match="row-stochastic"):
        make_loss("forward", T=np.array([[0.5, 0.6], [0.0, 1.0]]))
    with pytest.raises(ValueError, match="negative"):
        make_loss("backward", T=np.array([[1.2, -0.2], [0.0, 1.0]]))


# ----------------------------------------------------------------- bad inputs

ALL_CALLS = {
    name: (lambda name: lambda logits, target, **kw: functional(name, logits, target, **kw))(name)
    for name in LOSS_NAMES
}
ALL_CALLS.update({f"module_{name}": (lambda name: build(name))(name) for name in LOSS_NAMES})


@pytest.mark.parametrize("call", list(ALL_CALLS))
def test_bad_inputs_are_named(call):
    fn = ALL_CALLS[call]
    logits, target = as_torch(*batch(60, n=4))
    with pytest.raises(ValueError, match="logits"):
        fn(logits[0], target[:1])  # 1-D logits
    with pytest.raises(ValueError, match="target must have shape"):
        fn(logits, target[:3])
    with pytest.raises(ValueError, match="target must have shape"):
        fn(logits, target[:, None])
    with pytest.raises(ValueError, match="integer"):
        fn(logits, target.double())
    with pytest.raises(ValueError, match="integer"):
        fn(logits, target > 4)
    for bad in (-1, 10):
        wrong = target.clone()
        wrong[2] = bad
        with pytest.raises(ValueError, match="out of range"):
            fn(logits, wrong)


@pytest.mark.parametrize("dtype", [torch.int32, torch.int16, torch.int8, torch.uint8])
@pytest.mark.parametrize("call", list(ALL_CALLS))
def test_any_integer_target_dtype(call, dtype):
    # n == c, so a uint8 target misread as a boolean mask would not fail on shape.
    fn = ALL_CALLS[call]
    h, y = batch(61, n=10)
    y[:5] = 3
    logits, target = as_torch(h, y)
    np.testing.assert_array_equal(
        fn(logits, target.to(dtype)).numpy(), fn(logits, target).numpy()
    )


@pytest.mark.parametrize("kind", ["forward", "backward"])
def test_bad_T_for_corrected_losses(kind):
    fn = forward_corrected if kind == "forward" else backward_corrected
    logits, target = as_torch(*batch(62, n=4, c=4))
    with pytest.raises(ValueError, match="T is 3x3 but logits have 4 classes"):
        fn(logits, target, symmetric(3, 0.2))
    with pytest.raises(ValueError, match="T is 3x3 but logits have 4 classes"):
        make_loss(kind, T=symmetric(3, 0.2))(logits, target)
    non_stochastic = symmetric(4, 0.2)
    non_stochastic[1, 1] += 0.05
    with pytest.raises(ValueError, match="row-stochastic"):
        fn(logits, target, non_stochastic)
    negative = np.eye(4)
    negative[2] = [0.1, -0.1, 1.0, 0.0]
    with pytest.raises(ValueError, match="negative"):
        fn(logits, target, negative)
    with pytest.raises(ValueError, match="square"):
        fn(logits, target, np.full((4, 3), 1 / 3))


def test_backward_min_prob_clips_like_keras_and_bounds_the_loss():
    T = symmetric(3, 0.3)
    T_inv = np.linalg.inv(T)
    logits = torch.tensor([[40.0, 0.0, -40.0], [0.5, 0.1, -0.2]], dtype=torch.float64, requires_grad=True)
    target = torch.tensor([1, 0])
    out = backward_corrected(logits, target, T, min_prob=1e-7, reduction="none")
    p = np.clip(torch.softmax(logits, 1).detach().numpy(), 1e-7, None)
    expected = [-(T_inv[t] * np.log(p[i])).sum() for i, t in enumerate([1, 0])]
    np.testing.assert_allclose(out.detach().numpy(), expected, rtol=1e-10)
    assert not np.isclose(out[0].item(), backward_corrected(logits, target, T, reduction="none")[0].item())
    out.sum().backward()
    # the clipped probabilities (classes 1 and 2 of the first example) pass no gradient through log p;
    # only class 0 (unclipped) contributes to the first row's gradient via the softmax
    assert torch.isfinite(logits.grad).all()
    # bounded below: each clipped -log p is at most -log(1e-7)
    bound = sum(min(0.0, c) * -math.log(1e-7) for c in T_inv[1])
    extreme = torch.tensor([[-1e4, 0.0, 0.0]], dtype=torch.float64)  # p_0 -> 0, and T⁻¹[1, 0] < 0
    assert backward_corrected(extreme, torch.tensor([1]), T, min_prob=1e-7).item() >= bound - 1e-9
    assert backward_corrected(extreme, torch.tensor([1]), T).item() < bound - 100  # unclipped: unbounded
    module = make_loss("backward", T=T, min_prob=1e-7, reduction="none")
    torch.testing.assert_close(module(logits, target), out)
    with pytest.raises(ValueError, match="min_prob"):
        backward_corrected(logits, target, T, min_prob=0.0)


# ------------------------------------------------ the released code's cross-entropy


def test_clipped_cross_entropy_matches_keras_at_extreme_logits():
    """``-log clip(softmax(h)_y, 1e-7, 1 - 1e-7)`` (the released ``loss.crossentropy``,
    numpy float64 here): bounded by -log 1e-7 ≈ 16.12, and no gradient from an
    example whose label probability is clipped; elsewhere plain cross-entropy."""
    logits = torch.tensor([[40.0, 0.0, 0.0], [0.0, 40.0, 0.0], [0.3, -0.2, 0.1], [-50.0, 0.0, 50.0]],
                          dtype=torch.float64, requires_grad=True)
    target = torch.tensor([0, 0, 2, 2])
    z = logits.detach().numpy()
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    expected = -np.log(np.clip(p[np.arange(4), target.numpy()], 1e-7, 1 - 1e-7))
    per_example = losses.clipped_cross_entropy(logits, target, reduction="none")
    np.testing.assert_allclose(per_example.detach().numpy(), expected, rtol=1e-9)
    assert per_example[1].item() == pytest.approx(-np.log(1e-7))  # label probability e^-40: clipped
    assert losses.cross_entropy(logits, target, reduction="none")[1].item() == pytest.approx(40.0)
    per_example.sum().backward()
    grad = logits.grad
    assert torch.count_nonzero(grad[[0, 1, 3]]) == 0  # p_y > 1 - 1e-7 or < 1e-7: no gradient
    plain = logits.detach().clone().requires_grad_()
    losses.cross_entropy(plain, target, reduction="none")[2].backward()
    torch.testing.assert_close(grad[2], plain.grad[2])
    assert losses.clipped_cross_entropy(logits, target).item() == pytest.approx(expected.mean())
    with pytest.raises(ValueError, match=r"eps must lie in \(0, 0.5\)"):
        losses.clipped_cross_entropy(logits, target, eps=0.5)


def test_per_run_losses_clip_only_the_cross_entropy():
    from losscorrection.training import per_run_losses

    logits = torch.tensor([[[0.0, 30.0], [2.0, -1.0]]])  # (K=1, B=2, c=2)
    target = torch.tensor([[0, 0]])
    clipped = per_run_losses("cross_entropy", logits, target, None, clipped_cross_entropy=True)
    plain = per_run_losses("cross_entropy", logits, target, None)
    assert clipped[0, 0].item() == pytest.approx(-np.log(1e-7), rel=1e-6) and plain[0, 0].item() == pytest.approx(30.0)
    assert clipped[0, 1].item() == pytest.approx(plain[0, 1].item())
    for method in ("bootstrap_soft", "unhinged_bn"):
        torch.testing.assert_close(per_run_losses(method, logits, target, None, clipped_cross_entropy=True),
                                   per_run_losses(method, logits, target, None), rtol=0, atol=0)
