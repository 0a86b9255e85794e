# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # The theorems, checked numerically
#
# The two corrections of the paper come with guarantees: the backward-corrected
# loss is an unbiased estimate of the clean loss (Theorem 1), the
# forward-corrected loss has the clean class posterior as its minimiser under
# noisy labels (Theorem 2), and, for ReLU networks, the backward correction is
# claimed to leave the Hessian of the loss untouched (Theorem 4). This chapter
# evaluates each statement with the library's own loss functions
# (`losscorrection.losses`) in double precision, on random inputs, random
# transition matrices and small random networks. Nothing here is trained and
# nothing is read from the results store: every number is recomputed when the
# notebook runs. The profile only changes how many random draws are made.
#
# The derivations are in the [theory chapter](../theory.md). In short: one
# of the three statements needs a qualification, and the Hessian section
# below shows exactly which part of it survives.

# %% tags=["parameters"]
profile = "paper"  # smoke | quick | paper
runs = None  # random draws per check (None: the profile's)
seed = 0

# %%
import warnings

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
import torch
from IPython.display import Markdown, display
from scipy.optimize import minimize
from torch.func import hessian

from losscorrection import losses, noise
from losscorrection.report import glue_numbers

DRAWS = {"smoke": 3, "quick": 10, "paper": 20}[profile] if runs is None else int(runs)
HESSIAN_DRAWS = {"smoke": 2, "quick": 5, "paper": 10}[profile] if runs is None else int(runs)
RATE_GRID = {"smoke": 7, "quick": 16, "paper": 31}[profile]  # points of the noise-rate axis
DTYPE = torch.float64
rng = np.random.default_rng(seed)
warnings.filterwarnings("ignore", message=".*torch.jit.script.*", category=FutureWarning)
sns.set_theme(style="whitegrid")
glue_numbers(profile=profile, draws=DRAWS, hessian_draws=HESSIAN_DRAWS, rate_grid=RATE_GRID, seed=seed)


def per_label(loss, logits: torch.Tensor, c: int, **kwargs) -> np.ndarray:
    """(n, c) matrix: the loss of every example for every possible label."""
    n = logits.shape[0]
    return torch.stack(
        [loss(logits, torch.full((n,), k), reduction="none", **kwargs) for k in range(c)], dim=1
    ).numpy()


# %% [markdown]
# Profile {glue:text}`profile`: {glue:text}`draws` random draws per check
# ({glue:text}`hessian_draws` random networks for the Hessians,
# {glue:text}`rate_grid` noise rates on their plots), seed {glue:text}`seed`,
# float64 on the CPU.
#
# ## Theorem 1: the backward correction is unbiased
#
# Fix an input and its logits $h$. If the clean label is $y$ and the observed
# label is drawn from row $y$ of $T$, the theorem says that the corrected loss,
# averaged over that draw, equals the plain loss of the clean label:
# $\sum_{\tilde y} T_{y\tilde y}\,\ell^{\leftarrow}(\tilde y, h) = \ell(y, h)$.
# The identity is exact, so we compute both sides for every example and every
# clean label $y$ and report the largest absolute difference. As a contrast,
# the same average of the *forward*-corrected loss is also shown: it is not
# meant to be unbiased, and it is not.

# %%
def unbiasedness_rows():
    cases = [("symmetric, c=10, N=0.4", noise.symmetric(10, 0.4)),
             ("asymmetric MNIST, N=0.4", noise.asymmetric("mnist", 0.4)),
             ("asymmetric CIFAR-10, N=0.45", noise.asymmetric("cifar10", 0.45)),
             ("IMDB, N=0.3", noise.asymmetric("imdb", 0.3))]
    cases += [(f"random, c=5, draw {k}", noise.random_transition(5, rng, rng.uniform(0.3, 3.0))) for k in range(DRAWS)]
    rows = []
    for name, T in cases:
        c = T.shape[0]
        logits = torch.tensor(rng.normal(scale=3.0, size=(500, c)), dtype=DTYPE)
        clean = per_label(losses.cross_entropy, logits, c)
        backward = per_label(losses.backward_corrected, logits, c, T=T)
        forward = per_label(losses.forward_corrected, logits, c, T=T)
        # column y of `x @ T.T` is Σ_ỹ T[y, ỹ] x[:, ỹ]: the average over the noisy label
        rows.append({
            "T": name,
            "cond(T)": np.linalg.cond(T),
            "max |ℓ(y)|": np.abs(clean).max(),
            "max |E ℓ←(ỹ) − ℓ(y)|": np.abs(backward @ T.T - clean).max(),
            "max |E ℓ→(ỹ) − ℓ(y)|": np.abs(forward @ T.T - clean).max(),
        })
    return pd.DataFrame(rows)


