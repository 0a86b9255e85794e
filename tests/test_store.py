"""The results store under concurrent writers: two real processes appending to
the same files lose nothing."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from losscorrection.store import COLUMNS, ResultStore, git_commit

WRITER = textwrap.dedent(
    """
    import sys
    import numpy as np
    from losscorrection.store import COLUMNS, ResultStore

    root, writer, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    store = ResultStore(root)
    for k in range(count):
        row = {c: 0 for c in COLUMNS} | {"experiment": "shared", "method": "cross_entropy",
                                         "noise": "none", "rate": 0.0, "run": writer * count + k,
                                         "profile": "paper"}
        store.append([row])
        if k % 4 == 0:
            store.put_transitions("shared", [("none", 0.0, writer * count + k, "paper", np.eye(3))])
    """
)


def test_two_processes_appending_at_once_lose_no_row(tmp_path):
    count = 200
    writers = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path), str(w), str(count)]) for w in range(2)
    ]
    assert [w.wait(timeout=300) for w in writers] == [0, 0]
    store = ResultStore(tmp_path)
    frame = store.load("shared")
    assert len(frame) == 2 * count
    assert sorted(frame["run"]) == list(range(2 * count))
    assert len(store.load_transitions("shared")) == 2 * count // 4
    assert not list(tmp_path.glob("*.tmp"))


def test_rows_keep_the_column_order(tmp_path):
    store = ResultStore(tmp_path)
    row = {c: 1 for c in reversed(COLUMNS)} | {"experiment": "x"}
    store.append([row])
    assert tuple(store.load("x").columns) == COLUMNS


def test_the_commit_is_read_from_the_package_source_not_the_working_folder(tmp_path, monkeypatch):
    """Run from a folder outside any git tree, the commit of the library's own
    source tree is still recorded."""
    monkeypatch.chdir(tmp_path)
    commit = git_commit()
    repository = Path(__file__).resolve().parents[1]
    expected = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=repository, capture_output=True,
                              text=True).stdout.strip()
    assert commit.split("+")[0] == expected
    assert git_commit(tmp_path) == "unknown"


def test_load_all_reads_every_experiment_of_the_store(tmp_path):
    store = ResultStore(tmp_path)
    assert store.load_all().empty and tuple(store.load_all().columns) == COLUMNS
    for experiment, runs in (("first", 2), ("second", 3)):
        store.append([{c: 0 for c in COLUMNS} | {"experiment": experiment, "run": k} for k in range(runs)])
    (tmp_path / "notes.json").write_text("{}")  # not a table of runs
    frame = store.load_all()
    assert tuple(frame.columns) == COLUMNS
    assert sorted(zip(frame["experiment"], frame["run"])) == [("first", 0), ("first", 1), ("second", 0),
                                                            ("second", 1), ("second", 2)]
