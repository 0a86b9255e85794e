"""Aggregation of the stored runs into the paper's shapes: Table-2 blocks next to
the published numbers (with the paper's bold-face rule), and Figure 1 panels.

The runs themselves live in the results store (:mod:`losscorrection.store`,
re-exported here); the paper's numbers ship with the package.
"""

from __future__ import annotations

from importlib import resources

import numpy as np
import pandas as pd

from .methods import METHOD_SPECS, METHODS, method_spec
from .noise import HUMAN_NOISES, NOISES
from .store import CELL_KEY, COLUMNS, ResultStore, cell_key, device_description, git_commit, timestamp
from .store import rate_key

__all__ = [
    "CELL_KEY",
    "COLUMNS",
    "METHODS",
    "NOISES",
    "ResultStore",
    "cell_key",
    "mean_interval",
    "compact_legend",
    "compact_table",
    "compare_runs",
    "comparison_summary",
    "compare_with_paper",
    "short_setting",
    "device_description",
    "figure_summary",
    "format_accuracy",
    "git_commit",
    "paper_table",
    "paper_table3",
    "plot_accuracy_vs_noise",
    "significance_marks",
    "star_marks",
    "summarize",
    "timestamp",
    "to_markdown",
]

# ----------------------------------------------------------------------- aggregation


STD_DDOF = 0  # the paper's "±": np.std over runs, as the authors' experiment.py computes it


def summarize(frame: pd.DataFrame) -> pd.DataFrame:
    """Mean, standard deviation and count of test accuracy per (method, noise, rate).

    The standard deviation is the population one (``ddof = 0``, NumPy's default),
    the convention of the paper's Table 2; a single run has 0."""
    grouped = frame.groupby(["method", "noise", "rate"], sort=False)["test_accuracy"]
    out = grouped.agg(accuracy_mean="mean", accuracy_std=lambda runs: runs.std(ddof=STD_DDOF),
                      runs="count").reset_index()
    out["accuracy_std"] = out["accuracy_std"].fillna(0.0)
    return out


PAIR_KEYS = ("run", "seed")  # runs of one cell with the same keys share noisy labels, initialisation and data order


def compare_runs(a: pd.DataFrame, b: pd.DataFrame, alpha: float = 0.05,
                 value: str = "test_accuracy") -> pd.DataFrame:
    """Two sets of runs of the same cells side by side (e.g. bf16 against fp32,
    or a profile variant against its profile), compared on the column ``value``
    (the test accuracy by default; ``val_loss`` or ``val_accuracy`` to compare
    on what model selection may see).

    One row per (method, noise, rate) stored in both. Runs of a cell with the
    same ``run`` and ``seed`` (the columns of :data:`PAIR_KEYS` present in both
    frames) share their noisy labels, initialisation and data order, so when at
    least two runs pair up the cell is compared by a paired t-test on the
    per-run differences a − b (``test = "paired"``, ``pairs`` of them);
    otherwise by Welch's unequal-variance t-test (``test = "Welch"``), and with
    fewer than two runs on a side not at all (``test = "none"``, NaN).

    Columns: ``mean_a``, ``mean_b`` and ``runs_a``, ``runs_b`` (every run of the
    cell); ``difference`` (the mean paired difference, or ``mean_a − mean_b``),
    ``low``, ``high`` (its two-sided ``1 − alpha`` interval), ``p_value`` and
    ``separated`` (``p_value < alpha``). A large p-value is no evidence that
    the two agree: the interval says how large a difference the runs leave
    possible.
    """
    keys = ["method", "noise", "rate"]
    pair_on = [k for k in PAIR_KEYS if k in a and k in b]
    rows = []
    for key, runs_a in a.groupby(keys, sort=False):
        runs_b = b[(b["method"] == key[0]) & (b["noise"] == key[1])
                   & ((b["rate"].astype(float) - key[2]).abs() < 1e-9)]
        runs_a, runs_b = runs_a[runs_a[value].notna()], runs_b[runs_b[value].notna()]
        if runs_a.empty or runs_b.empty:
            continue
        test = _difference_test(runs_a, runs_b, pair_on, alpha, value)
        rows.append(dict(zip(keys, key), mean_a=runs_a[value].mean(),
                         mean_b=runs_b[value].mean(), runs_a=len(runs_a), runs_b=len(runs_b), **test,
                         separated=bool(test["p_value"] < alpha)))
    return pd.DataFrame(rows, columns=[*keys, "mean_a", "mean_b", "runs_a", "runs_b", "test", "pairs",
                                       "difference", "low", "high", "p_value", "separated"])


