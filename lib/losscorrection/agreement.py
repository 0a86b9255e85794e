"""How far our runs agree with the paper: every Table 2 cell that both we and
the paper have, ours against the published mean with a tolerance of
``max(2 × the paper's standard deviation, 1.5)`` points, the share of cells
within it per block, and a verdict on each qualitative claim of Section 5.2
(the findings (a)-(e) of the paper's discussion of Table 2), computed from the
stored runs.
"""

from __future__ import annotations

from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from . import training
from .results import paper_table, summarize
from .store import ResultStore, rate_key

__all__ = ["Claim", "TOLERANCE_FLOOR", "agreement_table", "block_agreement", "claims", "plot_agreement"]

TOLERANCE_FLOOR = 1.5  # points: the tolerance of a cell whose published spread is small or absent


def agreement_table(results_dir="results", profile: str = "paper") -> pd.DataFrame:
    """One row per Table 2 cell of every experiment with both our mean and the
    paper's: ``experiment, method, noise, rate, ours, runs, paper, paper_std,
    tolerance, within`` (``|ours - paper| <= tolerance``)."""
    columns = ["experiment", "method", "noise", "rate", "ours", "runs", "paper", "paper_std", "tolerance", "within"]
    blocks = {key: e.paper_block for key, e in training.EXPERIMENTS.items() if e.paper_block is not None}
    ours = _means(results_dir, profile)
    ours = ours[ours["experiment"].isin(list(blocks))]
    if ours.empty:
        return pd.DataFrame(columns=columns)
    ours = ours.assign(paper_block=ours["experiment"].map(blocks), rate=ours["rate"].map(rate_key))
    paper = paper_table().rename(columns={"experiment": "paper_block", "accuracy_mean": "paper",
                                          "accuracy_std": "paper_std"})
    paper["rate"] = paper["rate"].map(rate_key)
    both = ours.merge(paper[["paper_block", "method", "noise", "rate", "paper", "paper_std"]],
                      on=["paper_block", "method", "noise", "rate"])
    both["paper_std"] = both["paper_std"].fillna(0.0)
    both["tolerance"] = np.maximum(2 * both["paper_std"], TOLERANCE_FLOOR)
    both = both.rename(columns={"accuracy_mean": "ours"})
    both["within"] = (both["ours"] - both["paper"]).abs() <= both["tolerance"]
    return both[columns].reset_index(drop=True)


def block_agreement(table: pd.DataFrame) -> pd.DataFrame:
    """Per experiment: cells compared, cells within tolerance, and their share (%)."""
    grouped = table.groupby("experiment", sort=False)["within"]
    out = grouped.agg(cells="count", within="sum").reset_index()
    out["share"] = 100.0 * out["within"] / out["cells"]
    return out


def plot_agreement(table: pd.DataFrame, ax=None):
    """Ours against the paper for every compared cell, one colour per block, with
    the line y = x and the band of the smallest tolerance (± 1.5 points)."""
    ax = ax if ax is not None else plt.subplots(figsize=(5.2, 5.0))[1]
    low, high = 0.0, 100.0
    if not table.empty:
        low = max(0.0, min(table["ours"].min(), table["paper"].min()) - 3)
        high = min(100.0, max(table["ours"].max(), table["paper"].max()) + 3)
    line = np.array([low, high])
    ax.fill_between(line, line - TOLERANCE_FLOOR, line + TOLERANCE_FLOOR, color="0.85", label="± 1.5 points")
    ax.plot(line, line, color="0.3", linewidth=1, label="ours = paper")
    for key, part in table.groupby("experiment", sort=False):
        ax.scatter(part["paper"], part["ours"], s=18, label=key)
    ax.set_xlim(low, high)
    ax.set_ylim(low, high)
    ax.set_xlabel("paper's test accuracy (%)")
    ax.set_ylabel("our test accuracy (%)")
    ax.set_aspect("equal")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small", loc="upper left")
    return ax


@dataclass(frozen=True)
class Claim:
    """A qualitative claim of the paper, what our runs say about it, and a verdict:
    ``holds``, ``partly``, ``not reproduced`` or ``not run here``."""

    claim: str
    evidence: str
    verdict: str


def _verdict(share: float, compared: int) -> str:
    if compared == 0:
        return "not run here"
    return "holds" if share >= 0.75 else "partly" if share >= 0.5 else "not reproduced"