theorem1 = unbiasedness_rows()
display(theorem1.style.format({"cond(T)": "{:.2f}", "max |ℓ(y)|": "{:.2f}",
                               "max |E ℓ←(ỹ) − ℓ(y)|": "{:.1e}", "max |E ℓ→(ỹ) − ℓ(y)|": "{:.2f}"})
        .hide(axis="index"))
glue_numbers(t1_backward=theorem1["max |E ℓ←(ỹ) − ℓ(y)|"].max(),
             t1_forward_low=theorem1["max |E ℓ→(ỹ) − ℓ(y)|"].min(),
             t1_forward_high=theorem1["max |E ℓ→(ỹ) − ℓ(y)|"].max())

# %% [markdown]
# 500 random logit vectors (standard deviation 3) per matrix; the maximum runs
# over examples and clean labels $y$. The largest deviation for the backward
# correction is **{glue:text}`t1_backward:.1e`**, rounding error of float64;
# for the forward one it is {glue:text}`t1_forward_low:.2f` to
# {glue:text}`t1_forward_high:.2f`.

# %% [markdown]
# ## Theorem 2: the forward correction recovers the clean posterior
#
# Take one input whose clean class posterior is $p$. Under the noise its
# observed label follows $T^\top p$. The expected forward-corrected
# cross-entropy is then
# $R(q) = \sum_{\tilde y} (T^\top p)_{\tilde y}\,\ell^{\rightarrow}(\tilde y, q)$,
# a function of the model's prediction $q = \mathrm{softmax}(h)$. The theorem
# says that, over the simplex, $R$ is smallest at $q = p$. We minimise $R$
# directly over the simplex with scipy's SLSQP (the loss is evaluated by the
# library at the logits $h = \log q$, the gradient comes from autograd) from
# several random starting points, and report how far the minimiser $q^\star$
# is from $p$. For comparison, the same
# search for the uncorrected cross-entropy ends at $T^\top p$, the *noisy*
# posterior, and the backward-corrected loss ends at $p$ too (its expectation
# is the clean cross-entropy, by Theorem 1).

# %%
def expected_loss(q: np.ndarray, loss, noisy_p: np.ndarray, **kwargs):
    """R(q) = Σ_ỹ noisy_p[ỹ] loss(ỹ, logits = log q), and its gradient in q (for scipy)."""
    c = len(q)
    q = torch.tensor(q, dtype=DTYPE, requires_grad=True)
    logits = torch.log(q).expand(c, c)  # softmax(log q) = q on the simplex
    value = (torch.tensor(noisy_p) * loss(logits, torch.arange(c), reduction="none", **kwargs)).sum()
    value.backward()
    return value.item(), q.grad.numpy()


def minimiser(loss, noisy_p, start, **kwargs) -> np.ndarray:
    """The minimiser of R over the simplex (SLSQP from `start`; entries kept >= 1e-9)."""
    c = len(start)
    result = minimize(lambda q: expected_loss(q, loss, noisy_p, **kwargs), start, jac=True,
                      method="SLSQP", bounds=[(1e-9, 1.0)] * c,
                      constraints=[{"type": "eq", "fun": lambda q: q.sum() - 1, "jac": lambda q: np.ones(c)}],
                      options={"ftol": 1e-15, "maxiter": 1000})
    return result.x / result.x.sum()


