"""How far our runs agree with the paper, block by block of Table 2.

Cells: every Table 2 cell that both we and the paper have, ours against the
published mean with a tolerance of ``max(2 × the paper's standard deviation,
1.5)`` points; per block, the share of cells within it and a paired test of
the cell-wise differences ours − paper (their mean, a 95 % t-interval and the
Wilcoxon signed-rank test of "no systematic shift").

Claims: the findings (a)-(e) of the paper's Section 5.2, two statements of its
conclusion (Section 6), whether the corrections with T̂ beat cross-entropy, and
Theorem 4. Each is judged on units (a column, a method in a column, a block),
counted per block, and given a verdict from the paper's blocks only: the
experiments run on the paper's own data, or, for a CIFAR-10 block that has no
run on the lossless images, on their JPEG copy. The smaller stand-ins
(MNIST-10k, digits) are counted apart and never enter a verdict. The same
judgement applied to the paper's own Table 2 checks the operationalisation.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from . import training
from .methods import METHODS
from .results import mean_interval, paper_table, summarize
from .store import ResultStore, rate_key

__all__ = [
    "ALPHA", "Claim", "DATA_KINDS", "TIE", "TOLERANCE_FLOOR", "agreement_table", "block_agreement", "block_label",
    "claim_counts", "claims", "format_block_agreement", "paired_runs", "paper_blocks", "plot_agreement",
    "stand_ins",
]

TOLERANCE_FLOOR = 1.5  # points: the tolerance of a cell whose published spread is small or absent
TIE = 0.5  # points: two means this close tie (the book's bold rule for single runs)
ALPHA = 0.05  # significance level of the paired tests
DATA_KINDS = {"own": "paper's data", "copy": "JPEG copy", "stand-in": "stand-in"}  # Experiment.paper_data
BASELINES = ("cross_entropy", "unhinged_bn", "sigmoid_bn", "savage", "bootstrap_soft", "bootstrap_hard")
LEFT_HALF = ("mnist_fc", "imdb_embedding", "imdb_lstm")  # Table 2's left half: the simpler networks and tasks
CIFAR100 = "cifar100_resnet44"


# ----------------------------------------------------------------------------- blocks


def _data_kind(experiment: training.Experiment) -> str:
    if experiment.paper_data not in DATA_KINDS:
        raise ValueError(f"{experiment.key}: unknown paper_data {experiment.paper_data!r}; "
                         f"known: {', '.join(DATA_KINDS)}")
    return experiment.paper_data


def _runs(results_dir, profile: str, key: str) -> pd.DataFrame:
    """The stored ``profile`` runs of experiment ``key`` in its Table 2 columns, rates rounded."""
    frame = ResultStore(results_dir).load(key)
    frame = frame[frame["profile"] == profile]
    rates = frame["rate"].map(rate_key)
    settings = {(noise, rate_key(rate)) for noise, rate in training.EXPERIMENTS[key].settings}
    keep = np.array([(n, r) in settings for n, r in zip(frame["noise"], rates)], dtype=bool)
    return frame[keep].assign(rate=rates[keep])


def paper_blocks(results_dir="results", profile: str = "paper") -> dict[str, str | None]:
    """Each block of the paper's Table 2 and the experiment standing for it (``None``:
    not run here): the one on the paper's own data when it has ``profile`` runs,
    otherwise its JPEG copy when that has runs. Stand-ins never stand for a block."""
    out: dict[str, str | None] = {}
    for block in paper_table()["experiment"].unique():
        candidates = {_data_kind(e): key for key, e in training.EXPERIMENTS.items() if e.paper_block == block}
        run = [candidates[kind] for kind in ("own", "copy")
               if kind in candidates and not _runs(results_dir, profile, candidates[kind]).empty]
        out[block] = run[0] if run else None
    return out


def stand_ins() -> list[str]:
    """The experiments on smaller stand-ins of a paper block's data (MNIST-10k, digits)."""
    return [key for key, e in training.EXPERIMENTS.items()
            if e.paper_block is not None and _data_kind(e) == "stand-in"]


