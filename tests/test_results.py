"""Aggregation of stored runs: the paper's bold rule, Table 2 and status frames."""

import math
import re
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats

from losscorrection import report, results, training
from losscorrection.results import ResultStore


def runs(spec, noise="asymmetric", rate=0.2):
    """Rows from ``{method: [accuracies]}``."""
    return pd.DataFrame(
        [dict(method=m, noise=noise, rate=rate, run=k, test_accuracy=a)
         for m, accs in spec.items() for k, a in enumerate(accs)]
    )


def bold(frame):
    marks = results.significance_marks(frame)
    return set(marks.loc[marks["bold"], "method"])


def welch_p(a, b):
    """Welch's unequal-variance t-test, written out (independent of scipy's ttest_ind)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    t = (a.mean() - b.mean()) / math.sqrt(va + vb)
    dof = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    return 2 * stats.t.sf(abs(t), dof)


def test_clear_winner_is_the_only_bold_entry():
    assert bold(runs({"cross_entropy": [80, 80.2, 79.9], "savage": [90, 90.1, 89.8]})) == {"savage"}


def test_inseparable_methods_are_bold_together():
    assert bold(runs({"savage": [90, 91, 89], "bootstrap_soft": [90.2, 89.1, 90.8],
                      "cross_entropy": [70, 71, 70.5]})) == {"savage", "bootstrap_soft"}


@pytest.mark.parametrize("seed", range(12))
def test_decision_is_welchs_test_at_five_percent(seed):
    rng = np.random.default_rng(seed)
    best = 90 + rng.normal(0, 0.3, 5)
    other = 89.4 + rng.normal(0, rng.uniform(0.2, 2.0), int(rng.integers(3, 6)))
    frame = runs({"forward_That": best, "cross_entropy": other})
    top, second = ("forward_That", "cross_entropy") if best.mean() > other.mean() else (
        "cross_entropy", "forward_That")
    expected = {top} | ({second} if welch_p(best, other) >= 0.05 else set())
    assert bold(frame) == expected


def test_single_runs_use_the_half_point_margin():
    assert bold(runs({"savage": [90.0], "unhinged_bn": [89.6], "cross_entropy": [89.4]})) == {
        "savage", "unhinged_bn"}


def test_oracle_winner_also_marks_the_best_practical_method():
    frame = runs({"forward_T": [97, 97.1, 96.9], "forward_That": [93, 93.2, 92.9],
                  "cross_entropy": [80, 80.5, 80.2]})
    assert bold(frame) == {"forward_T", "forward_That"}


def test_columns_are_judged_separately():
    frame = pd.concat([
        runs({"savage": [90, 90.1, 90.2], "cross_entropy": [80, 80.1, 80.2]}, "none", 0.0),
        runs({"savage": [60, 60.1, 60.2], "cross_entropy": [70, 70.1, 70.2]}, "symmetric", 0.2),
    ])
    marks = results.significance_marks(frame)
    chosen = set(map(tuple, marks.loc[marks["bold"], ["method", "noise"]].to_numpy()))
    assert chosen == {("savage", "none"), ("cross_entropy", "symmetric")}


def test_comparison_table_puts_ours_next_to_the_paper():
    frame = runs({"cross_entropy": [50.0, 52.0], "forward_That": [90.0, 92.0]}, "asymmetric", 0.6)
    table = results.compare_with_paper(frame, "mnist_fc", bold=True)
    assert table.loc["cross_entropy", ("asymmetric 0.6", "ours")] == "51.0 ± 1.0 (2)"  # np.std: ddof 0
    assert table.loc["forward_That", ("asymmetric 0.6", "ours")].startswith("**91.0")
    paper = results.paper_table()
    ce = paper[(paper["experiment"] == "mnist_fc") & (paper["method"] == "cross_entropy")
               & (paper["noise"] == "asymmetric") & (paper["rate"] == 0.6)].iloc[0]
    assert table.loc["cross_entropy", ("asymmetric 0.6", "paper")] == (
        f"{ce['accuracy_mean']:.1f} ± {ce['accuracy_std']:.1f}")
    assert len(table) == 10  # every method of the paper's block has a row
    markdown = results.to_markdown(table)
    assert "asymmetric 0.6: ours" in markdown and "**91.0" in markdown


def test_paper_table_holds_all_of_table_2_with_its_marks():
    paper = results.paper_table()
    left, right = {"mnist_fc", "imdb_embedding", "imdb_lstm"}, {"cifar10_resnet14", "cifar10_resnet32",
                                                               "cifar100_resnet44"}
    assert set(paper["experiment"]) == left | right
    assert len(paper) == 6 * 10 * 4 and not paper.duplicated(["experiment", "method", "noise", "rate"]).any()
    assert set(paper["method"]) == set(results.METHODS)
    assert (paper[paper["experiment"].isin(left)]["runs"] == 5).all()
    single = paper[paper["experiment"].isin(right)]
    assert (single["runs"] == 1).all() and single["accuracy_std"].isna().all()
    savage = paper[(paper["experiment"] == "cifar100_resnet44") & (paper["method"] == "savage")]
    assert list(savage["accuracy_mean"]) == [1.4, 2.0, 1.8, 1.6]
    # a star marks a true-T correction, and only in a column whose best accuracy is a true-T one
    starred = paper[paper["star"] == 1]
    assert set(starred["method"]) == {"backward_T", "forward_T"}
    for (experiment, noise_kind, rate), column in paper.groupby(["experiment", "noise", "rate"]):
        if column["star"].any():
            best = column.loc[column["accuracy_mean"].idxmax(), "method"]
            assert best in {"backward_T", "forward_T"}, (experiment, noise_kind, rate)
    daggers = paper[paper["dagger"] == 1]
    assert set(daggers["method"]) <= {"backward_That", "forward_That"} and set(daggers["noise"]) == {"none"}


def test_paper_table3_is_clothing1m():
    table3 = results.paper_table3()
    assert list(table3["row"]) == list(range(1, 9))
    assert table3.set_index("row").loc[[4, 5, 6, 7, 8], "accuracy"].tolist() == [68.94, 69.13, 69.84, 75.19, 80.38]


def test_status_table_lists_every_cell(tmp_path):
    store = results.ResultStore(tmp_path)
    base = {c: 0 for c in results.COLUMNS} | {"experiment": "digits_fc", "profile": "paper", "device": "cpu"}
    store.append([base | {"method": "savage", "noise": "symmetric", "rate": 0.2, "run": k,
                          "test_accuracy": 90 + k} for k in range(5)]
                 + [base | {"method": "savage", "noise": "none", "rate": 0.0, "run": 0, "test_accuracy": 95}])
    status = report.status_table(tmp_path, data_root=tmp_path)  # an empty data root
    for key, experiment in training.EXPERIMENTS.items():
        # Table 2: 10 methods x 4 settings; Figure 1: 5 methods x the asymmetric rates
        # 0.1 ... 0.4 that are not already Table 2 columns (MNIST-like: 0.1, 0.3, 0.4)
        extra = {0.1, 0.2, 0.3, 0.4} - {r for n, r in experiment.settings if n == "asymmetric"}
        if not experiment.figure:  # CIFAR-10N: its three human label sets, no Figure 1 panel
            assert (status["experiment"] == key).sum() == 10 * 3
            assert set(status.loc[status["experiment"] == key, "where"]) == {"beyond the paper"}
            continue
        assert (status["experiment"] == key).sum() == 10 * 4 + 5 * len(extra)
    digits = status[status["experiment"] == "digits_fc"].set_index(["method", "noise", "rate"])
    assert digits.loc[("savage", "symmetric", 0.2), "status"] == "complete"
    assert digits.loc[("savage", "symmetric", 0.2), "ours"] == f"92.0 ± {np.std(range(5)):.1f}"  # the paper's ddof = 0: 1.4, not 1.6
    assert digits.loc[("savage", "none", 0.0), "status"] == "partial"
    assert digits.loc[("cross_entropy", "none", 0.0), "status"] == "pending"  # bundled data: only unrun
    mnist = status[status["experiment"] == "mnist_fc"]
    assert (mnist["status"] == "needs mnist data").all()
    assert (mnist[mnist["where"] == "Table 2"]["paper"] != "").all()


def test_missing_data_gives_a_note_and_an_empty_block(tmp_path):
    block = report.table_block("mnist", profile="smoke", data_root=tmp_path, results_dir=tmp_path,
                               progress=False)
    assert block.frame.empty and list(block.frame.columns) == list(results.COLUMNS)
    assert block.note.startswith("not run here: needs mnist data")
    assert "train-images-idx3-ubyte" in block.note
    assert "| cross-entropy  | – · 97.9 " in block.markdown  # the paper's column is still shown
    # without training, absent data is named too (not "not run yet")
    shown = report.table_block("mnist", profile="smoke", data_root=tmp_path, results_dir=tmp_path,
                               train_missing=False)
    assert shown.note == block.note


def test_a_jpeg_block_shows_the_papers_cifar10_column_labelled_as_lossless(tmp_path):
    block = report.table_block("cifar10jpg_resnet32", profile="paper", results_dir=tmp_path,
                               train_missing=False, data_root=tmp_path)
    assert block.note.startswith("not run here: needs cifar10jpg data")
    assert "measured on the lossless CIFAR-10; ours on its JPEG copy" in block.markdown
    assert "91.2" in block.markdown  # ResNet-32, forward T, no noise


def test_a_block_with_no_numbers_at_all_shows_only_its_note(tmp_path):
    mine = replace(training.get_experiment("cifar10jpg_resnet32"), key="mine", paper_block=None, paper_note="")
    block = report.table_block(mine, profile="paper", results_dir=tmp_path, train_missing=False,
                               data_root=tmp_path)
    assert block.note.startswith("not run here: needs cifar10jpg data")
    assert "|" not in block.markdown


def test_compact_table_speaks_the_papers_names_and_marks():
    frame = pd.concat([
        runs({"cross_entropy": [52.0, 53.0, 52.5], "forward_T": [93.0, 93.2, 92.8],
              "forward_That": [64.0, 63.0, 65.0]}, "asymmetric", 0.6),
        runs({"cross_entropy": [94.0, 94.2, 94.4], "forward_T": [94.1, 94.3, 94.2]}, "none", 0.0),
    ])
    table = results.compact_table(frame, "mnist_fc", [("none", 0.0), ("asymmetric", 0.6)], runs=5)
    assert list(table.columns) == ["none", "asym. N = 0.6"]
    assert list(table.index) == [results.METHOD_SPECS[m].label for m in results.METHODS]
    assert not set(results.METHODS) & set(table.index)  # no library keys
    # the best at N = 0.6 is the true T: bold and starred; the paper's ⋆ follows its value; 3 of 5 runs
    nbsp = results.NBSP  # values do not break inside; cells may break before the paper's value
    assert table.loc["forward →T", "asym. N = 0.6"] == f"**93.0{nbsp}±{nbsp}0.2**⋆{nbsp}(3) · 97.3⋆"
    assert table.loc["cross-entropy", "asym. N = 0.6"] == f"52.5{nbsp}±{nbsp}0.4{nbsp}(3) · 53.0"
    assert table.loc["Savage", "none"] == "– · 97.3"
    assert results.compact_table(frame, None, [("none", 0.0)]).loc["Savage", "none"] == "–"
    assert "over 5 runs" in results.compact_legend(5, True) and "one run" in results.compact_legend(1, True)


def test_format_accuracy_shows_no_spread_for_a_single_run():
    assert results.format_accuracy(82.44, 0.0, 1) == "82.4 (1)"
    assert results.format_accuracy(82.44, 0.0, 1, with_runs=False) == "82.4"
    assert results.format_accuracy(93.04, 0.26, 5) == "93.0 ± 0.3 (5)"
    assert results.format_accuracy(97.9, 0.04) == "97.9 ± 0.0"  # the paper's entries carry no count


def test_variants_table_groups_one_cell_by_profile(tmp_path):
    store = ResultStore(tmp_path)
    base = {c: 0 for c in results.COLUMNS} | {"experiment": "imdb_embedding", "method": "cross_entropy",
                                              "noise": "none", "rate": 0.0, "device": "cpu", "precision": "fp32"}
    validation = [(float("nan"), float("nan")), (0.5, 80.0), (0.7, 70.0)]  # run 0 stored before they were kept
    store.append([base | {"run": k, "profile": "paper", "test_accuracy": 84.0 + k, "epochs": 50,
                          "selected_epoch": 12 + 3 * k, "val_loss": validation[k][0],
                          "val_accuracy": validation[k][1]} for k in range(3)]
                 + [base | {"run": 0, "profile": "paper:output_init=he_normal", "test_accuracy": 86.5,
                            "epochs": 50, "selected_epoch": 7, "val_loss": float("nan"),
                            "val_accuracy": float("nan")}]
                 + [base | {"run": 0, "profile": "paper", "noise": "symmetric", "rate": 0.1, "test_accuracy": 1.0,
                            "epochs": 50, "selected_epoch": 40}])
    table = report.variants_table(tmp_path, "imdb_embedding")
    assert "`paper`" in table and "`paper:output_init=he_normal`" in table
    assert "85.0 ± 0.8" in table and "86.5" in table
    # runs, epochs, the selected epochs' range: the symmetric run is another cell
    assert re.search(r"`paper`\s*\|\s*3\s*\|\s*50\s*\|\s*12–18\s*\|", table)
    assert re.search(r"`paper:output_init=he_normal`\s*\|\s*1\s*\|\s*50\s*\|\s*7\s*\|", table)
    # the validation loss and accuracy: means of the recorded runs, saying how many; "–" when none
    assert re.search(r"`paper`\s*\|[^\n]*\|\s*0\.6000 \(2 of 3\)\s*\|\s*75\.00 \(2 of 3\)\s*\|", table)
    assert re.search(r"`paper:output_init=he_normal`\s*\|[^\n]*\|\s*7\s*\|\s*–\s*\|\s*–\s*\|", table)
    assert "No run" in report.variants_table(tmp_path, "imdb_embedding", "savage")


def test_variant_comparison_sets_two_blocks_side_by_side(tmp_path):
    store = ResultStore(tmp_path)
    base = {c: 0 for c in results.COLUMNS} | {"experiment": "imdb_embedding", "method": "cross_entropy",
                                              "device": "cpu", "precision": "fp32"}
    assert "no cell stored under both" in report.variant_comparison(tmp_path, "imdb_embedding", "paper", "paper:x=1")
    store.append([base | {"run": k, "seed": k, "profile": profile, "noise": noise, "rate": rate,
                          "test_accuracy": accuracies[k]}
                  for k in range(3)
                  for profile, noise, rate, accuracies in (
                      ("paper", "none", 0.0, [86.0, 87.0, 88.0]), ("paper:x=1", "none", 0.0, [80.0, 81.0, 82.0]),
                      ("paper", "asymmetric", 0.4, [70.0, 71.0, 72.0]),
                      ("paper:x=1", "asymmetric", 0.4, [70.4, 70.4, 72.5]))])
    text = report.variant_comparison(tmp_path, "imdb_embedding", "paper", "paper:x=1")
    paper = results.paper_table()
    published = paper[(paper["experiment"] == "imdb_embedding") & (paper["method"] == "cross_entropy")
                      & (paper["noise"] == "none")]["accuracy_mean"].item()
    assert f"87.0 · 81.0 · {published:.1f}" in text  # means of 86, 87, 88 and 80, 81, 82, then the paper
    assert "asym. N = 0.4" in text and "71.0 · 71.1 ·" in text
    # paired by run: 6 points every run is separated; -0.4, +0.6, -0.5 is not
    assert "2 cells compared (2 by a paired t-test over the runs of the same seed): 1 differs at p < 0.05" in text
    assert "Mean difference `paper` − `paper:x=1` +2.95 points" in text
    row = next(line for line in text.splitlines() if line.startswith("| Savage"))
    assert set(row.replace("|", "").split()) == {"Savage", "–"}


def cell(accuracies, method="savage", seeds=None, order=None):
    """Rows of one cell (none, 0.0): run k with ``seeds[k]`` (default k), listed in ``order``."""
    seeds = range(len(accuracies)) if seeds is None else seeds
    frame = pd.DataFrame({"method": method, "noise": "none", "rate": 0.0, "run": range(len(accuracies)),
                          "seed": list(seeds), "test_accuracy": accuracies})
    return frame.iloc[list(order)] if order is not None else frame


def paired_interval(a, b, level=0.95):
    """Mean of a − b ± Student's t quantile × standard error, written out."""
    d = np.asarray(a, float) - np.asarray(b, float)
    half = stats.t.ppf(0.5 + level / 2, len(d) - 1) * d.std(ddof=1) / math.sqrt(len(d))
    return d.mean() - half, d.mean() + half