def _difference_test(runs_a: pd.DataFrame, runs_b: pd.DataFrame, pair_on: list[str], alpha: float,
                     value: str = "test_accuracy") -> dict:
    """``test, pairs, difference, low, high, p_value`` of one cell (see :func:`compare_runs`).

    Paired: the differences ``d`` of the ``n`` pairs, standard error
    ``std(d, ddof=1) / sqrt(n)``, ``n − 1`` degrees of freedom. Welch: standard
    error ``sqrt(var_a / n_a + var_b / n_b)`` (``ddof = 1``) with the
    Welch–Satterthwaite degrees of freedom. Two-sided p-value and interval from
    Student's t; runs without any spread give the interval of a point and a
    p-value of 0 (NaN when they do not differ at all)."""
    from scipy.stats import t as student_t

    paired = (runs_a.drop_duplicates(pair_on, keep=False).merge(runs_b.drop_duplicates(pair_on, keep=False),
                                                                on=pair_on, suffixes=("_a", "_b"))
              if pair_on else pd.DataFrame())
    x, y = runs_a[value].to_numpy(float), runs_b[value].to_numpy(float)
    if len(paired) >= 2:
        d = paired[f"{value}_a"].to_numpy(float) - paired[f"{value}_b"].to_numpy(float)
        kind, difference = "paired", d.mean()
        error, freedom = d.std(ddof=1) / np.sqrt(len(d)), len(d) - 1
    elif min(len(x), len(y)) >= 2:
        kind, difference = "Welch", x.mean() - y.mean()
        va, vb = x.var(ddof=1) / len(x), y.var(ddof=1) / len(y)
        error = np.sqrt(va + vb)
        freedom = (va + vb) ** 2 / (va**2 / (len(x) - 1) + vb**2 / (len(y) - 1)) if error > 0 else 1
    else:
        return dict(test="none", pairs=len(paired), difference=float(x.mean() - y.mean()), low=float("nan"),
                    high=float("nan"), p_value=float("nan"))
    if error > 0:
        p_value = 2 * student_t.sf(abs(difference) / error, freedom)
        half = student_t.ppf(1 - alpha / 2, freedom) * error
    else:
        p_value, half = (0.0 if difference != 0 else float("nan")), 0.0
    return dict(test=kind, pairs=len(paired), difference=float(difference), low=float(difference - half),
                high=float(difference + half), p_value=float(p_value))


def mean_interval(values: np.ndarray, alpha: float = 0.05) -> tuple[float, float, float]:
    """The mean of ``values`` and its two-sided ``1 − alpha`` Student t interval
    (``mean ± t(1 − alpha/2, n − 1) · std(ddof=1) / sqrt(n)``); NaN bounds for
    fewer than two values."""
    from scipy.stats import t as student_t

    values = np.asarray(values, dtype=float)
    mean = float(values.mean())
    if len(values) < 2:
        return mean, float("nan"), float("nan")
    half = student_t.ppf(1 - alpha / 2, len(values) - 1) * values.std(ddof=1) / np.sqrt(len(values))
    return mean, float(mean - half), float(mean + half)


def comparison_summary(table: pd.DataFrame, label_a: str, label_b: str, alpha: float = 0.05) -> str:
    """One paragraph (Markdown) of :func:`compare_runs`'s ``table``: how many
    cells were compared by which test and how many of them differ at
    p < ``alpha``; the mean of the cells' differences ``label_a − label_b``
    with its ``1 − alpha`` interval over the cells (a one-sample t interval),
    and the largest difference with its own interval. It claims no agreement:
    the intervals bound the differences the runs leave possible."""
    if table.empty:
        return f"No cell stored under both {label_a} and {label_b}."
    counts = table["test"].value_counts()
    how = {"paired": "by a paired t-test over the runs of the same seed",
           "Welch": "by Welch's t-test (their runs do not pair up)", "none": "not tested (a single run)"}
    tests = ", ".join(f"{counts[kind]} {words}" for kind, words in how.items() if kind in counts)
    tested = len(table) - counts.get("none", 0)
    level = f"{100 * (1 - alpha):g} %"
    differences = table["difference"].to_numpy(float)
    mean, low, high = mean_interval(differences, alpha)
    separated = int(table["separated"].sum())
    text = (f"{len(table)} cells compared ({tests}): {separated} differ{'s' * (separated == 1)} at p < {alpha:g} "
            f"(about {alpha * tested:.2g} would by chance alone if none did). "
            f"Mean difference {label_a} − {label_b} {mean:+.2f} points")
    if len(differences) > 1:
        text += f", {level} interval over the cells [{low:+.2f}, {high:+.2f}]"
    worst = table.iloc[int(np.abs(differences).argmax())]
    text += (f"; the largest, {worst['difference']:+.2f}, for {METHOD_SPECS[worst['method']].label} at "
             f"{_setting_label(worst['noise'], worst['rate'])}")
    if worst["test"] != "none":
        text += f" ({level} interval [{worst['low']:+.2f}, {worst['high']:+.2f}], p = {worst['p_value']:.2g})"
    return text + "."