def block_label(key: str) -> str:
    """An experiment's name as the tables show it: ``cifar10jpg_resnet14 (JPEG copy)``."""
    kind = _data_kind(training.EXPERIMENTS[key])
    return key if kind == "own" else f"{key} ({DATA_KINDS[kind]})"


# ------------------------------------------------------------------ cells against the paper


def _means(results_dir, profile: str) -> pd.DataFrame:
    """Mean accuracy per (experiment, method, noise, rate) of every stored block, Table 2 columns only."""
    parts = [summarize(runs).assign(experiment=key) for key in training.EXPERIMENTS
             if not (runs := _runs(results_dir, profile, key)).empty]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(
        columns=["experiment", "method", "noise", "rate", "accuracy_mean"])


def agreement_table(results_dir="results", profile: str = "paper") -> pd.DataFrame:
    """One row per Table 2 cell of every experiment with both our mean and the
    paper's: ``experiment, data, method, noise, rate, ours, runs, paper, paper_std,
    tolerance, within`` (``|ours - paper| <= tolerance``); ``data`` says whether the
    experiment runs on the paper's data, a JPEG copy of it or a stand-in."""
    columns = ["experiment", "data", "method", "noise", "rate", "ours", "runs", "paper", "paper_std", "tolerance",
               "within"]
    blocks = {key: e.paper_block for key, e in training.EXPERIMENTS.items() if e.paper_block is not None}
    ours = _means(results_dir, profile)
    ours = ours[ours["experiment"].isin(list(blocks))]
    if ours.empty:
        return pd.DataFrame(columns=columns)
    data = {key: DATA_KINDS[_data_kind(training.EXPERIMENTS[key])] for key in blocks}
    ours = ours.assign(paper_block=ours["experiment"].map(blocks), data=ours["experiment"].map(data))
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


def _shift_test(differences: np.ndarray) -> tuple[float, float, float, float]:
    """Mean of ``differences``, its 95 % t-interval and the two-sided Wilcoxon
    signed-rank p-value of "centred on zero" (1 when every difference is 0; the
    interval and p NaN below two differences)."""
    from scipy import stats

    mean, low, high = mean_interval(differences)
    if len(differences) < 2:
        return mean, low, high, float("nan")
    p = float(stats.wilcoxon(differences).pvalue) if np.any(differences != 0) else 1.0
    return mean, low, high, p


def block_agreement(table: pd.DataFrame) -> pd.DataFrame:
    """Per experiment of an :func:`agreement_table`: ``cells`` compared, ``within``
    tolerance, their ``share`` (%), and the cell-wise differences ours − paper:
    ``mean_difference`` with its 95 % t-interval (``ci_low``, ``ci_high``) and
    ``p_value``, the two-sided Wilcoxon signed-rank test of no systematic shift
    (cells paired by method and column)."""
    rows = []
    for key, part in table.groupby("experiment", sort=False):
        mean, low, high, p = _shift_test((part["ours"] - part["paper"]).to_numpy(dtype=float))
        rows.append(dict(experiment=key, cells=len(part), within=int(part["within"].sum()),
                         share=100.0 * part["within"].mean(), mean_difference=mean, ci_low=low, ci_high=high,
                         p_value=p))
    return pd.DataFrame(rows, columns=["experiment", "cells", "within", "share", "mean_difference", "ci_low",
                                       "ci_high", "p_value"])