def test_compare_runs_pairs_runs_of_the_same_seed():
    """A constant small shift over runs that vary a lot: the paired test separates
    it, Welch's does not."""
    b = [80.0, 85.0, 90.0, 95.0, 88.0]
    a = [80.3, 85.35, 90.25, 95.3, 88.32]
    row = results.compare_runs(cell(a), cell(b, order=[3, 0, 4, 1, 2])).iloc[0]  # pairs by run, not row order
    assert row["test"] == "paired" and row["pairs"] == 5
    assert row["p_value"] == pytest.approx(stats.ttest_rel(a, b).pvalue) and row["p_value"] < 1e-4
    assert welch_p(a, b) > 0.9  # unpaired, the shift drowns in the spread between runs
    assert row["separated"]
    assert row["difference"] == pytest.approx(0.304)
    assert (row["low"], row["high"]) == pytest.approx(paired_interval(a, b))
    assert row["low"] > 0


def test_compare_runs_paired_does_not_separate_what_only_welch_would():
    """Runs that move in opposite directions: the differences 1, 3, 5 vary too
    much for the paired test, while Welch's test (wrongly unpaired) separates."""
    a, b = [50.0, 51.0, 52.0], [49.0, 48.0, 47.0]
    row = results.compare_runs(cell(a), cell(b, order=[2, 1, 0])).iloc[0]
    assert row["test"] == "paired" and row["difference"] == pytest.approx(3.0)
    assert row["p_value"] == pytest.approx(stats.ttest_rel(a, b).pvalue) and row["p_value"] > 0.05
    assert welch_p(a, b) < 0.05
    assert not row["separated"]
    assert (row["low"], row["high"]) == pytest.approx(paired_interval(a, b))
    assert row["low"] < 0 < row["high"]  # what the runs leave possible, not a claim of agreement