def minimiser_rows(c: int = 4, starts: int = 5):
    rows = []
    for draw in range(DRAWS):
        T = noise.random_transition(c, rng, rng.uniform(0.5, 2.0))
        p = rng.dirichlet(np.ones(c))
        noisy_p = T.T @ p
        dist = {"forward": [], "backward": [], "cross-entropy": []}  # distances to p, p, Tᵀp
        for _ in range(starts):
            start = rng.dirichlet(np.ones(c))
            dist["forward"].append(np.linalg.norm(minimiser(losses.forward_corrected, noisy_p, start, T=T) - p))
            dist["backward"].append(np.linalg.norm(minimiser(losses.backward_corrected, noisy_p, start, T=T) - p))
            dist["cross-entropy"].append(np.linalg.norm(minimiser(losses.cross_entropy, noisy_p, start) - noisy_p))
        rows.append({"draw": draw, "‖Tᵀp − p‖": np.linalg.norm(noisy_p - p),
                     "forward: max ‖q* − p‖": max(dist["forward"]),
                     "backward: max ‖q* − p‖": max(dist["backward"]),
                     "cross-entropy: max ‖q* − Tᵀp‖": max(dist["cross-entropy"])})
    return pd.DataFrame(rows)


STARTS = 5
theorem2 = minimiser_rows(starts=STARTS)
display(theorem2.style.format("{:.1e}", subset=["forward: max ‖q* − p‖", "backward: max ‖q* − p‖",
                                                "cross-entropy: max ‖q* − Tᵀp‖"])
        .format("{:.3f}", subset=["‖Tᵀp − p‖"]).hide(axis="index"))
glue_numbers(starts=STARTS, t2_forward=theorem2["forward: max ‖q* − p‖"].max(),
             t2_backward=theorem2["backward: max ‖q* − p‖"].max(),
             t2_cross_entropy=theorem2["cross-entropy: max ‖q* − Tᵀp‖"].max(),
             t2_noise_low=theorem2["‖Tᵀp − p‖"].min(), t2_noise_high=theorem2["‖Tᵀp − p‖"].max())

# %% [markdown]
# {glue:text}`draws` random pairs $(p, T)$ with 4 classes,
# {glue:text}`starts` random starts each; Euclidean distances between
# probability vectors, maxima over the starts. Over all draws and starts, the
# minimiser of the forward-corrected risk is within
# **{glue:text}`t2_forward:.1e`** of $p$, that of the backward-corrected risk
# within {glue:text}`t2_backward:.1e`; that of the uncorrected cross-entropy is
# within {glue:text}`t2_cross_entropy:.1e` of the noisy posterior $T^\top p$,
# which lies {glue:text}`t2_noise_low:.3f` to {glue:text}`t2_noise_high:.3f`
# away from $p$.
#
# Both corrections land on $p$ up to the optimiser's tolerance, from every
# start; the uncorrected loss lands on the noisy posterior $T^\top p$ instead.
#
# ## Theorem 4: Hessians of ReLU networks
#
# The paper's Theorem 4 states that, for a network whose activations are all
# ReLUs, the Hessian of the backward-corrected cross-entropy is the same as
# that of the plain cross-entropy, whatever $T$. The argument writes the
# corrected loss of a label as a log-partition term, which does not depend on
# $T$, plus a term $B$ that is linear in the last layer's output. That output
# is piecewise linear in the weights *of any single layer* when the other
# layers are held fixed, so every second derivative of $B$ taken inside one
# layer vanishes. It is not piecewise linear in the weights of two layers
# jointly: the logit $W^{(2)}\,\mathrm{relu}(W^{(1)}x + b^{(1)})$ is a product
# of $W^{(2)}$ and a function of $W^{(1)}$, so the mixed second derivatives
# $\partial^2 B / \partial W^{(2)} \partial W^{(1)}$ are not zero. The
# statement therefore holds for the within-layer (block-diagonal) part of the
# Hessian only.
#
# We check this on a small network with 4 inputs, 6 hidden units and 3
# classes: 51 parameters, flattened into one vector $\theta$ so that
# `torch.func.hessian` gives the full $51 \times 51$ Hessian of the batch-mean
# loss over 32 random inputs with random labels. For a symmetric $T$ with
# noise rate $N$ (invertible for $N < 2/3$ with three classes) we compute the
# difference $\Delta H = H_{\text{corrected}} - H_{\text{cross-entropy}}$ and
# split it into the block of layer 1 ($W^{(1)}, b^{(1)}$), the block of layer
# 2 ($W^{(2)}, b^{(2)}$) and the two cross-layer blocks, each measured by its
# Frobenius norm relative to that of the cross-entropy Hessian.