def _means(results_dir, profile: str) -> pd.DataFrame:
    """Mean accuracy per (experiment, method, noise, rate) of every stored block, Table 2 columns only."""
    store, parts = ResultStore(results_dir), []
    for experiment in training.EXPERIMENTS.values():
        frame = store.load(experiment.key)
        frame = frame[frame["profile"] == profile]
        settings = {(n, rate_key(r)) for n, r in experiment.settings}
        frame = frame[[(n, rate_key(r)) in settings for n, r in zip(frame["noise"], frame["rate"])]]
        if not frame.empty:
            parts.append(summarize(frame).assign(experiment=experiment.key))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(
        columns=["experiment", "method", "noise", "rate", "accuracy_mean"])


def claims(results_dir="results", profile: str = "paper") -> list[Claim]:
    """The paper's claims about Table 2 and Theorem 4, each with the evidence of
    our ``profile`` runs and a verdict."""
    means = _means(results_dir, profile)
    wide = means.pivot_table(index=["experiment", "noise", "rate"], columns="method", values="accuracy_mean")
    noisy = wide[wide.index.get_level_values("noise") != "none"]
    out = []

    pairs = [(f, b) for f, b in (("forward_T", "backward_T"), ("forward_That", "backward_That"))
             if {f, b} <= set(noisy.columns)]
    compared = [both[f] >= both[b] - 0.5 for f, b in pairs if not (both := noisy[[f, b]].dropna()).empty]
    wins = pd.concat(compared) if compared else pd.Series(dtype=bool)
    out.append(Claim(
        "Forward correction is at least as good as backward (within 0.5 points).",
        f"{int(wins.sum())} of {len(wins)} noisy columns, with T and with T̂.", _verdict(wins.mean(), len(wins))))

    if {"forward_T", "cross_entropy"} <= set(wide.columns):
        clean = wide.xs("none", level="noise")["cross_entropy"].droplevel("rate")
        gap = (clean.reindex(noisy.index.get_level_values("experiment")).to_numpy()
               - noisy["forward_T"].to_numpy())  # NaN where either is missing, dropped below
        gap = gap[~np.isnan(gap)]
        recovered = gap <= 3.0
        out.append(Claim(
            "Correction with the true T recovers most of the clean accuracy.",
            f"forward →T within 3 points of clean cross-entropy in {int(recovered.sum())} of {len(gap)} noisy "
            f"columns (largest gap {gap.max():.1f} points)." if len(gap) else "no noisy column run.",
            _verdict(recovered.mean() if len(gap) else 0.0, len(gap))))

    errors = ResultStore(results_dir)
    t_errors = {}
    for key in ("mnist_fc", "cifar100_resnet44"):
        frame = errors.load(key)
        frame = frame[(frame["profile"] == profile) & frame["T_error"].notna()]
        t_errors[key] = frame.drop_duplicates(["noise", "rate", "run"])["T_error"]
    mnist, cifar100 = t_errors["mnist_fc"], t_errors["cifar100_resnet44"]
    evidence = (f"MNIST: mean ‖T̂ − T‖₁/‖T‖₁ {mnist.mean():.3f} over {len(mnist)} stage-1 runs"
                if len(mnist) else "MNIST: no run")
    evidence += "; CIFAR-100: not run here (needs the CIFAR-100 images)." if cifar100.empty else (
        f"; CIFAR-100: {cifar100.mean():.3f} over {len(cifar100)} runs.")
    verdict = "not run here" if mnist.empty else ("partly" if cifar100.empty else
                                                  "holds" if mnist.mean() < cifar100.mean() else "not reproduced")
    out.append(Claim("T̂ is close to T on MNIST and poor on CIFAR-100.", evidence, verdict))

    asym = noisy[noisy.index.get_level_values("noise") == "asymmetric"]
    bounded = [m for m in ("unhinged_bn", "sigmoid_bn") if m in asym.columns]
    if bounded and "forward_T" in asym.columns:
        both = asym[[*bounded, "forward_T"]].dropna()
        trail = both[bounded].max(axis=1) < both["forward_T"]
        out.append(Claim(
            "The bounded losses (unhinged, sigmoid with a BN output) trail the corrections under asymmetric noise.",
            f"both below forward →T in {int(trail.sum())} of {len(trail)} asymmetric columns.",
            _verdict(trail.mean(), len(trail))))
    else:
        out.append(Claim("The bounded losses trail the corrections under asymmetric noise.", "no run.",
                         "not run here"))

    out.append(Claim(
        "Theorem 4: for ReLU networks the Hessian of the backward-corrected loss does not depend on T.",
        "checked numerically in the theory chapter: true for the blocks within a layer, false for the blocks "
        "that couple two layers and for sigmoid networks.", "partly"))
    return out