def paper_table() -> pd.DataFrame:
    """The paper's whole Table 2, shipped with the package: one row per cell,
    ``experiment, method, noise, rate, accuracy_mean, accuracy_std`` (empty for
    the single-run CIFAR blocks), ``runs``, ``star`` (1: the paper's ⋆, the best
    accuracy is a correction with the true T) and ``dagger`` (1: the paper's †,
    T̂ beats T = I without injected noise)."""
    with resources.files("losscorrection").joinpath("paper_table2.csv").open() as handle:
        return pd.read_csv(handle)


def paper_table3() -> pd.DataFrame:
    """The paper's Table 3 (Clothing1M): ``row`` (#1-#8), ``model``, ``loss``, ``init``,
    ``training_data``, ``accuracy``, ``note``."""
    with resources.files("losscorrection").joinpath("paper_table3.csv").open() as handle:
        return pd.read_csv(handle)


def _setting_label(noise: str, rate: float) -> str:
    return noise if noise == "none" or noise in HUMAN_NOISES else f"{noise} {rate:g}"


def compare_with_paper(
    frame: pd.DataFrame,
    paper_experiment: str | None,
    bold: bool = False,
    settings: list[tuple[str, float]] | None = None,
) -> pd.DataFrame:
    """A Table-2-shaped frame: rows = methods, columns = (noise setting, ours|paper).

    ``ours`` is ``mean ± std (n runs)``; ``paper`` is the published ``mean ± std``
    of ``paper_experiment`` (``None`` or no published value -> empty). With
    ``bold``, our entries selected by :func:`significance_marks` are wrapped in
    ``**`` (Markdown bold). ``settings``: (noise, rate) columns always shown
    (with every method as a row), e.g. an experiment's Table 2 columns.
    """
    fixed = list(settings or [])
    ours = summarize(frame)
    if bold and not frame.empty:
        marks = significance_marks(frame)
        ours = ours.merge(marks, on=["method", "noise", "rate"], how="left")
    else:
        ours = ours.assign(bold=False)
    paper = paper_table()
    paper = paper[paper["experiment"] == paper_experiment] if paper_experiment else paper.iloc[:0]
    settings = list(
        dict.fromkeys(
            [(n, rate_key(r)) for n, r in fixed]
            + [(n, rate_key(r)) for n, r in zip(paper["noise"], paper["rate"])]
            + [(n, rate_key(r)) for n, r in zip(ours["noise"], ours["rate"])]
        )
    )
    methods = [m for m in METHODS if fixed or m in set(ours["method"]) | set(paper["method"])]
    table = pd.DataFrame(
        index=pd.Index(methods, name="method"),
        columns=pd.MultiIndex.from_tuples(
            [(_setting_label(n, r), side) for n, r in settings for side in ("ours", "paper")]
        ),
        dtype=object,
    )
    table[:] = ""
    for row in ours.itertuples(index=False):
        text = format_accuracy(row.accuracy_mean, row.accuracy_std, row.runs)
        table.loc[row.method, (_setting_label(row.noise, row.rate), "ours")] = (
            f"**{text}**" if row.bold else text
        )
    for row in paper.itertuples(index=False):
        table.loc[row.method, (_setting_label(row.noise, row.rate), "paper")] = (
            format_accuracy(row.accuracy_mean, row.accuracy_std, row.runs, with_runs=False)
        )
    return table