def format_block_agreement(frame: pd.DataFrame) -> str:
    """A :func:`block_agreement` frame as a markdown table for the book."""
    shown = pd.DataFrame({
        "block": frame["experiment"].map(block_label),
        "cells within tolerance": [f"{w} of {c} ({s:.0f} %)" for w, c, s in
                                   zip(frame["within"], frame["cells"], frame["share"])],
        "mean ours − paper": frame["mean_difference"].map(lambda v: f"{v:+.2f}"),
        "95 % interval": [f"{lo:+.2f} to {hi:+.2f}" if lo == lo else "—"
                          for lo, hi in zip(frame["ci_low"], frame["ci_high"])],
        "Wilcoxon p": frame["p_value"].map(lambda v: f"{v:.2g}" if v == v else "—"),
    })
    return shown.to_markdown(index=False, disable_numparse=True)


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
        ax.scatter(part["paper"], part["ours"], s=18, label=block_label(key))
    ax.set_xlim(low, high)
    ax.set_ylim(low, high)
    ax.set_xlabel("paper's test accuracy (%)")
    ax.set_ylabel("our test accuracy (%)")
    ax.set_aspect("equal")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small", loc="upper left")
    return ax


# ------------------------------------------------------------------ method against method, run by run


def paired_runs(runs: pd.DataFrame, method_a: str, method_b: str) -> pd.DataFrame:
    """``method_a`` against ``method_b`` in each (noise, rate) column of stored ``runs``,
    paired by run index (the runs of one index share their noisy labels and seeds):
    ``noise, rate, pairs, mean_difference`` (a − b) and ``p_value``, the two-sided
    paired t-test over the runs (NaN with fewer than two pairs)."""
    from scipy.stats import ttest_rel

    rows = []
    for (noise, rate), column in runs.groupby(["noise", "rate"], sort=False):
        wide = column.pivot_table(index="run", columns="method", values="test_accuracy", aggfunc="mean")
        if not {method_a, method_b} <= set(wide.columns):
            continue
        both = wide[[method_a, method_b]].dropna()
        p = float(ttest_rel(both[method_a], both[method_b]).pvalue) if len(both) > 1 else float("nan")
        rows.append(dict(noise=noise, rate=rate, pairs=len(both),
                         mean_difference=float((both[method_a] - both[method_b]).mean()), p_value=p))
    return pd.DataFrame(rows, columns=["noise", "rate", "pairs", "mean_difference", "p_value"])


# ----------------------------------------------------------------------------- claims


Judge = Callable[[pd.DataFrame, str], dict[tuple, bool]]  # wide means of a block, its paper block -> unit outcomes


@dataclass(frozen=True)
class _Check:
    key: str
    label: str  # where the paper says it: "(a)" … "(e)" of Section 5.2, "§6", …
    claim: str
    unit: str  # what is counted, plural: "noisy columns"
    judge: Judge
    blocks: tuple[str, ...] | None = None  # the only paper blocks it is about (None: all)
    excluded: tuple[str, ...] = ()  # paper blocks it is not about
    pairs: tuple[tuple[str, str], ...] = ()  # (a, b): units in which a is compared with b run by run
    detail: Callable[[pd.DataFrame], str] | None = None  # a block's figure behind its units, from its means


@dataclass(frozen=True)
class Claim:
    """A claim of the paper with our evidence (units that hold, per block), the same
    judgement on the paper's Table 2 and a verdict from the paper's blocks:
    ``holds`` (≥ 75 % of the units), ``partly`` (≥ 50 %), ``not reproduced`` or
    ``not run here``. ``held``/``units`` are the pooled counts behind the verdict."""

    key: str
    label: str
    claim: str
    evidence: str
    paper_check: str
    verdict: str
    held: int = 0
    units: int = 0


def _verdict(held: int, units: int) -> str:
    if units == 0:
        return "not run here"
    share = held / units
    return "holds" if share >= 0.75 else "partly" if share >= 0.5 else "not reproduced"


def _columns(wide: pd.DataFrame, noises: Iterable[str]) -> Iterable[tuple[tuple, pd.Series]]:
    for (noise, rate), column in wide.iterrows():
        if noise in noises:
            yield (noise, rate), column


def _have(column: pd.Series, methods: Iterable[str]) -> bool:
    return all(pd.notna(column.get(m)) for m in methods)


def _clean_ce(wide: pd.DataFrame) -> float:
    clean = wide[wide.index.get_level_values("noise") == "none"]
    return float(clean["cross_entropy"].iloc[0]) if len(clean) else float("nan")


