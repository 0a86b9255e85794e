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
# # Estimating the noise matrix
#
# When $T$ is unknown, Algorithm 1 first trains a network with the plain
# cross-entropy on the noisy labels and reads $T$ off its softmax outputs
# (Eq. 12–13 of the paper). For every class $i$ it looks for an *anchor*
# $\bar x_i$, an input the network is most confident has noisy label $i$,
# and takes the network's whole predicted distribution at that input as row
# $i$ of the estimate: $\hat T_{ij} = \hat p(\tilde y = j \mid \bar x_i)$.
# Instead of the single most confident input, the paper takes the one at the
# 97th percentile ($\alpha = 0.97$), which is less sensitive to a few
# over-confident outputs. The library's implementation is
# `losscorrection.estimation.estimate_transition(probs, quantile=0.97)`, and
# the error reported throughout is `estimation_error`,
# $\lVert \hat T - T\rVert_1 / \lVert T\rVert_1$ (sums of absolute entries).
#
# This chapter trains such stage-1 networks on MNIST-10k (the official MNIST
# test images re-split into 7,200 training, 800 validation and 2,000 test
# images; not the paper's 60k protocol) with the paper's network, optimiser
# and model selection, under the example the paper gives for this step:
# asymmetric noise with $N = 0.7$. It then looks at where the estimate goes
# wrong, and at how it depends on the percentile $\alpha$ and on the length of
# stage-1 training.

# %% tags=["parameters"]
profile = "paper"  # smoke | quick | paper
data_root = None  # default: $LOSSCORR_DATA, else ./data
device = "auto"  # auto | cpu | cuda
runs = None  # stage-1 runs (None: the profile's)
epochs = None  # None: the profile's
progress = True
dataset = "mnist10k"  # falls back to "digits" when MNIST is missing
rate = 0.7  # N of the asymmetric MNIST noise (2→7, 3→8, 5↔6, 7→1)
contrast_rate = 0.2  # a lower N for comparison (None: skip)

# %%
import time
from dataclasses import replace
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
import torch
from IPython.display import Markdown, display

from losscorrection import data, estimation, report, training

sns.set_theme(style="whitegrid")
SHORT = lambda v: f"{v:g}" if isinstance(v, float) else str(v)  # noqa: E731  (table headers)


def load(name: str):
    experiment = training.get_experiment(f"{name}_fc")
    settings = training.profile_settings(experiment, profile)
    return experiment, settings, data.load_dataset(name, data_root, limit=settings.limit)


try:
    experiment, settings, split = load(dataset)
    fallback = None
except data.MissingDataError as err:
    absent = ", ".join(Path(m).name for m in err.missing)
    fallback = f"{dataset} is not available here (needs {absent}); this run uses scikit-learn's digits instead."
    dataset = "digits"
    experiment, settings, split = load(dataset)

schedule = replace(settings.schedule, epochs=epochs) if epochs else settings.schedule
K = runs or settings.runs
runtime = training.Runtime(training.resolve_device(device))  # fp32 products: full-precision softmax for T̂
dev = runtime.device
group = training.make_group_data(experiment, split, dev)
y_prime = torch.cat([split.y_train, split.y_val]).numpy()  # clean labels of X' (for diagnosis only)
if fallback:
    display(Markdown(f"**Note:** {fallback}"))
report.glue_numbers(data_description=split.description, data_summary=split.summary(), profile=profile, runs=K,
                    epochs=schedule.epochs, optimizer=schedule.optimizer, lr=schedule.lr,
                    batch=schedule.batch_size, device=f"{runtime.describe()}, {runtime.precision}",
                    x_prime=len(y_prime))

# %% [markdown]
# **{glue:text}`data_description`**\
# {glue:text}`data_summary`.\
# Profile {glue:text}`profile`: {glue:text}`runs` stage-1 run(s),
# {glue:text}`epochs` epochs of {glue:text}`optimizer` (learning rate
# {glue:text}`lr`), batch {glue:text}`batch`, device {glue:text}`device`. X′,
# the set the anchors are searched in, holds the training and validation
# inputs: {glue:text}`x_prime:,` examples.

