"""The ``losscorrection`` command line: runs, sweeps, tables and clear errors."""

import subprocess
import sys
from pathlib import Path

import pytest

from losscorrection import cli, training
from losscorrection.atomic import locked
from losscorrection.training import runner
from losscorrection.results import ResultStore


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "losscorrection.cli", *args], capture_output=True, text=True, timeout=300
    )


@pytest.mark.parametrize(
    "args, message",
    [
        (["run", "cifar1000", "--method", "forward_T", "--noise", "none"], "unknown experiment"),
        (["run", "digits_fc", "--method", "forward", "--noise", "none"], "invalid choice: 'forward'"),
        (["run", "digits_fc", "--method", "forward_T", "--noise", "symmetric", "--rate", "1.5"], r"[0, 1)"),
        (["run", "digits_fc", "--method", "forward_T", "--noise", "salt"], "invalid choice: 'salt'"),
        (["sweep", "digits_fc", "--profile", "huge"], "invalid choice: 'huge'"),
        (["table", "nothing"], "unknown experiment"),
        (["frobnicate"], "invalid choice"),
        (["sweep", "digits_fc", "--max-group", "0"], "--max-group must be at least 1"),
        (["sweep", "digits_fc", "--figure", "--with-figure"], "not allowed with argument"),
        (["sweep", "digits_fc", "--methods", "forward"], "invalid choice: 'forward'"),
        (["sweep", "digits_fc", "--jobs", "0"], "--jobs and --threads must be at least 1"),
        (["sweep", "digits_fc", "--model-option", "dropout"], "--model-option takes KEY=VALUE"),
        (["sweep", "cifar10n_resnet14", "--figure"], "cifar10n_resnet14 has no Figure 1 panel"),
        (["run", "cifar10n_resnet14", "--method", "forward_T", "--noise", "aggre", "--rate", "0.1"], "has no rate"),
        (["sweep", "digits_fc", "--recipe", "keras"], "invalid choice: 'keras'"),
        (["run", "digits_fc", "--method", "cross_entropy", "--noise", "none", "--recipe", "released"],
         "recipe 'released' is for the image experiments (cifar10_resnet14"),
    ],
)
def test_bad_arguments_give_one_line_and_exit_2(capsys, args, message):
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    assert message in err
    assert len(err.strip().splitlines()) == 1
    assert "Traceback" not in err


def test_missing_data_names_the_file(tmp_path):
    result = run_cli("run", "mnist_fc", "--method", "cross_entropy", "--noise", "none",
                     "--profile", "smoke", "--device", "cpu", "--data-root", str(tmp_path),
                     "--results-dir", str(tmp_path / "results"))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "train-images-idx3-ubyte" in result.stderr or "mnist.npz" in result.stderr


def test_run_then_table(tmp_path, capsys):
    results = str(tmp_path)
    args = ["run", "digits", "--method", "forward_That", "--noise", "asymmetric", "--rate", "0.6",
            "--runs", "2", "--profile", "smoke", "--device", "cpu", "--results-dir", results, "--quiet"]
    assert cli.main(args) == 0
    frame = ResultStore(results).load("digits_fc")
    # forward_That needs stage 1 (cross-entropy): both are stored, two runs each
    assert sorted(frame["method"]) == ["cross_entropy"] * 2 + ["forward_That"] * 2
    assert "2 new runs of 2 requested (0 already stored, plus 2 stage-1 runs for T̂)" in capsys.readouterr().out
    assert cli.main(args) == 0  # already stored: nothing new
    assert "0 new runs of 2 requested (2 already stored)" in capsys.readouterr().out
    assert cli.main(["table", "digits", "--results-dir", results, "--profile", "smoke"]) == 0
    out = capsys.readouterr().out
    assert "measured on MNIST; ours on 1,294 8x8 digits" in out
    assert "forward_That" in out and "asymmetric 0.6" in out
    assert "53.0 ± 0.6" in out  # the paper's cross-entropy at asymmetric 0.6 on MNIST