NBSP = "\u00a0"


def short_setting(noise: str, rate: float) -> str:
    """A noise setting as a narrow column heading: ``none``, ``sym. N = 0.2``, ``asym. N = 0.6``, ``aggre``."""
    if noise == "none" or noise in HUMAN_NOISES:
        return noise
    return f"{'sym.' if noise == 'symmetric' else 'asym.'} N = {rate:g}"


def star_marks(frame: pd.DataFrame) -> set[tuple[str, str, float]]:
    """The paper's ⋆: ``(method, noise, rate)`` of each column whose highest mean
    accuracy is a correction with the true T."""
    if frame.empty:
        return set()
    means = summarize(frame)
    best = means.loc[means.groupby(["noise", "rate"], sort=False)["accuracy_mean"].idxmax()]
    return {(m, n, rate_key(r)) for m, n, r in zip(best["method"], best["noise"], best["rate"])
            if method_spec(m).uses_true_T}


def compact_table(
    frame: pd.DataFrame, paper_experiment: str | None, settings: list[tuple[str, float]], runs: int | None = None
) -> pd.DataFrame:
    """A Table 2 block that fits a page: rows are the methods as the paper names
    them, one column per noise setting, each cell ``ours · paper``.

    Ours is ``mean ± std`` (bold by :func:`significance_marks`, ⋆ by
    :func:`star_marks`, ``(n)`` when the run count is not ``runs``), or ``–``;
    the paper's is its published mean with its ⋆ and †.
    """
    ours = summarize(frame) if not frame.empty else pd.DataFrame(columns=["method", "noise", "rate", "bold"])
    if not frame.empty:
        ours = ours.merge(significance_marks(frame), on=["method", "noise", "rate"], how="left")
        ours["bold"] = ours["bold"].eq(True)  # a cell the rule did not see is not bold
    stars = star_marks(frame)
    paper = paper_table()
    paper = paper[paper["experiment"] == paper_experiment] if paper_experiment else paper.iloc[:0]
    columns = [short_setting(n, r) for n, r in settings]
    table = pd.DataFrame("–", index=pd.Index([METHOD_SPECS[m].label for m in METHODS], name="method"),
                         columns=columns, dtype=object)
    mine = {(row.method, row.noise, rate_key(row.rate)): row for row in ours.itertuples(index=False)}
    published = {(row.method, row.noise, rate_key(row.rate)): row for row in paper.itertuples(index=False)}
    for method in METHODS:
        for (noise, rate), column in zip(settings, columns):
            key = (method, noise, rate_key(rate))
            text = "–"
            if key in mine:
                row = mine[key]
                text = format_accuracy(row.accuracy_mean, row.accuracy_std, row.runs, with_runs=False)
                text = f"**{text}**" if row.bold else text
                text += "⋆" if key in stars else ""
                text += f" ({row.runs})" if runs is not None and row.runs != runs else ""
            text = text.replace(" ", NBSP)  # a value never breaks; a cell may break between ours and the paper's
            if key in published:
                row = published[key]
                text += f" · {row.accuracy_mean:.1f}" + "⋆" * int(row.star) + "†" * int(row.dagger)
            table.loc[METHOD_SPECS[method].label, column] = text
    return table


def compact_legend(runs: int | None, with_paper: bool) -> str:
    """The legend of :func:`compact_table`."""
    ours = f"ours (mean ± standard deviation over {runs} runs)" if runs and runs > 1 else "ours (one run)"
    paper = " · the paper's" if with_paper else ""
    return (f"Each cell: {ours}{paper}. **Bold**: the paper's rule "
            "(the best method and every method a Welch t-test at p < 0.05 cannot separate from it; within "
            "0.5 points for single runs). ⋆: the best accuracy of the column uses the true T. †: T̂ beats "
            "T = I without added noise. –: not run.")


def format_accuracy(mean: float, std: float, runs: int | None = None, with_runs: bool = True) -> str:
    """``"mean ± std (runs)"`` to one decimal. A single run has no spread, so it
    is shown as its value alone; without ``runs`` (or with ``with_runs=False``)
    the count is left out."""
    text = f"{mean:.1f}" if runs == 1 else f"{mean:.1f} ± {std:.1f}"
    return f"{text} ({runs})" if runs is not None and with_runs else text


ORACLE_METHODS = tuple(m for m in METHODS if method_spec(m).uses_true_T)  # starred in the paper's Table 2