# %% [markdown]
# ## Stage 1
#
# The runs use the library's batch trainer (`training.build_runs` for the
# networks, `training.train_group` for the loop), so each is exactly a
# cross-entropy run of the experiment chapters: the paper's MLP
# (two hidden ReLU layers of 128 units, dropout), AdaGrad, and the epoch with
# the lowest cross-entropy on the *noisy* validation split is kept. Run $k$
# uses seed $k$ for its initialisation, data order and noisy labels.

# %%
def stage_one_cells(noise_rate: float) -> list:
    return [training.Cell("cross_entropy", "asymmetric", noise_rate, k) for k in range(K)]


def noisy(noise_rate: float):
    labels = [training.noisy_labels(experiment, split, c.noise, c.rate, c.run) for c in stage_one_cells(noise_rate)]
    return labels[0].T, *training.stacked_labels(labels, dev)


CHECKPOINTS = sorted({e for e in (1, 2, 5, 10, 20, 40) if e <= schedule.epochs} | {schedule.epochs})


def stage_one(noise_rate: float):
    """Train the K stage-1 runs once; besides the selected networks' softmax outputs
    (``outcomes[k].probs``) it records, at every epoch in CHECKPOINTS, the estimation
    error and clean test accuracy of the networks as they are then (for the section
    on the length of stage 1)."""
    T, y_train, y_val = noisy(noise_rate)
    x_prime = torch.cat([group.x_train, group.x_val])
    records = []

    def checkpoint(epoch: int, stack) -> None:
        if epoch not in CHECKPOINTS:
            return
        with torch.no_grad():
            softmax = stack.forward(group.prepare(x_prime, False), train=False, shared=True).softmax(-1)
            test_logits = stack.forward(group.prepare(group.x_test, False), train=False, shared=True)
            accuracy = 100.0 * (test_logits.argmax(-1) == group.y_test).double().mean(dim=1)
        for k in range(K):
            p = softmax[k].double().cpu().numpy()
            for q in (0.97, None):
                records.append({"N": noise_rate, "epoch": epoch, "run": k,
                                "α": "0.97" if q else "1.0 (arg-max)",
                                "error": estimation.estimation_error(estimation.estimate_transition(p, q), T),
                                "clean test accuracy (%)": accuracy[k].item()})

    started = time.perf_counter()
    stack = training.build_runs(experiment, "cross_entropy", stage_one_cells(noise_rate), split, runtime)
    outcomes = training.train_group(
        stack, "cross_entropy", group, y_train, y_val, None, schedule,
        order_seeds=[training.order_seed(k) for k in range(K)], want_probs=True, progress=progress,
        desc=f"stage 1, N = {noise_rate}", on_epoch=checkpoint)
    return T, outcomes, time.perf_counter() - started, pd.DataFrame(records)


T, outcomes, seconds, by_epoch = stage_one(rate)
probs = [o.probs for o in outcomes]  # K arrays (|X'|, c): softmax of each selected stage-1 model
T_hats = [estimation.estimate_transition(p, quantile=0.97) for p in probs]
stage1 = pd.DataFrame({"run": range(K), "clean test accuracy (%)": [o.test_accuracy for o in outcomes],
                       "selected epoch": [o.selected_epoch for o in outcomes],
                       "‖T̂ − T‖₁/‖T‖₁ (α = 0.97)": [estimation.estimation_error(t, T) for t in T_hats]})
display(stage1.style.format(precision=3).hide(axis="index"))
report.glue_numbers(rate=rate, stage_one_seconds=seconds)

# %% [markdown]
# Stage 1 at asymmetric $N$ = {glue:text}`rate` took
# {glue:text}`stage_one_seconds:.0f` s of training for the
# {glue:text}`runs` run(s) together.

# %% [markdown]
# ## True and estimated matrix
#
# The paper prints the true $T$ for MNIST at $N = 0.7$ next to one estimate
# (its Eq. 17; the estimate's entries were lost from our copy of the text,
# apart from the remark that the entries shown as ε are below $10^{-6}$).
# Here is the same pair from run 0.

# %%
report.plot_transition_pair(T, T_hats[0], (f"true T (asymmetric, N = {rate})", "estimated T̂ (run 0, α = 0.97)"),
                            f"Noise matrix on {dataset} ({profile} profile)")
plt.show()

