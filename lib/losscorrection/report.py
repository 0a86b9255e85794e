"""What the book's experiment chapters show: Table 2 blocks and Figure 1 panels
built from the results store (training what is missing when asked), and the
reproduction status of every cell.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
import torch

from . import training
from .data import missing_files as data_missing_files
from .results import (
    METHOD_SPECS, METHODS, ResultStore, compact_legend, compact_table, compare_runs, comparison_summary,
    format_accuracy, paper_table, plot_accuracy_vs_noise, rate_key, short_setting, summarize,
)

__all__ = ["Block", "figure_panel", "glue_numbers", "gpu_chapter_options", "jpeg_penalty_table", "plot_transition_pair",
           "provenance", "recipe_gap", "status_table", "table_block", "unfinished_groups", "variant_comparison",
           "variants_table"]


@dataclass
class Block:
    """Stored runs of one experiment's cells, why some are missing, and how to show them."""

    experiment: training.Experiment
    frame: pd.DataFrame  # rows of the results store (COLUMNS)
    note: str | None  # None when every requested run is stored
    markdown: str  # heading, provenance line and table (or the note)


def glue_numbers(**values: float | int | str | np.generic | torch.Tensor) -> None:
    """Hand values computed in a chapter's code to its prose: ``name=value`` becomes
    ``{glue:text}`name``` in a markdown cell, with an optional format
    (``{glue:text}`name:.2f```). NumPy and one-element torch values are passed on as
    plain Python numbers, the only numbers whose text myst-nb can format."""
    from myst_nb import glue  # the book's renderer; imported only by the chapters that glue

    for name, value in values.items():
        glue(name, value.item() if isinstance(value, (np.generic, torch.Tensor)) else value, display=False)


def _runs(experiment: training.Experiment, profile: str, runs: int | None) -> int:
    return runs or training.profile_settings(experiment, profile).runs


def provenance(frame: pd.DataFrame) -> str:
    """One line of where runs come from: how many, on which devices and (where
    the ``precision`` column is stored) in which precision, and how much
    training time. Runs of more than one device or precision are counted per
    kind: ``4 runs: 3 on cpu: x86_64 (fp32) and 1 on cuda: H200 (bf16); …``."""
    if frame.empty:
        return ""
    kinds = frame["device"].astype(str)
    if "precision" in frame:
        kinds = kinds + " (" + frame["precision"].astype(str) + ")"
    counts = kinds.value_counts().sort_index()
    runs = f"{len(frame)} run{'s' if len(frame) != 1 else ''}"
    where = (f"{runs} on {counts.index[0]}" if len(counts) == 1
             else f"{runs}: " + " and ".join(f"{count} on {kind}" for kind, count in counts.items()))
    return f"{where}; {frame['wall_seconds'].sum() / 60:.1f} min of training in all."


def variants_table(results_dir, experiment: str, method: str = "cross_entropy", noise: str = "none",
                   rate: float = 0.0) -> str:
    """Markdown: every stored run of one cell grouped by the profile it ran under
    (``paper``, ``quick:lr=0.01:recipe=library``, ``paper:output_init=uniform``, ...): runs,
    training epochs, the epochs model selection kept (lowest–highest), the mean
    noisy-validation loss and accuracy at those epochs (what a choice between
    two settings is decided on; "–" for runs stored before they were
    recorded), mean ± std of the test accuracy, devices and precision."""
    frame = ResultStore(results_dir).load(experiment)
    frame = _select(frame, method, noise, rate)
    if frame.empty:
        return f"*No run of {method} ({noise} {rate:g}) stored for `{experiment}` yet.*"
    rows = [{"profile": f"`{profile}`", "runs": len(group), "epochs": _span(group["epochs"]),
             "selected epoch": _span(group["selected_epoch"]),
             "validation loss": _mean_of_recorded(group["val_loss"], 4),
             "validation accuracy": _mean_of_recorded(group["val_accuracy"], 2),
             "test accuracy": format_accuracy(group["test_accuracy"].mean(), group["test_accuracy"].std(ddof=0),
                                         len(group), with_runs=False),
             "device": ", ".join(sorted(set(group["device"].astype(str)))),
             "precision": ", ".join(sorted(set(group["precision"].astype(str))))}
            for profile, group in frame.groupby("profile")]
    return pd.DataFrame(rows).to_markdown(index=False, disable_numparse=True)  # "86.0", not "86"


