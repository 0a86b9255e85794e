"""The results store under concurrent writers: two real processes appending to
the same files lose nothing."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np

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


def test_a_stored_transition_matrix_keeps_every_bit(tmp_path):
    """T̂ entries needing 17 significant digits come back exactly, next to
    matrices written earlier at 8 decimals, which stay readable."""
    store = ResultStore(tmp_path)
    (tmp_path / "x.transitions.json").write_text('{"none/0/0/paper": [[0.12345679, 0.87654321], [0.5, 0.5]]}')
    rng = np.random.default_rng(3)
    T_hat = rng.dirichlet(np.ones(4), size=4)
    T_hat[0, :2] = [0.1 + 0.2, 1 / 3]  # 0.30000000000000004 and 0.3333333333333333
    assert float(f"{T_hat[0, 0]:.16g}") != T_hat[0, 0]  # 16 significant digits do not suffice
    store.put_transitions("x", [("symmetric", 0.2, 1, "paper", T_hat)])
    back = ResultStore(tmp_path).get_transition("x", "symmetric", 0.2, 1, "paper")
    assert back.dtype == np.float64 and back.tobytes() == T_hat.tobytes()
    assert np.round(T_hat, 8).tobytes() != T_hat.tobytes()  # what 8 decimals would have lost
    old = store.get_transition("x", "none", 0.0, 0, "paper")
    assert old.tolist() == [[0.12345679, 0.87654321], [0.5, 0.5]]