# %% [markdown]
# ## Why some rows are wrong at N = 0.7
#
# The anchor of class $i$ is an input with a large probability of being
# *labelled* $i$. If the network modelled $p(\tilde y \mid x)$ perfectly, that
# probability would be largest for the clean examples of the class $k$ that
# sends the most mass into label $i$, i.e. the $k$ maximising $T_{ki}$, and
# the estimate of row $i$ would be row $k$ of $T$. That is row $i$ itself only
# if $T_{ii} \ge T_{ki}$ for every $k$: each label must be given most often
# by its own class. With $N = 0.7 > 1/2$ this fails for label 7 (given to
# 70% of the 2s and to only 30% of the 7s) and for labels 5 and 6 (each given
# to 70% of the other class): the anchors of 7, 5 and 6 are a 2, a 6 and a 5.
# The second matrix below, "anchor limit", is what the estimator would return
# with a perfect stage-1 network, and the table checks the clean label of
# each anchor the real networks picked.

# %%
def anchor_limit(T: np.ndarray) -> np.ndarray:
    """Eq. 12-13 applied to the exact noisy posteriors of clean examples of every class."""
    return T[T.argmax(axis=0)]


limit = anchor_limit(T)
anchors = [estimation.anchor_indices(p, quantile=0.97) for p in probs]
classes = range(split.num_classes)
diagnosis = pd.DataFrame({
    "class i": list(classes),
    "class maximising T[k, i]": T.argmax(axis=0),
    "clean label of the anchor (per run)": [", ".join(str(y_prime[a[i]]) for a in anchors) for i in classes],
    "row error, anchor limit": np.abs(limit - T).sum(axis=1),
    "row error, T̂ (mean over runs)": np.mean([np.abs(t - T).sum(axis=1) for t in T_hats], axis=0),
})
display(diagnosis.style.format(precision=2).hide(axis="index"))
report.glue_numbers(limit_error=estimation.estimation_error(limit, T), network_error=stage1.iloc[:, -1].mean())

# %% [markdown]
# Row errors are L1 distances between rows (at most 2). The anchor limit has
# an error of {glue:text}`limit_error:.3f`; the networks' T̂ have
# {glue:text}`network_error:.3f`, the mean over {glue:text}`runs` run(s).
#
# So at $N = 0.7$ most of the error is not the network's fault: the
# estimator is answering a question that has a different answer from the one
# we want. Forward correction with such a $\hat T$ still changes the training
# target (it reproduces the noisy labels of classes 5, 6 and 7 with the wrong
# clean-class explanation), which is why the corrected methods with
# estimated $T$ fall behind those with the true $T$ at high noise in the
# experiment chapters. Below $N = 1/2$ the condition holds for the paper's
# MNIST matrices and the remaining error comes from the network.
#
# ## The percentile α
#
# All the estimates below come from the *same* stage-1 softmax outputs; only
# the rank of the anchor changes. $\alpha = 1$ is the arg-max of Eq. 12. The
# table gives the mean and the standard deviation of the estimation error
# over the runs.

# %%
QUANTILES = [0.9, 0.95, 0.97, 0.99, None]
sweeps = {rate: (T, probs)}
if contrast_rate is not None:
    T_low, outcomes_low, _, by_epoch_low = stage_one(contrast_rate)
    sweeps[contrast_rate] = (T_low, [o.probs for o in outcomes_low])
    by_epoch = pd.concat([by_epoch, by_epoch_low])
rows = []
for noise_rate, (T_n, probs_n) in sweeps.items():
    for q in QUANTILES:
        for k, p in enumerate(probs_n):
            rows.append({"N": noise_rate, "α": 1.0 if q is None else q, "run": k,
                         "error": estimation.estimation_error(estimation.estimate_transition(p, q), T_n)})
by_quantile = pd.DataFrame(rows)
table = by_quantile.pivot_table(index="α", columns="N", values="error", aggfunc=["mean", "std"])
table.index = [f"{a:.2f}" + (" (arg-max)" if a == 1.0 else "") for a in table.index]
fig, ax = plt.subplots(figsize=(7, 4))
sns.lineplot(by_quantile, x="α", y="error", hue="N", style="N", markers=True, dashes=False,
             errorbar="sd" if K > 1 else None, palette="deep", ax=ax)
ax.set_xlabel("percentile α of the anchor (1.0 = arg-max)")
ax.set_ylabel("‖T̂ − T‖₁ / ‖T‖₁")
ax.set_title(f"Estimation error against α ({dataset}, asymmetric noise, {K} run(s), {profile} profile)")
plt.show()
display(table.style.format(precision=3, na_rep="–").format_index(SHORT, axis=1))