def _mean_of_recorded(values: pd.Series, decimals: int) -> str:
    """The mean of the recorded values, with how many there are when some are
    missing (``"0.6012 (2 of 3)"``); ``"–"`` when none is recorded."""
    recorded = values.dropna()
    if recorded.empty:
        return "–"
    mean = f"{recorded.mean():.{decimals}f}"
    return mean if len(recorded) == len(values) else f"{mean} ({len(recorded)} of {len(values)})"


def _span(values: pd.Series) -> str:
    """``"45"`` for one distinct integer value, ``"45–48"`` for several."""
    low, high = int(values.min()), int(values.max())
    return f"{low}" if low == high else f"{low}–{high}"


def jpeg_penalty_table(results_dir) -> str:
    """Markdown: the JPEG penalty under every schedule stored (``paper`` first,
    then e.g. ``paper:lr=0.01``): accuracy on the same test images, lossless and
    as JPEG (mean ± std, runs), and the gap lossless − JPEG ± its standard error
    (:func:`~losscorrection.training.jpeg_penalty_summary`); then the provenance."""
    rows = training.jpeg_penalty_rows(results_dir)
    if rows.empty:
        return ""
    lines = []
    for label in sorted(set(rows["profile"]), key=lambda label: (label != "paper", label)):
        summary = training.jpeg_penalty_summary(rows, profile=label)
        line = {"schedule": f"`{label}`"}
        for version, (runs, mean, std) in summary[["runs", "mean", "std"]].iterrows():
            line[{"jpeg": "JPEG"}.get(version, version)] = f"{mean:.2f} ± {std:.2f} ({runs:.0f})" if runs > 0 else "–"
        gap, se = summary.attrs.get("gap"), summary.attrs.get("gap_se", np.nan)
        line["lossless − JPEG"] = "–" if gap is None else f"**{gap:.2f}{f' ± {se:.2f}' if np.isfinite(se) else ''}**"
        lines.append(line)
    return (f"{pd.DataFrame(lines).to_markdown(index=False)}\n\nTest accuracy (%) on the same test images, "
            f"mean ± std (runs); the gap ± its standard error. {provenance(rows)}")


def variant_comparison(results_dir, experiment: str, profile: str, variant: str) -> str:
    """Markdown: a whole block under two profile labels (e.g. ``paper`` and
    ``paper:output_init=uniform``) cell by cell: a summary
    (:func:`~losscorrection.results.comparison_summary`: cells compared, the
    test of each, paired over the runs of the same seed where they pair up, how
    many differ at p < 0.05, the mean difference and its 95 % interval) and a
    table of the paper's methods by setting, each cell
    ``profile · variant · the paper`` (means)."""
    frame = ResultStore(results_dir).load(experiment)
    ours, other = (frame[frame["profile"] == label] for label in (profile, variant))
    both = compare_runs(ours, other)
    if both.empty:
        return f"*`{experiment}`: no cell stored under both `{profile}` and `{variant}` yet.*"
    spec = training.EXPERIMENTS[experiment]
    paper = paper_table()
    paper = paper[paper["experiment"] == spec.paper_block] if spec.paper_block else paper.iloc[:0]
    published = {(m, n, rate_key(r)): a for m, n, r, a in zip(paper["method"], paper["noise"], paper["rate"],
                                                                paper["accuracy_mean"])}
    cells = {(m, n, rate_key(r)): (a, b) for m, n, r, a, b in zip(both["method"], both["noise"], both["rate"],
                                                                   both["mean_a"], both["mean_b"])}
    columns = {short_setting(n, r): (n, rate_key(r)) for n, r in spec.settings}
    table = pd.DataFrame(
        [[" · ".join([f"{cells[key][0]:.1f}", f"{cells[key][1]:.1f}"]
                     + ([f"{published[key]:.1f}"] if key in published else [])) if key in cells else "–"
          for key in ((m, *setting) for setting in columns.values())] for m in METHODS],
        index=pd.Index([METHOD_SPECS[m].label for m in METHODS], name="method"), columns=list(columns))
    summary = (comparison_summary(both, f"`{profile}`", f"`{variant}`") + f" Each cell: `{profile}` · `{variant}`"
               + (" · the paper" if published else "") + " (mean test accuracy, %).")
    return summary + "\n\n" + table.to_markdown()