# %%
SIZES = (4, 6, 3)
SHAPES = [(SIZES[1], SIZES[0]), (SIZES[1],), (SIZES[2], SIZES[1]), (SIZES[2],)]
COUNTS = [int(np.prod(s)) for s in SHAPES]
LAYER1 = slice(0, COUNTS[0] + COUNTS[1])
LAYER2 = slice(LAYER1.stop, sum(COUNTS))
N_PARAMS = sum(COUNTS)


def network(theta: torch.Tensor, x: torch.Tensor, activation) -> torch.Tensor:
    W1, b1, W2, b2 = torch.split(theta, COUNTS)
    hidden = activation(x @ W1.view(SHAPES[0]).T + b1)
    return hidden @ W2.view(SHAPES[2]).T + b2


def loss_hessian(loss, theta, x, y, activation) -> torch.Tensor:
    return hessian(lambda t: loss(network(t, x, activation), y))(theta)


def block_norms(delta: torch.Tensor, reference: torch.Tensor) -> dict:
    scale = torch.linalg.norm(reference).item()
    cross = torch.sqrt(torch.linalg.norm(delta[LAYER1, LAYER2]) ** 2
                       + torch.linalg.norm(delta[LAYER2, LAYER1]) ** 2).item()
    return {"layer 1 block": torch.linalg.norm(delta[LAYER1, LAYER1]).item() / scale,
            "layer 2 block": torch.linalg.norm(delta[LAYER2, LAYER2]).item() / scale,
            "cross-layer blocks": cross / scale}


def random_problem(generator: torch.Generator):
    x = torch.randn(32, SIZES[0], generator=generator, dtype=DTYPE)
    y = torch.randint(0, SIZES[2], (32,), generator=generator)
    theta = torch.randn(N_PARAMS, generator=generator, dtype=DTYPE)
    return theta, x, y


rates = np.unique(np.r_[0.0, 0.01, 0.03, np.linspace(0.0, 0.6, RATE_GRID)])
activations = {"ReLU": torch.relu, "sigmoid": torch.sigmoid}
corrections = {"backward": losses.backward_corrected, "forward": losses.forward_corrected}
records = []
generator = torch.Generator().manual_seed(seed)
for draw in range(HESSIAN_DRAWS):
    theta, x, y = random_problem(generator)
    for act_name, act in activations.items():
        H_ce = loss_hessian(losses.cross_entropy, theta, x, y, act)
        for rate in rates:
            T = noise.symmetric(SIZES[2], rate)
            for corr_name, corr in corrections.items():
                H = loss_hessian(lambda z, t: corr(z, t, T), theta, x, y, act)
                records.append({"draw": draw, "activation": act_name, "correction": corr_name,
                                "rate": rate, **block_norms(H - H_ce, H_ce)})
hessians = pd.DataFrame(records)
BLOCKS = ["layer 1 block", "layer 2 block", "cross-layer blocks"]
glue_numbers(rates=len(rates))

# %% [markdown]
# {glue:text}`hessian_draws` random networks (parameters, inputs and labels
# drawn at random), {glue:text}`rates` noise rates from 0 to 0.6. The three
# panels show the worst case over the random networks. A value at the bottom
# of a log-scaled panel ($10^{-17}$ or below, drawn at $10^{-18}$ when it is
# exactly zero) is rounding error: that block of the Hessian is unchanged by
# the correction.

# %%
FLOOR = 1e-18
worst = hessians.groupby(["activation", "correction", "rate"])[BLOCKS].max().reset_index()
panels = [("ReLU", "backward", "(a) ReLU network, backward correction"),
          ("sigmoid", "backward", "(b) sigmoid network, backward correction"),
          ("ReLU", "forward", "(c) ReLU network, forward correction")]
fig, axes = plt.subplots(1, 3, figsize=(15, 4.2), sharey=True)
for ax, (act_name, corr_name, title) in zip(axes, panels):
    part = worst[(worst.activation == act_name) & (worst.correction == corr_name)]
    for block, marker, style in zip(BLOCKS, "osD", ("-", "--", ":")):
        ax.plot(part.rate, part[block].clip(lower=FLOOR), marker=marker, ms=4, ls=style, label=block)
    ax.set_yscale("log")
    ax.set_title(title)
    ax.set_xlabel(r"noise rate $N$ of a symmetric $T$ (3 classes)")
