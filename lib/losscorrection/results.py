"""The results store: one append-only CSV per experiment, one row per finished run,
with provenance; aggregation into Table-2-shaped frames next to the paper's numbers.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import subprocess
import tempfile
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd
import torch

__all__ = [
    "COLUMNS",
    "METHODS",
    "NOISES",
    "ResultStore",
    "cell_key",
    "compare_with_paper",
    "device_description",
    "figure_summary",
    "format_accuracy",
    "git_commit",
    "paper_table",
    "plot_accuracy_vs_noise",
    "significance_marks",
    "summarize",
    "to_markdown",
]

COLUMNS = (
    "experiment", "model", "method", "noise", "rate", "run", "seed", "profile", "epochs",
    "test_accuracy", "selected_epoch", "T_error", "wall_seconds", "device", "torch_version",
    "git_commit", "timestamp",
)
METHODS = (
    "cross_entropy", "unhinged_bn", "sigmoid_bn", "savage", "bootstrap_soft", "bootstrap_hard",
    "backward_T", "backward_That", "forward_T", "forward_That",
)
NOISES = ("none", "symmetric", "asymmetric")
CELL_KEY = ("method", "noise", "rate", "run", "profile")


def _rate_key(rate: float) -> float:
    return round(float(rate), 6)


def cell_key(method: str, noise: str, rate: float, run: int, profile: str) -> tuple:
    """The identity of one stored run: (method, noise, rate rounded to 1e-6, run, profile)."""
    return (method, noise, _rate_key(rate), int(run), profile)


class ResultStore:
    """Append-only CSV files ``<root>/<experiment>.csv`` with exactly :data:`COLUMNS`.

    Each :meth:`append` rewrites the file through a temporary file and an atomic
    rename, so a crash never leaves a half-written row. A cell is identified by
    (method, noise, rate, run, profile); :meth:`has` lets sweeps skip finished cells.
    Estimated matrices T̂ are kept beside the CSV in ``<experiment>.transitions.json``.
    """

    def __init__(self, root: str | os.PathLike = "results") -> None:
        self.root = Path(root)

    def path(self, experiment: str) -> Path:
        return self.root / f"{experiment}.csv"

    def load(self, experiment: str) -> pd.DataFrame:
        path = self.path(experiment)
        if not path.exists():
            return pd.DataFrame(columns=list(COLUMNS))
        frame = pd.read_csv(path)
        if tuple(frame.columns) != COLUMNS:
            raise ValueError(f"{path} does not have the expected columns {COLUMNS}")
        return frame

    def has(self, experiment: str, method: str, noise: str, rate: float, run: int, profile: str) -> bool:
        return cell_key(method, noise, rate, run, profile) in self.done_cells(experiment)

    def done_cells(self, experiment: str) -> set[tuple]:
        """The :func:`cell_key` of every stored run of ``experiment``."""
        frame = self.load(experiment)
        return {cell_key(*row) for row in frame[list(CELL_KEY)].itertuples(index=False)}

    def append(self, rows: list[dict]) -> None:
        """Append finished runs (dicts with every column of :data:`COLUMNS`)."""
        if not rows:
            return
        by_experiment: dict[str, list[dict]] = {}
        for row in rows:
            missing = set(COLUMNS) - set(row)
            if missing:
                raise ValueError(f"result row is missing columns {sorted(missing)}")
            by_experiment.setdefault(row["experiment"], []).append({c: row[c] for c in COLUMNS})
        for experiment, new in by_experiment.items():
            frame = pd.concat([self.load(experiment), pd.DataFrame(new)], ignore_index=True)
            _atomic_write(self.path(experiment), frame.to_csv(index=False))

    # -- estimated transition matrices -------------------------------------------------

    def _transitions_path(self, experiment: str) -> Path:
        return self.root / f"{experiment}.transitions.json"

    @staticmethod
    def _transition_key(noise: str, rate: float, run: int, profile: str) -> str:
        return f"{noise}/{_rate_key(rate):g}/{int(run)}/{profile}"

    def load_transitions(self, experiment: str) -> dict[str, np.ndarray]:
        path = self._transitions_path(experiment)
        if not path.exists():
            return {}
        return {k: np.array(v) for k, v in json.loads(path.read_text()).items()}

    def get_transition(self, experiment: str, noise: str, rate: float, run: int, profile: str):
        """The stored T̂ of a (noise, rate, run, profile) cell, or None."""
        return self.load_transitions(experiment).get(self._transition_key(noise, rate, run, profile))

    def put_transitions(self, experiment: str, items: list[tuple[str, float, int, str, np.ndarray]]) -> None:
        stored = {k: v.tolist() for k, v in self.load_transitions(experiment).items()}
        for noise, rate, run, profile, T_hat in items:
            stored[self._transition_key(noise, rate, run, profile)] = np.round(T_hat, 8).tolist()
        _atomic_write(self._transitions_path(experiment), json.dumps(stored, indent=0, sort_keys=True))


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# ------------------------------------------------------------------------ provenance


def git_commit(cwd: str | os.PathLike | None = None) -> str:
    """Short commit hash of the working tree (``+dirty`` if modified), else ``unknown``."""
    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()

    try:
        commit = git("rev-parse", "--short=12", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return commit + ("+dirty" if dirty else "")


def device_description(device: torch.device | str) -> str:
    """A human-readable name of the device a run used, e.g. ``cuda: NVIDIA H100 80GB HBM3``."""
    device = torch.device(device)
    if device.type == "cuda":
        return f"cuda: {torch.cuda.get_device_name(device)}"
    cpu = platform.processor() or platform.machine()
    return f"cpu: {cpu}, {torch.get_num_threads()} threads"


def timestamp() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


# ----------------------------------------------------------------------- aggregation


def summarize(frame: pd.DataFrame) -> pd.DataFrame:
    """Mean, standard deviation and count of test accuracy per (method, noise, rate)."""
    grouped = frame.groupby(["method", "noise", "rate"], sort=False)["test_accuracy"]
    out = grouped.agg(accuracy_mean="mean", accuracy_std="std", runs="count").reset_index()
    out["accuracy_std"] = out["accuracy_std"].fillna(0.0)
    return out


def paper_table() -> pd.DataFrame:
    """The left half of the paper's Table 2 (MNIST, IMDB blocks), shipped with the package."""
    with resources.files("losscorrection").joinpath("paper_table2.csv").open() as handle:
        return pd.read_csv(handle)