def test_compare_runs_falls_back_to_welch_when_runs_do_not_pair_up():
    a, b = [50.0, 51.0, 52.0], [49.0, 48.0, 47.0]
    unpaired = results.compare_runs(cell(a), cell(b, seeds=[10, 11, 12]))  # other seeds: other noisy labels
    one_pair = results.compare_runs(cell(a), cell(b, seeds=[0, 11, 12]))  # one pair is not enough
    no_keys = results.compare_runs(cell(a).drop(columns=["run", "seed"]), cell(b).drop(columns=["run", "seed"]))
    welch = stats.ttest_ind(a, b, equal_var=False)
    for table in (unpaired, one_pair, no_keys):
        row = table.iloc[0]
        assert row["test"] == "Welch" and row["difference"] == pytest.approx(3.0)
        assert row["p_value"] == pytest.approx(welch_p(a, b)) and row["separated"]
        assert (row["low"], row["high"]) == pytest.approx(tuple(welch.confidence_interval(0.95)))
    assert list(one_pair["pairs"]) == [1] and list(unpaired["pairs"]) == [0]
    single = results.compare_runs(cell(a), cell([49.0])).iloc[0]
    assert single["test"] == "none" and math.isnan(single["p_value"]) and not single["separated"]


def test_compare_runs_without_any_spread():
    same = results.compare_runs(cell([90.0, 91.0, 92.0]), cell([90.0, 91.0, 92.0])).iloc[0]
    assert math.isnan(same["p_value"]) and not same["separated"] and (same["low"], same["high"]) == (0.0, 0.0)
    shifted = results.compare_runs(cell([90.5, 91.5, 92.5]), cell([90.0, 91.0, 92.0])).iloc[0]
    assert shifted["p_value"] == 0.0 and shifted["separated"] and (shifted["low"], shifted["high"]) == (0.5, 0.5)