# %% [markdown]
# ## Length of stage 1
#
# How long must stage 1 train before its softmax is good enough for the
# estimator? The stage-1 trainings above also followed each run's
# trajectory: `train_group`'s `on_epoch` callback sees the networks at the
# end of every epoch, before model selection, and at a few epochs we
# estimated $T$ from them and measured their clean test accuracy. At the last
# checkpoint this is the network of the final epoch, which model selection
# may or may not have kept. The table gives the mean estimation error at each
# checkpoint.

# %%
fig, axes = plt.subplots(1, 2, figsize=(13, 4.2))
sns.lineplot(by_epoch, x="epoch", y="error", hue="N", style="α", markers=True, palette="deep",
             errorbar="sd" if K > 1 else None, ax=axes[0])
axes[0].set_ylabel("‖T̂ − T‖₁ / ‖T‖₁")
axes[0].set_title("Estimation error of the stage-1 network")
sns.move_legend(axes[0], "upper right", ncol=2, fontsize=8, title_fontsize=8)
accuracy_curve = by_epoch[by_epoch["α"] == "0.97"]
sns.lineplot(accuracy_curve, x="epoch", y="clean test accuracy (%)", hue="N", markers=True,
             style="N", dashes=False, palette="deep", errorbar="sd" if K > 1 else None, ax=axes[1])
axes[1].set_title("Clean test accuracy of the same network")
for ax in axes:
    ax.set_xscale("log")
    ax.set_xticks(CHECKPOINTS, [str(e) for e in CHECKPOINTS])
    ax.set_xlabel("stage-1 epochs")
fig.suptitle(f"Stage-1 training length ({dataset}, asymmetric noise, {K} run(s), {profile} profile)")
fig.tight_layout()
plt.show()
display(by_epoch.pivot_table(index="epoch", columns=["N", "α"], values="error", aggfunc="mean")
        .style.format(precision=3).format_index(SHORT, axis=1))

# %%
summary = []
for noise_rate, (T_n, probs_n) in sweeps.items():
    at = by_quantile[by_quantile["N"] == noise_rate].groupby("α")["error"].mean()
    argmax_curve = by_epoch[(by_epoch["N"] == noise_rate) & (by_epoch["α"] == "1.0 (arg-max)")] \
        .groupby("epoch")["error"].mean()
    summary.append({"N": noise_rate, "α = 0.97": at[0.97], "arg-max": at[1.0],
                    "anchor limit": estimation.estimation_error(anchor_limit(T_n), T_n),
                    "arg-max: best epoch": argmax_curve.idxmin(), "arg-max: best error": argmax_curve.min(),
                    f"arg-max after {CHECKPOINTS[-1]} epochs": argmax_curve.iloc[-1]})
display(pd.DataFrame(summary).style.format(precision=3).format(SHORT, subset=["N"]).hide(axis="index"))
share = np.bincount(y_prime, minlength=split.num_classes).max() / len(y_prime)
report.glue_numbers(largest_class_share=share, lowest_safe_percentile=1 - share)

# %% [markdown]
# The summary table gives, for each noise rate, the estimation error of the
# selected stage-1 models at α = 0.97 and with the arg-max, the error of the
# anchor limit alone, and the arg-max error along training: at the epoch where
# it is lowest and at the end. The largest class makes up
# {glue:text}`largest_class_share:.1%` of X′, so a percentile below
# {glue:text}`lowest_safe_percentile:.2f` can land outside the examples of
# a class altogether.
#
# How to read these numbers:
#
# - At $N = 0.7$ the error cannot fall much below the anchor limit, whatever
#   α and however long stage 1 trains: the rows of classes 5, 6 and 7 are
#   estimated from examples of other classes.
# - The arg-max takes the single most extreme softmax output of each column.
#   A network that fits more and more noisy labels as training goes on
#   produces such extremes for mislabelled inputs, so the arg-max estimate
#   stops improving early and can drift back up; the 97th percentile ignores
#   the top 3% of each column and keeps benefiting from a better stage-1
#   network.
# - α cannot be lowered freely: the anchor must stay inside the top share of
#   a column that belongs to the class itself, which for ten roughly equal
#   classes means α well above 0.9.