def _setting_label(noise: str, rate: float) -> str:
    return "none" if noise == "none" else f"{noise} {rate:g}"


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
            [(n, _rate_key(r)) for n, r in fixed]
            + [(n, _rate_key(r)) for n, r in zip(paper["noise"], paper["rate"])]
            + [(n, _rate_key(r)) for n, r in zip(ours["noise"], ours["rate"])]
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
            format_accuracy(row.accuracy_mean, row.accuracy_std)
        )
    return table


def format_accuracy(mean: float, std: float, runs: int | None = None, with_runs: bool = True) -> str:
    """``"mean ± std (runs)"`` to one decimal. A single run has no spread, so it
    is shown as its value alone; without ``runs`` (or with ``with_runs=False``)
    the count is left out."""
    text = f"{mean:.1f}" if runs == 1 else f"{mean:.1f} ± {std:.1f}"
    return f"{text} ({runs})" if runs is not None and with_runs else text


ORACLE_METHODS = ("backward_T", "forward_T")  # use the true T: starred in the paper's Table 2


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


FIGURE_LABELS = {
    "cross_entropy": "cross-entropy",
    "backward_T": "backward, T",
    "backward_That": r"backward, $\hat{T}$",
    "forward_T": "forward, T",
    "forward_That": r"forward, $\hat{T}$",
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
    ax.set_xlabel("noise rate N (asymmetric)")
    ax.set_ylabel("test accuracy (%)")
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    return ax


def to_markdown(table: pd.DataFrame) -> str:
    """A Markdown table of :func:`compare_with_paper`'s output (two-level columns
    flattened to ``setting: ours`` / ``setting: paper``)."""
    flat = table.copy()
    flat.columns = [f"{setting}: {side}" for setting, side in table.columns]
    return flat.reset_index().to_markdown(index=False)