def test_compare_runs_matches_cells_and_keeps_every_run_in_the_means():
    a = pd.concat([cell([90.0, 91.0, 92.0]), cell([50.0, 51.0, 52.0], method="forward_T")])
    b = pd.concat([cell([90.5, 91.5, 91.0, 95.0], seeds=[0, 1, 2, 9]), cell([10.0], method="backward_T")])
    table = results.compare_runs(a, b)
    assert list(table["method"]) == ["savage"]  # forward_T and backward_T are on one side only
    row = table.iloc[0]
    assert (row["runs_a"], row["runs_b"], row["pairs"]) == (3, 4, 3)
    assert row["mean_b"] == pytest.approx(92.0)  # every run of the cell
    assert row["difference"] == pytest.approx(0.0)  # the three pairs: -0.5, -0.5, +1.0
    assert row["p_value"] == pytest.approx(stats.ttest_rel([90, 91, 92], [90.5, 91.5, 91.0]).pvalue)


def test_comparison_summary_states_intervals_not_agreement():
    table = pd.concat([results.compare_runs(cell(np.add(b, shift), method=m), cell(b, method=m))
                       for m, b, shift in (("savage", [80.0, 85.0, 90.0], [0.3, 0.35, 0.25]),
                                           ("forward_T", [50.0, 51.0, 52.0], [0.0, -1.0, 1.5]),
                                           ("cross_entropy", [70.0, 71.0, 72.0], [-0.2, -0.1, 0.1]))])
    text = results.comparison_summary(table, "bf16", "fp32")
    differences = table["difference"].to_numpy()
    low, high = stats.ttest_1samp(differences, 0).confidence_interval(0.95)
    assert text.startswith("3 cells compared (3 by a paired t-test over the runs of the same seed): "
                           "1 differs at p < 0.05")
    assert f"Mean difference bf16 − fp32 {differences.mean():+.2f} points" in text
    assert f"95 % interval over the cells [{low:+.2f}, {high:+.2f}]" in text
    worst = table.iloc[0]  # Savage: +0.30
    assert f"the largest, +0.30, for Savage at none (95 % interval [{worst['low']:+.2f}, {worst['high']:+.2f}]" in text
    assert "agree" not in text and "within" not in text


