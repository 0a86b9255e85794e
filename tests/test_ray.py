"""Sweeps on a Ray cluster: one Ray task per group of runs, results stored by
the calling process only, a group whose node is lost retried on another node
from its checkpoint.

The tests start a real cluster on this machine: a head node without CPUs (so
that every task runs on a worker node) and two worker nodes of one CPU each,
each node a ``ray start --block`` process of its own, stopped by killing the
processes it started and nothing else.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from losscorrection import cli, training
from losscorrection.results import ResultStore
from losscorrection.training.executors import ExecutorError, RayExecutor, _train_in_task, check_reachable
from losscorrection.training.sweep import SweepContext

ROOT = Path(__file__).resolve().parents[1]
CELLS = [training.Cell(method, "asymmetric", 0.2, run)
         for method in ("cross_entropy", "forward_That", "backward_T") for run in (0, 1)]
SAME = ["method", "noise", "rate", "run", "seed", "profile", "epochs", "train_size", "precision", "test_accuracy",
        "selected_epoch", "val_loss", "val_accuracy", "T_error", "identity_mix"]
NODE_SECONDS = 120  # the longest a node of the test cluster may take to start on a busy 2-core machine


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def descendants(root: int) -> list[int]:
    """``root`` and every process below it, read from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                ppid = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_text().replace("\0", " ")
    except OSError:
        return ""


