"""An unfinished group continues in a fresh clone of the repository: a sweep
stopped by its time limit leaves its training state under
``results/checkpoints/``, which the project's ignore rules let git track; a
clone of the commit continues the group and stores the rows a sweep that was
never stopped stores."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from losscorrection import training
from losscorrection.results import ResultStore
from losscorrection.training import loop, runner

ROOT = Path(__file__).resolve().parents[1]
CELLS = [training.Cell("cross_entropy", "none", 0.0, 0), training.Cell("forward_That", "asymmetric", 0.2, 0)]
SAME = ["method", "noise", "rate", "run", "test_accuracy", "selected_epoch", "val_loss", "val_accuracy", "T_error"]


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=test", "-c", "user.email=test@example.org", *args],
                          cwd=cwd, capture_output=True, text=True, check=True).stdout


def sweep(results: Path, **kwargs) -> pd.DataFrame:
    return training.run_cells("digits_fc", CELLS, profile="smoke", device="cpu", precision="fp32",
                              results_dir=results, progress=False, **kwargs)


@pytest.fixture()
def counting_clock(monkeypatch):
    """``time.perf_counter`` of the runner and the loop: one second per call,
    so that a time limit stops the first group after its first epoch."""
    clock = {"now": 0.0}

    def perf_counter() -> float:
        clock["now"] += 1.0
        return clock["now"]

    fake = SimpleNamespace(perf_counter=perf_counter)
    monkeypatch.setattr(loop, "time", fake)
    monkeypatch.setattr(runner, "time", fake)
    return clock


def test_a_group_stopped_on_time_continues_in_a_fresh_clone(tmp_path, monkeypatch, counting_clock):
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    straight = sweep(tmp_path / "straight" / "results")

    origin = tmp_path / "origin"
    origin.mkdir()
    git(origin, "init", "-q")
    shutil.copy(ROOT / ".gitignore", origin / ".gitignore")  # the project's own ignore rules
    with pytest.raises(training.TimeLimitReached, match="stopped after epoch 1 of 2"):
        sweep(origin / "results", time_limit=3.5)
    assert ResultStore(origin / "results").load("digits_fc").empty  # nothing stored yet
    git(origin, "add", "-A")
    git(origin, "commit", "-q", "-m", "an unfinished group")
    committed = [p for p in git(origin, "ls-files").splitlines() if p.startswith("results/")]
    assert len(committed) == 1 and committed[0].startswith(f"results/{training.CHECKPOINT_FOLDER}/")
    assert committed[0].endswith(".pt")  # and no lock file

    git(tmp_path, "clone", "-q", str(origin), "clone")
    shutil.rmtree(origin)  # nothing of the first folder is needed
    loaded = []
    load = loop.load_checkpoint
    monkeypatch.setattr(loop, "load_checkpoint", lambda path: loaded.append(state := load(path)) or state)
    resumed = sweep(tmp_path / "clone" / "results")

    assert [s["epoch"] for s in loaded if s is not None] == [1]  # the stage-1 group continued from epoch 1
    pd.testing.assert_frame_equal(resumed[SAME].reset_index(drop=True), straight[SAME].reset_index(drop=True))
    in_clone = ResultStore(tmp_path / "clone" / "results").load_transitions("digits_fc")
    for key, T_hat in ResultStore(tmp_path / "straight" / "results").load_transitions("digits_fc").items():
        np.testing.assert_array_equal(in_clone[key], T_hat)
    assert not list((tmp_path / "clone" / "results" / training.CHECKPOINT_FOLDER).glob("*.pt"))  # removed once stored


def test_a_checkpoint_is_read_without_running_code(tmp_path):
    """A committed checkpoint comes from someone else's clone: it is read as
    tensors and containers only, and one carrying code is refused in one line."""

    class Payload:
        def __reduce__(self):
            return (print, ("this must never run",))

    path = tmp_path / "group.pt"
    torch.save({"epoch": 3, "weights": torch.ones(2)}, path)
    assert training.checkpoint.load_checkpoint(path)["epoch"] == 3
    torch.save({"epoch": 3, "hook": Payload()}, path)
    with pytest.raises(ValueError, match=r"checkpoint .*group\.pt cannot be read .*delete it"):
        training.checkpoint.load_checkpoint(path)
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="cannot be read"):
        training.checkpoint.load_checkpoint(path)