@pytest.mark.parametrize("classes", [10, 14])
def test_transition_heatmaps_stay_readable_with_many_classes(classes):
    import matplotlib.pyplot as plt
    T = np.full((classes, classes), 0.2 / (classes - 1)) + 0.8 * np.eye(classes) - 0.2 / (classes - 1) * np.eye(classes)
    fig = report.plot_transition_pair(T, T, ("T", "T̂"), "pair", class_names=tuple(f"c{k}" for k in range(classes)))
    try:
        positions = [ax.get_position() for ax in fig.axes]
        texts = {t.get_text() for t in fig.axes[0].texts}
        if classes > 10:  # whole percent, panels stacked, so a cell keeps its width on the page
            assert "80" in texts and "2" in texts and fig.axes[0].get_title().endswith("(%)")
            assert positions[0].y0 > positions[1].y1
        else:
            assert "0.80" in texts and "0.02" in texts
            assert positions[0].x1 < positions[1].x0
    finally:
        plt.close(fig)


def test_provenance_counts_runs_per_device_and_precision_and_training_time():
    frame = pd.DataFrame({"device": ["cpu: x86_64, 1 thread", "cuda: H200", "cuda: H200", "cuda: H200"],
                          "precision": ["fp32", "bf16", "bf16", "fp32"],
                          "wall_seconds": [60.0, 30.0, 30.0, 60.0]})
    assert report.provenance(frame) == ("4 runs: 1 on cpu: x86_64, 1 thread (fp32) and 2 on cuda: H200 (bf16) "
                                        "and 1 on cuda: H200 (fp32); 3.0 min of training in all.")
    assert report.provenance(frame.iloc[1:3]) == "2 runs on cuda: H200 (bf16); 1.0 min of training in all."
    assert report.provenance(frame.iloc[:1]) == "1 run on cpu: x86_64, 1 thread (fp32); 1.0 min of training in all."
    assert report.provenance(frame.drop(columns="precision").iloc[1:3]) == (
        "2 runs on cuda: H200; 1.0 min of training in all.")  # frames without the column: devices only
    assert report.provenance(frame.iloc[:0]) == ""