def gpu_chapter_options(
    *, profile: str, device: str, train_missing: bool | None, results_dir, committed_results_dir,
    runs: int | None, reuse_results: bool, data_root, epochs: int | None, progress: bool, budget_minutes: float,
) -> tuple[bool, dict]:
    """``(train_missing, options)`` for a chapter whose experiments need a GPU.

    ``train_missing`` None means: train missing runs only on a GPU or in the
    smoke profile. Without training, the chapter shows the committed
    paper-profile runs of ``committed_results_dir`` whatever the profile.
    ``options`` go to :func:`table_block` and :func:`figure_panel`."""
    on_gpu = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    if train_missing is None:
        train_missing = on_gpu or profile == "smoke"
    shown = (dict(profile=profile, results_dir=results_dir) if train_missing
             else dict(profile="paper", results_dir=committed_results_dir))
    return train_missing, dict(runs=runs, reuse_results=reuse_results, data_root=data_root, device=device,
                               epochs=epochs, progress=progress, budget_seconds=60 * budget_minutes, **shown)


def table_block(
    experiment: training.Experiment | str,
    *,
    profile: str,
    runs: int | None = None,
    train_missing: bool = True,
    **options,
) -> Block:
    """One block of Table 2: every method under the experiment's noise settings,
    ours (bold by the paper's rule) next to the paper's published numbers.
    ``options`` go to :func:`losscorrection.training.ensure_results`."""
    experiment = training.get_experiment(experiment) if isinstance(experiment, str) else experiment
    cells = training.table_cells(experiment, _runs(experiment, profile, runs))
    frame, note = training.ensure_results(
        experiment, cells, profile=profile, train_missing=train_missing, **options
    )
    lines = [f"**{experiment.description}** ({profile} profile). {provenance(frame)}"]
    if experiment.paper_note:
        lines.append(f"Paper column: {experiment.paper_note}.")
    if note:
        lines.append(f"*{note}.*")
    table = compact_table(frame, experiment.paper_block, list(experiment.settings),
                          runs=_runs(experiment, profile, runs))
    if (table != "–").to_numpy().any():  # neither ours nor the paper's: the note says it all
        lines.append(table.reset_index().to_markdown(index=False))
        lines.append(compact_legend(_runs(experiment, profile, runs), experiment.paper_block is not None))
    return Block(experiment, frame, note, "\n\n".join(lines))


def figure_panel(
    experiment: training.Experiment | str,
    *,
    profile: str,
    runs: int | None = None,
    train_missing: bool = True,
    ax=None,
    **options,
) -> Block:
    """One panel of Figure 1 (accuracy vs asymmetric noise rate), drawn on ``ax``
    (a new figure when None) if any run is stored; the Block's markdown carries
    the note when runs are missing."""
    experiment = training.get_experiment(experiment) if isinstance(experiment, str) else experiment
    cells = training.figure_cells(_runs(experiment, profile, runs))
    frame, note = training.ensure_results(
        experiment, cells, profile=profile, train_missing=train_missing, **options
    )
    if not frame.empty:
        ax = ax if ax is not None else plt.subplots(figsize=(5, 3.8))[1]
        title = f"{experiment.description.split(':')[0]} ({profile} profile)"  # the data and network, not the key
        plot_accuracy_vs_noise(frame, ax, title=textwrap.fill(title, 60))
    text = f"Figure 1 panel, **{experiment.description}** ({profile} profile). {provenance(frame)}"
    if note:
        text += f" *{note}.*"
    return Block(experiment, frame, note, text)