NOISY = ("symmetric", "asymmetric")


def _judge_clean_spread(wide, block):  # (a)
    out = {}
    for key, column in _columns(wide, ("none",)):
        kept = column.drop(["unhinged_bn", "sigmoid_bn", "savage"]).dropna()
        if "cross_entropy" in kept and len(kept) > 1:
            out.update({(*key, m): bool(v >= kept.max() - 2.0) for m, v in kept.items()})
    return out


def _judge_low_noise(wide, block):  # (b): the second column, symmetric noise
    out = {}
    for key, column in _columns(wide, ("symmetric",)):
        if block in LEFT_HALF and _have(column, BASELINES):
            best = column[list(BASELINES)].max()
            out.update({(*key, m): bool(abs(column[m] - best) <= TOLERANCE_FLOOR)
                        for m in ("backward_T", "forward_T") if pd.notna(column[m])})
        elif block not in LEFT_HALF and _have(column, METHODS):
            out[key] = bool(column["forward_T"] >= column.drop("forward_T").max() - TIE)
    return out


def _best_of_column(methods: tuple[str, ...]) -> Judge:  # (c)
    def judge(wide, block):
        return {key: bool(column[list(methods)].max() >= column.drop(list(methods)).max() - TIE)
                for key, column in _columns(wide, ("asymmetric",)) if _have(column, METHODS)}
    return judge


def _estimation_drop(wide: pd.DataFrame) -> float:
    """Mean accuracy lost by estimating T: (method with T) − (method with T̂) over the
    noisy columns and both corrections; NaN unless all twelve means are there."""
    noisy = wide[wide.index.get_level_values("noise") != "none"]
    pairs = (("forward_T", "forward_That"), ("backward_T", "backward_That"))
    if noisy.empty or noisy[[m for pair in pairs for m in pair]].isna().any(axis=None):
        return float("nan")
    return float(np.mean([noisy[t] - noisy[that] for t, that in pairs]))


def _judge_estimation_cost(wide, block):  # (d), first half: one unit per block
    drop = _estimation_drop(wide)
    return {("block",): bool(-TIE <= drop <= 27.0 + TIE)} if drop == drop else {}


def _judge_estimate_beats_baselines(wide, block):  # (d), second half, and (e)
    needed = (*BASELINES, "forward_That", "backward_That")
    return {key: bool(column[["forward_That", "backward_That"]].max() >= column[list(BASELINES)].max())
            for key, column in _columns(wide, NOISY) if _have(column, needed)}


def _near_clean(points: float) -> Judge:  # (e) and §6: forward with the true T against clean cross-entropy
    def judge(wide, block):
        clean = _clean_ce(wide)
        return {key: bool(column["forward_T"] >= clean - points)
                for key, column in _columns(wide, NOISY) if pd.notna(clean) and pd.notna(column["forward_T"])}
    return judge


def _pairwise(pairs: tuple[tuple[str, str], ...], margin: float) -> Judge:
    """Units (noise, rate, a, b): a's mean above b's (``margin`` > 0: at least b − margin)."""
    def judge(wide, block):
        return {(*key, a, b): bool(column[a] >= column[b] - margin if margin > 0 else column[a] > column[b])
                for key, column in _columns(wide, NOISY) for a, b in pairs if _have(column, (a, b))}
    return judge


def _compared(key: str, label: str, claim: str, unit: str, pairs: tuple[tuple[str, str], ...],
              margin: float = 0.0) -> _Check:
    """A claim that method a beats method b in each noisy column, judged on the means
    and tested run by run."""
    return _Check(key, label, claim, unit, _pairwise(pairs, margin), pairs=pairs)