def test_glue_numbers_hands_plain_numbers_to_the_prose(monkeypatch):
    import myst_nb
    from myst_nb.core.variables import format_plain_text

    glued = {}
    monkeypatch.setattr(myst_nb, "glue", lambda name, value, display: glued.setdefault(name, (value, display)))
    report.glue_numbers(error=np.float64(0.0123), runs=np.int64(5), largest=torch.tensor(2.5), label="digits", n=3)
    assert glued == {"error": (0.0123, False), "runs": (5, False), "largest": (2.5, False),
                     "label": ("digits", False), "n": (3, False)}
    assert [type(glued[k][0]) for k in ("error", "runs", "largest")] == [float, int, float]
    # what the book's renderer then writes for {glue:text}`error:.1e` and {glue:text}`label`
    assert format_plain_text(repr(glued["error"][0]), ".1e") == "1.2e-02"
    assert format_plain_text(repr(glued["label"][0]), "s") == "digits"
    with pytest.raises(ValueError):  # a NumPy scalar's own text cannot be formatted as a number
        format_plain_text(repr(np.float64(0.0123)), ".1e")


def test_recipe_gap_splits_the_clean_gap_and_compares_the_recipes_by_seed(tmp_path):
    """Means, gaps and the JPEG penalty recomputed by hand; the recipe difference
    paired by seed (a constant shift with seed-to-seed spread: the paired test
    sees it exactly)."""
    store = ResultStore(tmp_path)
    base = {c: 0 for c in results.COLUMNS} | {"method": "cross_entropy", "noise": "none", "rate": 0.0,
                                              "device": "cpu", "precision": "fp32", "profile": "paper"}
    library = [(85.0, 0.60, 86.0), (86.0, 0.55, 86.5), (84.0, 0.65, 85.0)]
    released = [(86.0, 0.58, 86.4), (87.2, 0.53, 87.3), (85.1, 0.63, 85.2)]  # val loss 0.02 lower in every pair
    store.append([base | {"experiment": "cifar10jpg_resnet14", "run": k, "seed": k, "test_accuracy": a,
                          "val_loss": v, "val_accuracy": va, "profile": "paper:recipe=library"}
                  for k, (a, v, va) in enumerate(library)]
                 + [base | {"experiment": "cifar10jpg_resnet14", "run": k, "seed": k, "test_accuracy": a,
                            "val_loss": v, "val_accuracy": va} for k, (a, v, va) in enumerate(released)]
                 + [base | {"experiment": key, "run": k, "seed": k, "test_accuracy": a}
                    for key, accuracies in (("cifar10first4000_lossless_resnet14", (67.0, 68.0)),
                                            ("cifar10first4000_jpeg_resnet14", (65.0, 65.5)))
                    for k, a in enumerate(accuracies)])
    text, numbers = report.recipe_gap(tmp_path)
    assert numbers["paper_accuracy"] == 87.8 and numbers["library_runs"] == numbers["released_runs"] == 3
    assert numbers["library_gap"] == pytest.approx(87.8 - 85.0)
    assert numbers["jpeg_penalty"] == pytest.approx(67.5 - 65.25)
    jpeg_se = np.sqrt(np.var([67.0, 68.0], ddof=1) / 2 + np.var([65.0, 65.5], ddof=1) / 2)
    assert numbers["jpeg_penalty_se"] == pytest.approx(jpeg_se)
    assert numbers["released_left"] == pytest.approx(87.8 - np.mean([86.0, 87.2, 85.1]) - 2.25)
    assert numbers["released_minus_library_val_loss"] == pytest.approx(-0.02)
    assert numbers["released_minus_library_val_accuracy"] == pytest.approx(np.mean([0.4, 0.8, 0.2]))
    d = np.array([1.0, 1.2, 1.1])
    assert numbers["released_minus_library_test_accuracy"] == pytest.approx(d.mean())
    p = stats.ttest_rel([a for a, _, _ in released], [a for a, _, _ in library]).pvalue
    assert numbers["released_minus_library_test_accuracy_p"] == pytest.approx(p)
    assert f"p = {p:.2g}" in text and "(paired, 3 pairs)" in text
    assert "85.00 ± 1.00" in text  # mean ± std (ddof 1) of the library's runs
    # with one run of each, and no validation loss recorded: no test, and it says why
    single = tmp_path / "single"
    ResultStore(single).append([base | {"experiment": "cifar10jpg_resnet14", "test_accuracy": 85.95,
                                        "val_loss": float("nan"), "profile": "paper:recipe=library"}])
    text, numbers = report.recipe_gap(single)
    assert numbers["released_runs"] == 0 and np.isnan(numbers["released_gap"])
    assert "not stored yet (0 of 3 runs)" in text and "needs at least two runs of each" in text


def test_unfinished_groups_lists_the_committed_checkpoints(tmp_path):
    folder = tmp_path / training.CHECKPOINT_FOLDER
    folder.mkdir()
    training.checkpoint.save_checkpoint(folder / "cifar10jpg_resnet14-cross_entropy-0123456789abcdef.pt",
                                        {"epoch": 7, "seconds": 600.0, "epochs": 120, "description": "a group"})
    training.checkpoint.save_checkpoint(folder / "mnist_fc-forward_That-fedcba9876543210.pt",
                                        {"epoch": 3, "seconds": 60.0})  # written before the totals were kept
    table = report.unfinished_groups(tmp_path)
    assert table[["experiment", "method", "epoch"]].values.tolist() == [
        ["cifar10jpg_resnet14", "cross_entropy", 7], ["mnist_fc", "forward_That", 3]]
    assert table["minutes"].tolist() == [10.0, 1.0]
    assert table["epochs"].iloc[0] == 120 and np.isnan(table["epochs"].iloc[1])
    assert report.unfinished_groups(tmp_path / "none").empty