def _select(frame: pd.DataFrame, method: str, noise_kind: str, rate: float) -> pd.DataFrame:
    return frame[(frame["method"] == method) & (frame["noise"] == noise_kind)
                 & ((frame["rate"].astype(float) - rate).abs() < 1e-9)]


def status_table(results_dir="results", profiles: tuple[str, ...] = ("paper",), data_root=None) -> pd.DataFrame:
    """Every Table 2 and Figure 1 cell of every experiment (and the cells of the
    experiments beyond the paper, such as CIFAR-10N): the paper's value (where
    published), ours (mean ± std), runs stored, profile and device, and a status:
    ``complete`` (the paper's run count), ``partial``, ``pending`` (none yet) or,
    for a cell without runs whose data set is absent from ``data_root``,
    ``needs <dataset> data``."""
    store = ResultStore(results_dir)
    paper = paper_table()
    rows = []
    for experiment in training.EXPERIMENTS.values():
        unrun = (f"needs {experiment.dataset} data" if data_missing_files(experiment.dataset, data_root)
                 else "pending")
        stored = store.load(experiment.key)
        stored = stored[stored["profile"].isin(profiles)]
        ours = summarize(stored) if not stored.empty else pd.DataFrame(
            columns=["method", "noise", "rate", "accuracy_mean", "accuracy_std", "runs"]
        )
        published = paper[paper["experiment"] == (experiment.paper_block or "")]
        block = "Table 2" if experiment.paper_block else "beyond the paper"
        settings = dict.fromkeys(
            [(n, r, block) for n, r in experiment.settings]
            + [(c.noise, c.rate, "Figure 1") for c in training.figure_cells(1) if experiment.figure]
        )
        for noise_kind, rate, where in settings:
            methods = training.FIGURE_METHODS if where == "Figure 1" else METHODS
            for method in methods:
                if where == "Figure 1" and (noise_kind, rate) in experiment.settings:
                    continue  # the same cell is listed under Table 2
                mine, theirs, part = (_select(f, method, noise_kind, rate) for f in (ours, published, stored))
                count = int(mine["runs"].iloc[0]) if len(mine) else 0
                rows.append(dict(
                    experiment=experiment.key, where=where, method=method, noise=noise_kind, rate=rate,
                    paper=(format_accuracy(theirs["accuracy_mean"].iloc[0], theirs["accuracy_std"].iloc[0],
                                           int(theirs["runs"].iloc[0]), with_runs=False)
                           if len(theirs) else ""),
                    ours=(format_accuracy(mine["accuracy_mean"].iloc[0], mine["accuracy_std"].iloc[0], count,
                                          with_runs=False)
                          if count else ""),
                    runs=count,
                    profile=", ".join(sorted(set(part["profile"]))),
                    device=", ".join(sorted(set(part["device"].astype(str)))),
                    status="complete" if count >= experiment.runs else ("partial" if count else unrun),
                ))
    return pd.DataFrame(rows)