CHECKS = (
    _Check("clean_spread", "(a)", "Without injected noise every loss reaches about the same accuracy (within 2 "
           "points), unhinged, sigmoid and Savage aside.", "methods of the clean column", _judge_clean_spread),
    _Check("low_noise", "(b)", "At low noise (the second column) the two corrections with T stay level with "
           "the other losses (within 1.5 points) on MNIST and IMDB, while on the ResNets forward correction "
           "with T is unbeaten (ties within 0.5).", "comparisons", _judge_low_noise),
    _Check("asymmetric_best", "(c)", "Under asymmetric noise a correction with the true T is the best method "
           "of the column (ties within 0.5).", "asymmetric columns", _best_of_column(("backward_T", "forward_T"))),
    _Check("asymmetric_forward", "(c)", "Under asymmetric noise forward correction with T is usually the best "
           "method of the column.", "asymmetric columns", _best_of_column(("forward_T",))),
    _Check("estimation_cost", "(d)", "Outside CIFAR-100, estimating T costs on average between 0 and 27 points "
           "against the true T (mean over the noisy columns and both corrections).", "blocks",
           _judge_estimation_cost, excluded=(CIFAR100,),
           detail=lambda wide: f"mean drop {_estimation_drop(wide):.1f} points"),
    _Check("estimate_vs_baselines", "(d)", "Outside CIFAR-100, a correction with T̂ is often at least as good "
           "as every other loss (cross-entropy, unhinged, sigmoid, Savage, bootstrapping).", "noisy columns",
           _judge_estimate_beats_baselines, excluded=(CIFAR100,)),
    _Check("cifar100_forward_T", "(e)", "On CIFAR-100, forward correction with T is almost immune to the noise "
           "(within 1.5 points of clean cross-entropy).", "noisy columns", _near_clean(TOLERANCE_FLOOR),
           blocks=(CIFAR100,)),
    _Check("cifar100_estimate", "(e)", "On CIFAR-100, a correction with T̂ is still at least as good as every "
           "other loss.", "noisy columns", _judge_estimate_beats_baselines, blocks=(CIFAR100,)),
    _compared("forward_That_vs_ce", "Table 2", "Forward correction with T̂ beats cross-entropy on noisy labels.",
              "noisy columns", (("forward_That", "cross_entropy"),)),
    _compared("backward_That_vs_ce", "Table 2", "Backward correction with T̂ beats cross-entropy on noisy "
              "labels.", "noisy columns", (("backward_That", "cross_entropy"),)),
    _compared("forward_vs_backward", "§6", "Forward correction is often better than backward (at least as good, "
              "within 0.5 points; with T and with T̂).", "column-and-estimate pairs",
              (("forward_T", "backward_T"), ("forward_That", "backward_That")), TIE),
    _Check("recovers_clean", "§6", "With the true T the accuracy stays a few points (here 3) from clean "
           "cross-entropy.", "noisy columns", _near_clean(3.0)),
)
THEOREM_4 = Claim(
    "theorem4", "Thm 4", "For ReLU networks the Hessian of the backward-corrected loss does not depend on T.",
    "checked numerically in the theory chapter: true for the blocks within a layer, false for the blocks that "
    "couple two layers and for sigmoid networks.", "—", "partly")


def _wide(means: pd.DataFrame) -> pd.DataFrame:
    """Means (``method, noise, rate, accuracy_mean``) as one row per (noise, rate), one column per method."""
    if means.empty:
        return pd.DataFrame(columns=list(METHODS), index=pd.MultiIndex.from_tuples([], names=["noise", "rate"]))
    wide = means.pivot_table(index=["noise", "rate"], columns="method", values="accuracy_mean")
    return wide.reindex(columns=list(METHODS))


def _significance(check: _Check, runs: pd.DataFrame, units: Iterable[tuple]) -> str:
    """How many of the units' run-by-run comparisons are significant, for and against the claim."""
    tests = {pair: paired_runs(runs, *pair).set_index(["noise", "rate"]) for pair in check.pairs}
    found = [tests[(unit[2], unit[3])].loc[(unit[0], unit[1])] for unit in units
             if (unit[0], unit[1]) in tests[(unit[2], unit[3])].index]
    tested = [row for row in found if row["pairs"] > 1]
    if not tested:
        return "single runs, no paired test"
    significant = [row["mean_difference"] for row in tested if row["p_value"] < ALPHA]
    return (f"paired t-test, p < {ALPHA:g}: {sum(d > 0 for d in significant)} for, "
            f"{sum(d < 0 for d in significant)} against, of {len(tested)} tested")