axes[0].set_ylabel(r"$\|\Delta H_{\mathrm{block}}\|_F \,/\, \|H_{\mathrm{CE}}\|_F$ (max over networks)")
axes[0].legend(loc="center right")
fig.suptitle("Change of the Hessian caused by the loss correction, by parameter block")
fig.tight_layout()
plt.show()

# %%
at = rates[np.argmin(np.abs(rates - 0.4))]
summary = worst[np.isclose(worst.rate, at)].drop(columns="rate")
display(summary.style.format("{:.1e}", subset=BLOCKS).hide(axis="index"))
relu_back = hessians[(hessians.activation == "ReLU") & (hessians.correction == "backward")]
sig_back = hessians[(hessians.activation == "sigmoid") & (hessians.correction == "backward")]
glue_numbers(table_rate=at, relu_within=relu_back[["layer 1 block", "layer 2 block"]].max().max(),
             relu_cross=relu_back["cross-layer blocks"].max(), sigmoid_layer1=sig_back["layer 1 block"].max(),
             sigmoid_layer2=sig_back["layer 2 block"].max())

# %% [markdown]
# The table gives the relative change of each block at
# $N$ = {glue:text}`table_rate:.2f`, the maximum over
# {glue:text}`hessian_draws` random networks. Over every rate and network:
#
# - ReLU, backward: the within-layer blocks never change by more than
#   {glue:text}`relu_within:.1e` (relative); the cross-layer blocks change by
#   up to {glue:text}`relu_cross:.2f`.
# - sigmoid, backward: the layer-1 block changes too (up to
#   {glue:text}`sigmoid_layer1:.2f`); the layer-2 block does not
#   ({glue:text}`sigmoid_layer2:.1e`), because the last layer is linear
#   whatever the activation.
# - forward: every block changes, with either activation.
#
# The picture matches the qualified statement, not the literal one. With ReLU
# activations the backward correction leaves each layer's own curvature alone,
# for any $T$, but changes how the layers' parameters interact, and the
# change grows with the noise rate (as $T^{-1}$ grows). With sigmoid
# activations even the first layer's own block moves, because the hidden
# units are no longer piecewise linear in their weights. The forward
# correction changes the loss itself, not just a linear term of it, and
# every block moves. Panel (c) also shows that the change does not fade
# gradually as $N \to 0$: already at $N = 0.01$ it is of the same order as
# at $N = 0.6$. The forward loss of label $\tilde y$ is
# $-\log\bigl(\sum_i T_{i\tilde y}\,\hat p_i\bigr)$, which cannot exceed
# $-\log \min_i T_{i\tilde y}$; examples that the random network assigns to
# label $\tilde y$ a probability far below $N/2$ sit on this plateau, where
# the loss is flat and its curvature is very different from that of the
# cross-entropy.
#
# Where the block structure comes from is easiest to see in a picture of
# $|\Delta H|$ for one ReLU network at $N = 0.4$: the two diagonal blocks are
# empty, the off-diagonal ones are not.

# %%
theta, x, y = random_problem(torch.Generator().manual_seed(seed))
T = noise.symmetric(SIZES[2], 0.4)
delta = (loss_hessian(lambda z, t: losses.backward_corrected(z, t, T), theta, x, y, torch.relu)
         - loss_hessian(losses.cross_entropy, theta, x, y, torch.relu))
fig, ax = plt.subplots(figsize=(6.2, 5.2))
sns.heatmap(np.abs(delta.numpy()), ax=ax, cmap="viridis", square=True,
            cbar_kws={"label": "|ΔH| entry"}, xticklabels=10, yticklabels=10)
for edge in (LAYER1.stop,):
    ax.axhline(edge, color="white", lw=1.5)
    ax.axvline(edge, color="white", lw=1.5)
ax.set_title("|H(backward) − H(cross-entropy)|, ReLU 4-6-3 network, symmetric T, N = 0.4")
ax.set_xlabel("parameter index (0–29: layer 1, 30–50: layer 2)")
ax.set_ylabel("parameter index")
plt.show()
glue_numbers(diagonal_largest=max(delta[LAYER1, LAYER1].abs().max(), delta[LAYER2, LAYER2].abs().max()),
             off_diagonal_largest=delta[LAYER1, LAYER2].abs().max())