def plot_transition_pair(
    T: np.ndarray, T_hat: np.ndarray | None, titles: tuple[str, ...], suptitle: str, decimals: int = 2,
    class_names: tuple[str, ...] | None = None,
) -> plt.Figure:
    """Heatmaps of a true ``T (c, c)`` and an estimate ``T_hat (c, c)`` side by side
    (``T`` alone when ``T_hat`` is None).

    Rows are the true class ``i``, columns the noisy class ``j`` (the paper's
    ``T[i, j] = p(noisy j | true i)``), ticks labelled with ``class_names``
    when given; every entry is annotated, with ``decimals`` decimals, or, for
    more than 10 classes, in whole percent with the panels one above the other
    (so that a cell's text stays readable at the page's width).
    """
    matrices = (T,) if T_hat is None else (T, T_hat)
    classes = np.asarray(T).shape[0]
    percent = classes > 10
    side = max(5.5, 0.42 * classes + 2.0)  # inches per panel: about 0.4 per class once the classes are many
    rows, columns = (len(matrices), 1) if percent else (1, len(matrices))
    fig, axes = plt.subplots(rows, columns, figsize=(side * columns, side * 0.95 * rows), squeeze=False)
    for ax, matrix, title in zip(axes.flat, matrices, titles):
        ticks = list(class_names) if class_names is not None else "auto"
        matrix = np.asarray(matrix)
        sns.heatmap(matrix, ax=ax, vmin=0, vmax=1, cmap="Blues", annot=100 * matrix if percent else True,
                    fmt=".0f" if percent else f".{decimals}f", annot_kws={"size": 8 if percent else 7},
                    cbar=False, square=True, xticklabels=ticks, yticklabels=ticks)
        ax.set_title(f"{title} (%)" if percent else title)
        ax.set_xlabel("noisy label j")
        ax.set_ylabel("true label i")
    fig.suptitle(suptitle)
    fig.tight_layout()
    return fig


def unfinished_groups(results_dir="results") -> pd.DataFrame:
    """The groups of runs whose training stopped before the end and whose state
    is kept under ``<results_dir>/checkpoints/`` (committed, so that a clone
    continues them): ``experiment, method, description, epoch, epochs, minutes``
    (the last finished epoch, of how many; NaN where an older checkpoint did not
    record the total; training time so far), one row per checkpoint."""
    columns = ["experiment", "method", "description", "epoch", "epochs", "minutes", "file"]
    rows = []
    for path in sorted((Path(results_dir) / training.CHECKPOINT_FOLDER).glob("*.pt")):
        state = training.checkpoint.load_checkpoint(path)
        experiment, method = path.stem.rsplit("-", 1)[0].split("-", 1)
        rows.append(dict(experiment=experiment, method=method, description=state.get("description", ""),
                         epoch=int(state["epoch"]), epochs=state.get("epochs", np.nan),
                         minutes=state.get("seconds", np.nan) / 60, file=path.name))
    return pd.DataFrame(rows, columns=columns)


def _reading(left: float, spread: float) -> str:
    """What the gap left after the JPEG penalty says, in words."""
    if not (np.isfinite(left) and np.isfinite(spread)):
        return "the two cannot be compared yet"
    if abs(left) <= 2 * spread:
        return "within twice its standard error, the JPEG penalty alone accounts for the gap"
    return "the gap is larger than the JPEG penalty" if left > 0 else "the JPEG penalty is larger than the gap"


CIFAR10_PAPER_CLEAN = ("cifar10_resnet14", "cross_entropy", "none", 0.0)  # the paper's clean ResNet-14 cell