def _about(check: _Check, block: str) -> bool:
    return (check.blocks is None or block in check.blocks) and block not in check.excluded


def _block_part(check: _Check, name: str, outcomes: dict[tuple, bool], wide: pd.DataFrame,
                runs: pd.DataFrame) -> str:
    detail = []
    if check.detail is not None:
        detail.append(check.detail(wide))
    if check.pairs:
        detail.append(_significance(check, runs, outcomes))
    held = sum(outcomes.values())
    return f"{name}: {held} of {len(outcomes)} {check.unit}" + (f" ({'; '.join(detail)})" if detail else "")


def claim_counts(results_dir="results", profile: str = "paper",
                 experiments: Iterable[str] | None = None) -> pd.DataFrame:
    """Units held per claim (rows: ``claim``, its label and text) and experiment
    (one column each; default: the stand-ins), as ``"k of n"``, ``"not run here"``,
    or ``"—"`` where the claim is not about the experiment's block; no verdict."""
    table = pd.DataFrame({"claim": [f"{c.label} {c.claim}" for c in CHECKS]})
    for key in stand_ins() if experiments is None else experiments:
        block = training.EXPERIMENTS[key].paper_block
        runs = _runs(results_dir, profile, key)
        wide = _wide(summarize(runs) if not runs.empty else pd.DataFrame())
        table[block_label(key)] = [
            (f"{sum(o.values())} of {len(o)}" if (o := c.judge(wide, block)) else "not run here")
            if _about(c, block) else "—" for c in CHECKS]
    return table


def claims(results_dir="results", profile: str = "paper") -> list[Claim]:
    """The paper's claims, each with its units counted per paper block on our
    ``profile`` runs, the same judgement on the paper's Table 2 (on the cells we
    have, then on the whole table) and a verdict from the paper's blocks only."""
    standing = paper_blocks(results_dir, profile)
    paper = paper_table().assign(rate=lambda f: f["rate"].map(rate_key))
    paper_wide = {block: _wide(part) for block, part in paper.groupby("experiment", sort=False)}
    ours = {block: _runs(results_dir, profile, key) if key else None for block, key in standing.items()}
    ours_wide = {block: _wide(summarize(runs)).reindex(paper_wide[block].index) for block, runs in ours.items()
                 if runs is not None}  # a block stands only with runs: never empty
    out = []
    for check in CHECKS:
        parts, not_run, held, units, paper_same, paper_all = [], [], 0, 0, [], []
        for block in (b for b in standing if _about(check, b)):
            mine = check.judge(ours_wide[block], block) if block in ours_wide else {}
            name = block_label(standing[block]) if standing[block] else block
            if mine:
                parts.append(_block_part(check, name, mine, ours_wide[block], ours[block]))
            else:
                not_run.append(name)
            held, units = held + sum(mine.values()), units + len(mine)
            theirs = check.judge(paper_wide[block], block)
            paper_all += list(theirs.values())
            if mine:  # the paper's numbers on our cells only
                masked = paper_wide[block].where(ours_wide[block].notna())
                paper_same += list(check.judge(masked, block).values())
        paper_check = (f"our cells: {sum(paper_same)} of {len(paper_same)}; " if paper_same else "") + (
            f"all its blocks: {sum(paper_all)} of {len(paper_all)}, {_verdict(sum(paper_all), len(paper_all))}")
        parts += [f"not run here: {', '.join(not_run)}"] if not_run else []
        out.append(Claim(check.key, check.label, check.claim, "; ".join(parts), paper_check,
                         _verdict(held, units), held, units))
    return [*out, THEOREM_4]