def significance_marks(frame: pd.DataFrame, alpha: float = 0.05, margin: float = 0.5) -> pd.DataFrame:
    """The paper's bold-face rule for Table 2, per (noise, rate) column.

    With several runs per method, the best method (highest mean accuracy) is
    bold together with every method a Welch t-test cannot separate from it
    (p >= ``alpha``); with one run per method, every method within ``margin``
    points of the best is bold. When the best method uses the true T (marked
    with a star in the paper), the rule is applied again to the methods that do
    not, so the best practical method is highlighted too.

    Returns a frame with columns ``method, noise, rate, bold`` (bool).
    """
    from scipy.stats import ttest_ind

    def bold_among(group: pd.DataFrame, methods: list[str]) -> set[str]:
        runs = {m: group.loc[group["method"] == m, "test_accuracy"].to_numpy(float) for m in methods}
        best = max(methods, key=lambda m: runs[m].mean())
        single = all(len(r) < 2 for r in runs.values())
        marked = set()
        for m in methods:
            if single or len(runs[m]) < 2 or len(runs[best]) < 2:
                close = runs[best].mean() - runs[m].mean() <= margin
            else:
                p_value = ttest_ind(runs[m], runs[best], equal_var=False).pvalue
                close = m == best or not p_value < alpha  # NaN (no variance at all): inseparable
            if close:
                marked.add(m)
        return marked

    out = []
    for (noise_kind, rate), group in frame.groupby(["noise", "rate"], sort=False):
        methods = list(dict.fromkeys(group["method"]))
        bold = bold_among(group, methods)
        if bold & set(ORACLE_METHODS):
            practical = [m for m in methods if m not in ORACLE_METHODS]
            if practical:
                bold |= bold_among(group, practical)
        out += [dict(method=m, noise=noise_kind, rate=rate, bold=m in bold) for m in methods]
    return pd.DataFrame(out, columns=["method", "noise", "rate", "bold"])


# The methods of Figure 1, named as in Table 2, T and T̂ in mathtext (which draws the hat in place).
FIGURE_LABELS = {
    m: METHOD_SPECS[m].label.replace("T̂", "\0").replace("T", "$T$").replace("\0", r"$\hat{T}$")
    for m in ("cross_entropy", "backward_T", "backward_That", "forward_T", "forward_That")
}


def figure_summary(frame: pd.DataFrame) -> pd.DataFrame:
    """Mean ± std of test accuracy per method and noise rate for a Figure 1 panel
    (the noise-free runs are the rate-0 point of every method); asymmetric noise only."""
    kept = frame[frame["method"].isin(list(FIGURE_LABELS)) & frame["noise"].isin(["none", "asymmetric"])]
    return summarize(kept).sort_values(["method", "rate"], kind="stable").reset_index(drop=True)


def plot_accuracy_vs_noise(frame: pd.DataFrame, ax=None, title: str | None = None):
    """One panel of Figure 1: test accuracy against the asymmetric noise rate N for
    cross-entropy and its four corrections (mean ± std over runs). Returns the axes."""
    import matplotlib.pyplot as plt

    ax = ax if ax is not None else plt.subplots(figsize=(4.2, 3.4))[1]
    summary = figure_summary(frame)
    styles = {"cross_entropy": ("k", "-"), "backward_T": ("tab:blue", "--"),
              "backward_That": ("tab:blue", "-"), "forward_T": ("tab:red", "--"),
              "forward_That": ("tab:red", "-")}
    for method, label in FIGURE_LABELS.items():
        part = summary[summary["method"] == method]
        if part.empty:
            continue
        color, line = styles[method]
        ax.errorbar(part["rate"], part["accuracy_mean"], yerr=part["accuracy_std"], color=color,
                    linestyle=line, marker="o", markersize=3, capsize=2, label=label)
    ax.set_xlabel("asymmetric noise rate $N$")
    ax.set_ylabel("test accuracy (%)")
    if title:
        ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    return ax


def to_markdown(table: pd.DataFrame) -> str:
    """A Markdown table of :func:`compare_with_paper`'s output (two-level columns
    flattened to ``setting: ours`` / ``setting: paper``)."""
    flat = table.copy()
    flat.columns = [f"{setting}: {side}" for setting, side in table.columns]
    return flat.reset_index().to_markdown(index=False)