def recipe_gap(results_dir, experiment: str = "cifar10jpg_resnet14", variant: str = "paper:recipe=library",
               runs: int = 3) -> tuple[str, dict]:
    """Markdown, and the numbers for the prose, of where the clean ResNet-14 gap
    to the paper's 87.8 % comes from: our clean cross-entropy runs under the
    released code's recipe (the experiment's own, ``paper``) and under this
    library's (``variant``), mean ± std and how many of ``runs``, each one's gap
    to the paper; the JPEG penalty measured on the 4,000 images we have
    losslessly (:func:`jpeg_penalty_table`), an extrapolation to the full
    data; the gap each recipe leaves after it, with its standard error; and
    ``released − library`` paired by seed on the noisy-validation loss (the
    criterion of the choice), the noisy-validation accuracy and the test
    accuracy. Numbers: ``<arm>_runs``, ``<arm>_accuracy``, ``<arm>_gap``,
    ``<arm>_left`` for the arms ``released`` and ``library``,
    ``released_minus_library_<value>`` and ``released_minus_library_<value>_p``."""
    block, method, noise, rate = CIFAR10_PAPER_CLEAN
    paper = paper_table()
    paper = float(paper[(paper["experiment"] == block) & (paper["method"] == method)
                        & (paper["noise"] == noise)]["accuracy_mean"].iloc[0])
    stored = _select(ResultStore(results_dir).load(experiment), method, noise, rate)
    arms = {"released": ("paper", stored[stored["profile"] == "paper"]),
            "library": (variant, stored[stored["profile"] == variant])}
    penalty = training.jpeg_penalty_summary(training.jpeg_penalty_rows(results_dir)).attrs
    jpeg, jpeg_se = penalty.get("gap", np.nan), penalty.get("gap_se", np.nan)
    lines, numbers = [{"": "the paper (lossless CIFAR-10, one run)", "test accuracy": f"{paper:.2f}"}], {}
    for name, (label, arm) in arms.items():
        accuracy = arm["test_accuracy"]
        numbers.update({f"{name}_runs": len(arm), f"{name}_accuracy": np.nan, f"{name}_gap": np.nan,
                        f"{name}_left": np.nan})
        if arm.empty:
            lines.append({"": f"ours, {name} recipe (`{label}`)", "test accuracy": f"not stored yet (0 of {runs} runs)"})
            continue
        std = accuracy.std(ddof=1) if len(arm) > 1 else np.nan
        left_se = np.sqrt((std**2 / len(arm) if len(arm) > 1 else 0.0) + jpeg_se**2)
        gap, left = paper - accuracy.mean(), paper - accuracy.mean() - jpeg
        numbers.update({f"{name}_accuracy": accuracy.mean(), f"{name}_gap": gap, f"{name}_left": left})
        spread = f" ± {std:.2f}" if len(arm) > 1 else ""
        lines.append({"": f"ours, {name} recipe (`{label}`, {len(arm)} of {runs} runs)",
                      "test accuracy": f"{accuracy.mean():.2f}{spread}", "paper − ours": f"{gap:.2f}",
                      "left after the JPEG penalty": f"{left:.2f} ± {left_se:.2f}" if np.isfinite(left) else "–"})
    lines.append({"": "JPEG penalty, lossless − JPEG (2,700 training images, 3 runs each)",
                  "test accuracy": f"{jpeg:.2f} ± {jpeg_se:.2f}" if np.isfinite(jpeg) else "not run here"})
    numbers.update(jpeg_penalty=jpeg, jpeg_penalty_se=jpeg_se, paper_accuracy=paper,
                   released_left_reading=_reading(numbers["released_left"], jpeg_se))
    text = pd.DataFrame(lines).fillna("").to_markdown(index=False)
    for value, words in (("val_loss", "noisy-validation loss"), ("val_accuracy", "noisy-validation accuracy"),
                         ("test_accuracy", "test accuracy")):
        both = compare_runs(arms["released"][1], arms["library"][1], value=value)
        if both.empty or both["test"].iloc[0] == "none":
            text += (f"\n\nreleased − library on the {words}: needs at least two runs of each with it "
                     f"recorded (stored: {numbers['released_runs']} and {numbers['library_runs']} runs).")
            continue
        row = both.iloc[0]
        numbers[f"released_minus_library_{value}"] = row["difference"]
        numbers[f"released_minus_library_{value}_p"] = row["p_value"]
        text += (f"\n\nreleased − library on the {words} ({row['test']}, {row['pairs']} pairs): "
                 f"{row['difference']:+.4g}, 95 % interval [{row['low']:+.4g}, {row['high']:+.4g}], "
                 f"p = {row['p_value']:.2g}.")
    return text, {k: float(v) if isinstance(v, (float, np.floating)) else v for k, v in numbers.items()}