# %% [markdown]
# The largest entry inside the diagonal blocks is
# {glue:text}`diagonal_largest:.1e`; in the off-diagonal blocks it is
# {glue:text}`off_diagonal_largest:.3f`.
#
# The theorem's first sentence, that the Hessian of the plain cross-entropy
# does not change under noise, is the special case $T = I$ of the same
# argument with noisy labels in place of clean ones, and it has the same
# limitation: swapping the labels of a ReLU network's batch leaves the
# within-layer blocks of its Hessian untouched and changes the cross-layer
# blocks. The table compares the cross-entropy Hessians of a ReLU network
# under clean labels and under labels corrupted by a symmetric $T$ with
# $N = 0.4$ (32 examples).

# %%
rows = []
generator = torch.Generator().manual_seed(seed + 1)
for draw in range(HESSIAN_DRAWS):
    theta, x, y = random_problem(generator)
    y_noisy = torch.tensor(noise.corrupt(y.numpy(), noise.symmetric(SIZES[2], 0.4), seed + draw))
    H_clean = loss_hessian(losses.cross_entropy, theta, x, y, torch.relu)
    H_noisy = loss_hessian(losses.cross_entropy, theta, x, y_noisy, torch.relu)
    rows.append({"draw": draw, "labels changed": int((y != y_noisy).sum()),
                 **block_norms(H_noisy - H_clean, H_clean)})
display(pd.DataFrame(rows).style.format("{:.1e}", subset=BLOCKS).hide(axis="index"))

# %% [markdown]
# What does hold for any network is the statement *averaged over the noise*:
# by Theorem 1 the noise-averaged backward loss is the clean loss as a
# function of the parameters, so their Hessians agree in every block, with
# ReLU and sigmoid activations alike. We compute the Hessian of
# $\theta \mapsto \frac1n\sum_i \sum_{\tilde y} T_{y_i\tilde y}\,
# \ell^{\leftarrow}(\tilde y, h(x_i;\theta))$ for a symmetric $T$ with $N = 0.4$
# and compare it with that of the clean cross-entropy: the table gives the
# relative Frobenius norm of the difference, block by block.

# %%
def noise_averaged_backward(T):
    T_t = torch.tensor(T, dtype=DTYPE)

    def loss(logits, y):
        c = logits.shape[1]
        every = torch.stack([losses.backward_corrected(logits, torch.full_like(y, k), T, reduction="none")
                             for k in range(c)], dim=1)  # (n, c): ℓ←(k) for every possible noisy label k
        return (T_t[y] * every).sum(dim=1).mean()
    return loss


rows = []
generator = torch.Generator().manual_seed(seed + 2)
for draw in range(HESSIAN_DRAWS):
    theta, x, y = random_problem(generator)
    T = noise.symmetric(SIZES[2], 0.4)
    for act_name, act in activations.items():
        H_clean = loss_hessian(losses.cross_entropy, theta, x, y, act)
        H_avg = loss_hessian(noise_averaged_backward(T), theta, x, y, act)
        rows.append({"draw": draw, "activation": act_name, **block_norms(H_avg - H_clean, H_clean)})
display(pd.DataFrame(rows).style.format("{:.1e}", subset=BLOCKS).hide(axis="index"))

# %% [markdown]
# ## Table 1: backward against forward
#
# The paper summarises the two corrections in a small qualitative table. Its
# three rows come first; the rows marked "(text)" collect properties the
# paper states in its text, not in the table. The Hessian row carries the
# qualification established above.

# %%
table1 = pd.DataFrame(
    {
        "backward ℓ←": ["same as ℓ for ReLU nets (Thm 4): per example only in the within-layer "
                        "blocks; averaged over the noise, in every block and for any network",
                        "yes (Thm 1)", "yes (Thm 1)",
                        "T⁻¹ · (vector of per-label losses)", "yes: T⁻¹",
                        "no: can be negative, unbounded below"],
        "forward ℓ→": ["no guarantee", "no guarantee", "yes (Thm 2)",
                       "ℓ applied to Tᵀ · (predicted probabilities)", "no", "yes"],
    },
    index=["Hessian of the noisy risk", "unbiased estimator of ℓ", "same minimiser as ℓ on clean data",
           "what is corrected (text)", "needs a matrix inverse (text)", "non-negative (text)"],
)
display(Markdown(table1.to_markdown()))

