"""The results store under concurrent writers: two real processes appending to
the same files lose nothing."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from losscorrection.store import COLUMNS, ResultStore

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