def test_a_time_limit_stops_with_exit_3_and_the_same_command_continues(tmp_path, capsys):
    args = ["run", "digits", "--method", "cross_entropy", "--noise", "none", "--profile", "smoke",
            "--device", "cpu", "--results-dir", str(tmp_path), "--quiet"]
    assert cli.main([*args, "--time-limit", "0"]) == 3  # no epoch fits in no time
    err = capsys.readouterr().err
    assert "time limit reached before epoch 1" in err and "re-run to continue" in err
    assert len(err.strip().splitlines()) == 1
    assert not ResultStore(str(tmp_path)).path("digits_fc").exists()
    assert cli.main([*args, "--time-limit", "60"]) == 0
    assert "1 new runs of 1 requested" in capsys.readouterr().out
    assert cli.main([*args, "--time-limit", "-1"]) == 2


def test_table_without_results_prints_the_papers_columns(tmp_path, capsys):
    for key, published in (("cifar10_resnet14", "87.8"), ("cifar100_resnet44", "68.5")):
        assert cli.main(["table", key, "--results-dir", str(tmp_path)]) == 0
        out = capsys.readouterr().out
        assert "no paper-profile results yet" in out and published in out


def test_console_script_is_installed():
    script = Path(sys.executable).parent / "losscorrection"
    result = subprocess.run([str(script), "list"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    assert "mnist10k_fc" in result.stdout and "cifar10jpg_resnet14" in result.stdout


def test_sweep_with_figure_for_some_methods_in_bounded_groups(tmp_path, monkeypatch, capsys):
    group_sizes = []
    train_group = training.train_group

    def recording(stack, method, group_data, y_train, *args, **kwargs):
        group_sizes.append((method, y_train.shape[0]))
        return train_group(stack, method, group_data, y_train, *args, **kwargs)

    monkeypatch.setattr(runner, "train_group", recording)
    args = ["sweep", "digits", "--with-figure", "--methods", "forward_T", "--runs", "1", "--max-group", "3",
            "--profile", "smoke", "--device", "cpu", "--results-dir", str(tmp_path), "--quiet"]
    assert cli.main(args) == 0
    frame = ResultStore(tmp_path).load("digits_fc")
    # the 4 Table 2 settings and the Figure 1 rates 0.1, 0.3, 0.4 (0 and 0.2 are Table 2 cells)
    assert sorted(zip(frame["noise"], frame["rate"])) == [
        ("asymmetric", 0.1), ("asymmetric", 0.2), ("asymmetric", 0.3), ("asymmetric", 0.4),
        ("asymmetric", 0.6), ("none", 0.0), ("symmetric", 0.2)]
    assert set(frame["method"]) == {"forward_T"}  # the true T needs no stage 1
    assert group_sizes == [("forward_T", 3), ("forward_T", 3), ("forward_T", 1)]
    assert "7 new runs of 7 requested" in capsys.readouterr().out


def test_split_by_setting_keeps_each_setting_in_one_process():
    cells = list(dict.fromkeys(training.table_cells(training.get_experiment("digits_fc"), runs=3)
                               + training.figure_cells(2)))
    parts = cli.split_by_setting(cells, 3)
    together = [c for part in parts for c in part]
    assert len(parts) == 3 and len(together) == len(cells) and set(together) == set(cells)
    settings = [{(c.noise, c.rate) for c in part} for part in parts]
    assert all(not (a & b) for i, a in enumerate(settings) for b in settings[i + 1:])
    sizes = sorted(len(p) for p in parts)
    assert sizes[-1] - sizes[0] <= 30  # one setting of 10 methods x 3 runs at most apart
    one_setting = [c for c in cells if c.noise == "none"]
    assert cli.split_by_setting(one_setting, 4) == [one_setting]  # one setting: one process


def test_sweep_in_two_processes_stores_every_run_once(tmp_path, capsys):
    args = ["sweep", "digits", "--methods", "cross_entropy", "forward_That", "--runs", "1", "--jobs", "2",
            "--profile", "smoke", "--device", "cpu", "--results-dir", str(tmp_path), "--quiet"]
    assert cli.main(args) == 0
    frame = ResultStore(tmp_path).load("digits_fc")
    assert len(frame) == 8 and not frame.duplicated(["method", "noise", "rate", "run"]).any()
    assert all(d.endswith(", 1 thread") for d in frame["device"])  # the 2 cores shared by 2 processes
    assert "8 new runs of 8 requested (0 already stored) in" in capsys.readouterr().out


def test_study_jpeg_penalty_prints_both_versions_and_the_gap(tmp_path, capsys):
    import test_experiments
    test_experiments._lossless_subset_files(tmp_path / "data", per_class=8)
    args = ["study", "jpeg-penalty", "--runs", "1", "--profile", "smoke", "--epochs", "1", "--lr", "0.01",
            "--device", "cpu", "--data-root", str(tmp_path / "data"), "--results-dir", str(tmp_path / "r"), "--quiet"]
    assert cli.main(args) == 0
    out = capsys.readouterr().out
    assert "(smoke:lr=0.01:epochs=1)" in out and "lossless" in out and "JPEG penalty:" in out
    assert cli.main(["study", "jpeg-penalty", "--runs", "0"]) == 2
    assert cli.main(["study", "jpeg-penalty", "--threads", "0"]) == 2


def test_a_model_option_is_trained_and_stored_under_its_own_label(tmp_path, monkeypatch):
    args = ["run", "digits", "--method", "cross_entropy", "--noise", "none", "--runs", "1", "--profile", "smoke",
            "--model-option", "dropout=0.25", "--device", "cpu", "--results-dir", str(tmp_path), "--quiet"]
    built = []
    build = runner.models.build_model

    def recording(name, num_classes, **kwargs):
        built.append(kwargs.get("dropout"))
        return build(name, num_classes, **kwargs)

    monkeypatch.setattr(runner.models, "build_model", recording)
    assert cli.main(args) == 0
    assert built == [0.25]
    assert list(ResultStore(tmp_path).load("digits_fc")["profile"]) == ["smoke:dropout=0.25"]


def test_weight_decay_scope_without_weight_decay_is_one_line_of_error(tmp_path, capsys):
    args = ["run", "digits", "--method", "cross_entropy", "--noise", "none", "--profile", "smoke",
            "--device", "cpu", "--results-dir", str(tmp_path), "--quiet", "--weight-decay-scope", "all"]
    assert cli.main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "digits_fc trains without weight decay" in err[0]
    assert not ResultStore(tmp_path).path("digits_fc").exists()


def test_a_group_another_process_is_training_is_one_line_of_error(tmp_path, capsys, group_checkpoint_paths):
    paths = group_checkpoint_paths
    args = ["run", "digits", "--method", "cross_entropy", "--noise", "none", "--profile", "smoke",
            "--device", "cpu", "--results-dir", str(tmp_path), "--quiet"]
    assert cli.main(args) == 0
    ResultStore(tmp_path).path("digits_fc").unlink()
    capsys.readouterr()
    with locked(paths[0]):
        assert cli.main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "another process is training digits_fc cross_entropy (none)" in err[0]


def test_the_recipe_option_reaches_the_trainer(tmp_path, monkeypatch):
    import pandas as pd

    calls = []

    def recording(experiment, cells, **options):
        calls.append(options["recipe"])
        return pd.DataFrame()

    monkeypatch.setattr(training, "run_cells", recording)
    common = ["run", "cifar10jpg_resnet14", "--method", "cross_entropy", "--noise", "none", "--runs", "3",
              "--results-dir", str(tmp_path), "--quiet"]
    assert cli.main([*common, "--recipe", "library"]) == 0
    assert cli.main(common) == 0
    assert calls == ["library", None]  # None: the experiment's own