# %% [markdown]
# ### One row in numbers: the backward loss can be negative
#
# Take the paper's asymmetric MNIST matrix with $N = 0.4$ (2→7, 3→8, 5↔6, 7→1).
# Some rows of $T^{-1}$ have negative entries, so the backward-corrected loss
# of a label weighs some per-class losses negatively. Over random logits and
# random labels, it takes negative values; the forward-corrected loss is a
# negative log-probability and cannot.

# %%
T = noise.asymmetric("mnist", 0.4)
n = 20_000 if profile != "smoke" else 4_000
logits = torch.tensor(rng.normal(scale=3.0, size=(n, 10)), dtype=DTYPE)
labels = torch.tensor(rng.integers(0, 10, size=n))
values = pd.DataFrame({
    "backward ℓ←": losses.backward_corrected(logits, labels, T, reduction="none").numpy(),
    "forward ℓ→": losses.forward_corrected(logits, labels, T, reduction="none").numpy(),
})
fig, ax = plt.subplots(figsize=(8, 4))
sns.histplot(values.melt(var_name="loss", value_name="value"), x="value", hue="loss", bins=120,
             element="step", stat="density", common_norm=False, ax=ax)
ax.axvline(0, color="black", lw=0.8)
ax.set_title(f"Corrected losses of {n:,} random logit vectors (sd 3), asymmetric MNIST T, N = 0.4")
ax.set_xlabel("per-example loss")
ax.set_ylabel("density")
plt.show()
display(values.agg(["min", "median", "max"]).T.assign(
    **{"fraction < 0": (values < 0).mean()}).style.format("{:.3f}"))

# %% [markdown]
# The negative values are not bounded. Push the logits towards the observed
# label, $h = t\,e_{\tilde y}$: the per-class losses of the other classes grow
# like $t$, and the backward loss of label $\tilde y$ grows like
# $t\,(1 - (T^{-1})_{\tilde y\tilde y})$ because the rows of $T^{-1}$ sum to
# one. Wherever the diagonal entry of $T^{-1}$ exceeds one, that slope is
# negative and the loss falls without limit as the network grows more
# confident. The forward loss of the same logits tends to $-\log T_{\tilde
# y\tilde y}$, a non-negative constant.
#
# The library's batch trainer therefore evaluates the backward loss with
# every predicted probability clipped below at $10^{-7}$
# (`min_prob=losses.KERAS_EPSILON`, the clip the authors' Keras code applies
# implicitly). The clipped loss, the dotted line, follows the exact one until
# the other classes' probabilities reach $10^{-7}$ and then stays flat.

# %%
T_inv = losses.backward_matrix(T)
scales = np.linspace(0, 50, 26)
fig, ax = plt.subplots(figsize=(8, 4))
for label in range(10):
    h = torch.tensor(np.outer(scales, np.eye(10)[label]), dtype=DTYPE)
    target = torch.full((len(scales),), label)
    back = losses.backward_corrected(h, target, T, reduction="none").numpy()
    if T_inv[label, label] > 1 + 1e-9:
        ax.plot(scales, back, label=f"backward, ỹ = {label} (T⁻¹[ỹ, ỹ] = {T_inv[label, label]:.2f})")
clipped_label = int(np.argmax(np.diag(T_inv)))
h = torch.tensor(np.outer(scales, np.eye(10)[clipped_label]), dtype=DTYPE)
clipped = losses.backward_corrected(h, torch.full((len(scales),), clipped_label), T, reduction="none",
                                    min_prob=losses.KERAS_EPSILON).numpy()
ax.plot(scales, clipped, ls=":", lw=2.5, color="black",
        label=f"backward, ỹ = {clipped_label}, probabilities clipped at {losses.KERAS_EPSILON:g}")
for label in (2, 7):
    h = torch.tensor(np.outer(scales, np.eye(10)[label]), dtype=DTYPE)
    fwd = losses.forward_corrected(h, torch.full((len(scales),), label), T, reduction="none").numpy()
    ax.plot(scales, fwd, ls="--", label=f"forward, ỹ = {label}")
ax.set_title("Corrected loss along h = t·e_ỹ (asymmetric MNIST T, N = 0.4)")
ax.set_xlabel("logit scale t")
ax.set_ylabel("loss of label ỹ")
ax.legend(fontsize=8)
plt.show()