class LocalCluster:
    """A Ray cluster on this machine: a CPU-less head node and worker nodes of one
    CPU each, every node the process tree of one ``ray start --block``."""

    def __init__(self, temp_dir: Path, workers: int = 2) -> None:
        self.temp_dir = temp_dir
        port = free_port()
        self.address = f"127.0.0.1:{port}"
        self.env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0", RAY_health_check_period_ms="1000",
                        RAY_health_check_timeout_ms="1000", RAY_health_check_failure_threshold="3")
        self.env.pop("RAY_ADDRESS", None)
        common = ["--block", "--node-ip-address=127.0.0.1", "--disable-usage-stats", "--include-log-monitor=false",
                  "--object-store-memory=100000000"]
        self.nodes: list[subprocess.Popen] = []
        self._start(["--head", f"--port={port}", "--num-cpus=0", "--include-dashboard=false",
                     f"--temp-dir={temp_dir}", *common])
        for _ in range(workers):  # one at a time: nodes of one machine pick their socket names in turn
            self._start([f"--address={self.address}", "--num-cpus=1", *common])
        self.workers = self.nodes[1:]

    def _start(self, args: list[str]) -> None:
        before = len(self._raylet_sockets())
        log = open(self.temp_dir / f"node{len(self.nodes)}.log", "wb")
        self.nodes.append(subprocess.Popen([str(Path(sys.executable).with_name("ray")), "start", *args],
                                           stdout=log, stderr=subprocess.STDOUT, env=self.env))
        log.close()
        deadline = time.monotonic() + NODE_SECONDS
        while len(self._raylet_sockets()) <= before:
            if self.nodes[-1].poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"a Ray node did not start; see {self.temp_dir}/node{len(self.nodes) - 1}.log")
            time.sleep(0.2)

    def _raylet_sockets(self) -> list[Path]:
        return list(self.temp_dir.glob("*_latest/sockets/raylet*"))  # the head's newest start

    def node_running(self, task: str) -> subprocess.Popen | None:
        """The worker node one of whose processes runs the task named ``task``, if any."""
        for node in self.workers:
            if node.poll() is None and any(command_line(pid).startswith(f"ray::{task}")
                                           for pid in descendants(node.pid)):
                return node
        return None

    def kill(self, node: subprocess.Popen) -> None:
        """Kill a node outright (SIGKILL to each of its processes), as a lost machine."""
        for pid in descendants(node.pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        node.wait(30)

    def stop(self) -> None:
        for node in reversed(self.nodes):
            if node.poll() is None:
                self.kill(node)


@pytest.fixture(scope="module")
def cluster():
    pytest.importorskip("ray", reason="ray is not installed (pip install 'losscorrection[ray]')")
    # a short folder of its own: the nodes' socket paths must fit in 107 bytes
    temp_dir = Path(tempfile.mkdtemp(prefix="ray", dir="/tmp"))
    started = LocalCluster(temp_dir)
    yield started
    started.stop()
    shutil.rmtree(temp_dir, ignore_errors=True)


@pytest.fixture()
def one_thread():
    """Train the reference sweeps as the Ray tasks do, with one CPU thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def rows_of(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[SAME].sort_values(["method", "run"]).reset_index(drop=True)


def local_sweep(results: Path, **kwargs) -> pd.DataFrame:
    return training.run_cells("digits_fc", CELLS, profile="smoke", device="cpu", results_dir=results,
                              progress=False, max_runs_per_group=1, **kwargs)


def test_a_sweep_on_ray_stores_what_a_local_sweep_stores(cluster, tmp_path, one_thread, capsys):
    """Six groups of one run (two stage-1 groups, whose T̂ the two forward_That
    groups wait for, and two backward_T groups) as Ray tasks on two nodes,
    started from the command line: the same rows and T̂ as in this process."""
    local_sweep(tmp_path / "local")
    args = ["run", "digits", "--method", "cross_entropy", "--method", "forward_That", "--method", "backward_T",
            "--noise", "asymmetric", "--rate", "0.2", "--runs", "2", "--profile", "smoke", "--device", "cpu",
            "--max-group", "1", "--executor", "ray", "--address", cluster.address, "--threads", "1",
            "--results-dir", str(tmp_path / "ray"), "--quiet"]
    assert cli.main(args) == 0
    assert "6 new runs of 6 requested" in capsys.readouterr().out
    local, on_ray = ResultStore(tmp_path / "local"), ResultStore(tmp_path / "ray")
    pd.testing.assert_frame_equal(rows_of(on_ray.load("digits_fc")), rows_of(local.load("digits_fc")))
    assert set(on_ray.load("digits_fc")["device"]) == set(local.load("digits_fc")["device"])  # one thread each
    T_local, T_ray = local.load_transitions("digits_fc"), on_ray.load_transitions("digits_fc")
    assert sorted(T_ray) == sorted(T_local) == ["asymmetric/0.2/0/smoke", "asymmetric/0.2/1/smoke"]
    for key in T_local:
        np.testing.assert_array_equal(T_ray[key], T_local[key])
    assert not any((tmp_path / "ray" / training.CHECKPOINT_FOLDER).glob("*.pt"))  # stored, then removed


def test_a_group_whose_node_is_lost_continues_from_its_checkpoint_on_another(cluster, tmp_path, one_thread):
    """A stage-1 group of 150 epochs saves its state after every epoch; its node is
    killed mid-training. Ray runs the task again on the other node, which
    continues from the checkpoint and stores what an uninterrupted local run stores."""
    cells, epochs = [training.Cell("cross_entropy", "symmetric", 0.2, 0)], 150
    results = tmp_path / "ray"
    outcome: dict = {}

    def sweep() -> None:
        try:
            outcome["rows"] = training.run_cells(
                "digits_fc", cells, profile="smoke", epochs=epochs, device="cpu", results_dir=results,
                progress=False, executor=RayExecutor(cluster.address, threads=1), checkpoint_seconds=0.0)
        except BaseException as err:  # reported by the test's thread
            outcome["error"] = err

    driver = threading.Thread(target=sweep)
    driver.start()
    saved_epoch, node = 0, None
    deadline = time.monotonic() + 180  # generous: the loop ends as soon as the group saves epoch 10
    while (saved_epoch < 10 or node is None) and driver.is_alive() and time.monotonic() < deadline:
        time.sleep(0.2)
        for path in (results / training.CHECKPOINT_FOLDER).glob("*.pt"):
            try:
                saved_epoch = torch.load(path, weights_only=True)["epoch"]
            except (OSError, RuntimeError, EOFError):
                pass  # being replaced
        node = cluster.node_running("digits_fc cross_entropy (symmetric 0.2)")
    reached = driver.is_alive() and 10 <= saved_epoch < epochs
    if not reached:
        driver.join(240)  # let the sweep end, so that its Ray connection does not outlive this test
    assert reached, "the group did not reach its tenth epoch in time"
    cluster.kill(node)
    killed_at = saved_epoch
    driver.join(240)
    assert not driver.is_alive() and "error" not in outcome, outcome.get("error")
    resumed = outcome["rows"].attrs["resumed"]
    assert list(resumed) == ["digits_fc cross_entropy (symmetric 0.2)"]
    assert killed_at <= resumed["digits_fc cross_entropy (symmetric 0.2)"] < epochs  # continued, not restarted

    straight = training.run_cells("digits_fc", cells, profile="smoke", epochs=epochs, device="cpu",
                                  results_dir=tmp_path / "local", progress=False)
    pd.testing.assert_frame_equal(rows_of(ResultStore(results).load("digits_fc")), rows_of(straight))
    T_ray = ResultStore(results).load_transitions("digits_fc")
    T_local = ResultStore(tmp_path / "local").load_transitions("digits_fc")
    assert json.dumps({k: v.tolist() for k, v in T_ray.items()}) == json.dumps(
        {k: v.tolist() for k, v in T_local.items()})


def test_an_unreachable_cluster_is_one_line_of_error(tmp_path, capsys):
    pytest.importorskip("ray", reason="ray is not installed (pip install 'losscorrection[ray]')")
    import ray

    if ray.is_initialized():  # a connection left by an earlier test would be reused instead
        ray.shutdown()
    address = f"127.0.0.1:{free_port()}"  # nothing listens there
    args = ["run", "digits", "--method", "cross_entropy", "--noise", "none", "--profile", "smoke", "--device", "cpu",
            "--executor", "ray", "--address", address, "--results-dir", str(tmp_path), "--quiet"]
    started = time.perf_counter()
    assert cli.main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"losscorrection: error: cannot reach the Ray cluster at {address} (")
    assert time.perf_counter() - started < 30
    assert not ray.is_initialized() and not ResultStore(tmp_path).path("digits_fc").exists()


@pytest.mark.parametrize("reply", [b"", b"HTTP/1.1 400 Bad Request\r\n\r\n"])
def test_an_open_port_that_is_not_a_ray_head_is_one_line_of_error(reply):
    """A listener that stays silent or answers in another protocol: refused within
    the timeout, where Ray itself would keep trying for minutes."""
    import socket
    import threading

    server = socket.create_server(("127.0.0.1", 0))
    address = f"127.0.0.1:{server.getsockname()[1]}"

    def answer():
        connection, _ = server.accept()
        with connection:
            connection.recv(64)
            connection.sendall(reply)
            time.sleep(3)  # hold the connection open past the timeout

    threading.Thread(target=answer, daemon=True).start()
    started = time.perf_counter()
    with pytest.raises(ExecutorError, match=f"^cannot reach the Ray cluster at {address} \\(a server answers "
                                            "there, but not a Ray head"):
        check_reachable(address, timeout=1.0)
    assert time.perf_counter() - started < 3
    server.close()


@pytest.mark.parametrize("address", ["no-port", "host:", ":6379"])
def test_an_address_without_host_and_port_is_refused(address):
    with pytest.raises(ExecutorError, match=f"cannot reach the Ray cluster at {address}: give its address as "
                                            "HOST:PORT"):
        check_reachable(address)


@pytest.mark.parametrize("extra, message", [
    (["--address", "127.0.0.1:6379"], "--address names a Ray cluster: it needs --executor ray"),
    (["--executor", "ray", "--jobs", "2"], "--jobs runs local processes; with --executor ray"),
])
def test_executor_options_that_do_not_fit_are_one_line_of_error(tmp_path, capsys, extra, message):
    args = ["run", "digits", "--method", "cross_entropy", "--noise", "none", "--profile", "smoke",
            "--results-dir", str(tmp_path), "--quiet", *extra]
    assert cli.main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]


def test_the_library_trains_without_ray_and_says_what_the_ray_executor_needs(tmp_path):
    """With ``ray`` impossible to import, a local sweep trains, and ``--executor
    ray`` is one line of error naming the package to install."""
    script = (
        "import sys; sys.modules['ray'] = None  # any import of ray fails\n"
        "from losscorrection import cli\n"
        "base = ['run', 'digits', '--method', 'cross_entropy', '--noise', 'none', '--profile', 'smoke',\n"
        f"        '--device', 'cpu', '--results-dir', {str(tmp_path)!r}, '--quiet']\n"
        "assert cli.main(base) == 0\n"
        "assert cli.main(base + ['--runs', '2', '--executor', 'ray']) == 2\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip().splitlines() == [
        "losscorrection: error: the Ray executor needs the ray package: pip install 'losscorrection[ray]'"]
    assert len(ResultStore(tmp_path).load("digits_fc")) == 1


def test_a_task_meets_the_sweeps_deadline_on_its_own_clock_with_its_threads(one_thread):
    """A Ray task gets the deadline as wall-clock time and turns it into its own
    ``time.perf_counter()`` value (processes and machines have different ones);
    it trains with the task's threads and without a progress bar."""
    seen = {}

    def train(context, job, estimated):
        seen.update(deadline=context.deadline, progress=context.progress, threads=torch.get_num_threads())
        return job, estimated

    context = SweepContext(*[None] * 6, progress=True, deadline=-1.0)  # the sender's perf_counter() value
    torch.set_num_threads(2)
    before = time.perf_counter()
    assert _train_in_task(context, "job", {"T": 1}, time.time() + 100.0, 1, train) == ("job", {"T": 1})
    after = time.perf_counter()
    assert before + 100.0 - 1.0 <= seen["deadline"] <= after + 100.0 + 1.0  # 1 s for the two clocks' reads
    assert seen["progress"] is False and seen["threads"] == 1
    assert _train_in_task(context, "job", {}, None, None, train) and seen["deadline"] is None
