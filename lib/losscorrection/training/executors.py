"""Where the groups of runs of a sweep train: in this process, or as tasks on a
Ray cluster.

A sweep is planned as :class:`~losscorrection.training.sweep.GroupJob`\\ s,
each trained by a pure function that returns its rows and T̂ and writes only
its checkpoint, and stored by the calling process alone
(:mod:`~losscorrection.training.sweep`). An executor decides where the
training happens:

- :class:`LocalExecutor` trains the groups in this process, one after the
  other, stage-1 groups first;
- :class:`RayExecutor` submits one Ray task per group (one GPU each on CUDA,
  else ``threads`` CPUs). A group that needs T̂ is submitted once the stage-1
  groups that estimate it are stored, and a task whose worker is lost is
  retried (``max_retries``) and resumes from its checkpoint, which lies in the
  results folder: on a cluster of several machines that folder must be on a
  filesystem every node shares.

Ray is imported only when a :class:`RayExecutor` is entered: the library
works without it.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from dataclasses import replace
from typing import Any

import torch
from tqdm import tqdm

from .runtime import PRECISIONS, Runtime, auto_bf16
from .sweep import GroupBusy, GroupJob, GroupResult, SweepContext, SweepStore, TrainGroup

__all__ = ["EXECUTORS", "RAY_MAX_RETRIES", "ExecutorError", "LocalExecutor", "RayExecutor", "check_reachable",
           "make_executor"]

EXECUTORS = ("local", "ray")
RAY_MAX_RETRIES = 3  # a task whose worker or node is lost is started again this many times
CONNECT_SECONDS = 10.0  # how long the address of a Ray cluster is tried before it is called unreachable


class ExecutorError(RuntimeError):
    """The sweep cannot be trained where it was sent: Ray is not installed, its
    cluster cannot be reached, or a group lost its worker more often than allowed."""


class LocalExecutor:
    """Train the groups in this process, one after the other, in the planned
    order (stage-1 groups first, so their T̂ are in before the T̂ methods train)."""

    remote = False

    def __enter__(self) -> LocalExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def runtime(self, model: str, device: str | torch.device, precision: str) -> Runtime:
        """The runtime of this process (:meth:`Runtime.resolve`)."""
        return Runtime.resolve(model, device, precision)

    def run(self, jobs: list[GroupJob], driver: SweepStore, train: TrainGroup, context: SweepContext) -> None:
        """Train and store every job; the first error stops the sweep (finished groups stay stored)."""
        for job in jobs:
            if not driver.ready(job):
                raise _never_ready(job)
            if driver.start(job):
                driver.finish(job, train(context, job, driver.inputs(job)))


def _never_ready(job: GroupJob) -> RuntimeError:
    """The error for a group whose T̂ no stage-1 group of the plan provides."""
    return RuntimeError(f"{job.description}: its stage-1 T̂ is neither stored nor planned")


def _import_ray() -> Any:
    """The ``ray`` module, or an :class:`ExecutorError` saying how to install it."""
    try:
        import ray
    except ImportError:
        raise ExecutorError("the Ray executor needs the ray package: pip install 'losscorrection[ray]'") from None
    return ray


# An HTTP/2 client's opening (RFC 9113, 3.4) and an empty SETTINGS frame: a gRPC
# server, as a Ray head's GCS and Ray Client ports are, answers with a SETTINGS frame.
_HTTP2_OPENING = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])
_HTTP2_SETTINGS = 4  # the frame type in byte 3 of a frame header


def check_reachable(address: str, timeout: float = CONNECT_SECONDS) -> None:
    """Raise :class:`ExecutorError` unless ``address`` (``HOST:PORT`` or
    ``ray://HOST:PORT``) accepts a TCP connection and answers it as a gRPC
    server within ``timeout`` seconds (Ray itself would wait on any open port
    for minutes)."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise ExecutorError(f"cannot reach the Ray cluster at {address}: give its address as HOST:PORT")
    try:
        connection = socket.create_connection((host.strip("[]"), int(port)), timeout=timeout)
    except OSError as err:
        reason = err.strerror or type(err).__name__
        raise ExecutorError(f"cannot reach the Ray cluster at {address} ({reason.lower()})") from None
    header = b""
    with connection:
        try:
            connection.sendall(_HTTP2_OPENING)
            while len(header) < 9 and (chunk := connection.recv(9 - len(header))):
                header += chunk
        except OSError:  # silent past the timeout, or the connection dropped
            pass
    if len(header) < 9 or header[3] != _HTTP2_SETTINGS:
        raise ExecutorError(f"cannot reach the Ray cluster at {address} (a server answers there, but not a "
                            "Ray head: give the port that `ray start --head` printed)")


def _train_in_task(context: SweepContext, job: GroupJob, estimated: dict, deadline_wall: float | None,
                   threads: int | None, train: TrainGroup) -> GroupResult:
    """The body of a Ray task: ``train`` with this worker's threads, its own
    clock for the deadline (given as ``time.time()``), and no progress bar."""
    if threads is not None:
        torch.set_num_threads(threads)
    deadline = None if deadline_wall is None else time.perf_counter() + deadline_wall - time.time()
    return train(replace(context, deadline=deadline, progress=False), job, estimated)


class RayExecutor:
    """Train every group as a Ray task on a Ray cluster; store results here.

    Parameters
    ----------
    address
        The cluster's address, ``HOST:PORT`` of its head node (``ray start
        --head`` prints it), ``ray://HOST:PORT`` for Ray Client, or ``auto``
        (a cluster started on this machine). None: ``$RAY_ADDRESS`` when set,
        else Ray starts an instance on this machine for the sweep. When Ray is
        already initialised in this process, that connection is used.
    threads
        CPU threads, and Ray CPUs, per task when the runs train on CPUs
        (default 1). On CUDA each task takes one GPU.
    max_retries
        How many times a task whose worker or node is lost starts again; it
        resumes from the group's checkpoint, so the folder holding the results
        must be one that every node reaches (a shared filesystem).
    """

    remote = True

    def __init__(self, address: str | None = None, threads: int | None = None,
                 max_retries: int = RAY_MAX_RETRIES) -> None:
        if threads is not None and threads < 1:
            raise ValueError(f"threads must be at least 1, got {threads}")
        self.address = address or os.environ.get("RAY_ADDRESS") or None
        self.threads = threads
        self.max_retries = max_retries
        self._ray: Any = None
        self._connected = False

    def __enter__(self) -> RayExecutor:
        ray = self._ray = _import_ray()
        if not ray.is_initialized():
            if self.address not in (None, "auto", "local"):
                check_reachable(self.address)
            try:
                ray.init(address=self.address, logging_level=logging.WARNING)
            except ConnectionError as err:
                where = self.address or "this machine"
                raise ExecutorError(f"cannot reach the Ray cluster at {where} ({str(err).splitlines()[0]})") from None
            self._connected = True
        return self

    def __exit__(self, *exc: object) -> None:
        if self._connected:
            self._ray.shutdown()
            self._connected = False

    def runtime(self, model: str, device: str | torch.device, precision: str) -> Runtime:
        """The runtime of the tasks: ``device`` ``auto`` is CUDA when the cluster
        has GPUs now, else the CPU (give ``cuda`` when GPU nodes join later);
        ``precision`` ``auto`` follows :func:`auto_bf16`, for a CPU judged on
        this machine's CPU."""
        if precision not in PRECISIONS:
            raise ValueError(f"unknown precision {precision!r}; known: {', '.join(PRECISIONS)}")
        if str(device) not in ("auto", "cpu", "cuda"):
            raise ValueError(f"unknown device {device!r} for a Ray cluster; known: auto, cpu, cuda")
        if str(device) == "auto":
            device = "cuda" if self._ray.cluster_resources().get("GPU", 0) >= 1 else "cpu"
        device = torch.device(device)
        return Runtime(device, bf16=precision == "bf16" or (precision == "auto" and auto_bf16(model, device)))

    def run(self, jobs: list[GroupJob], driver: SweepStore, train: TrainGroup, context: SweepContext) -> None:
        """Submit each job once its T̂ are in, store each result as it arrives.

        The first error (a group another process is training, a task that
        failed or stopped on time, a group whose worker was lost more than
        ``max_retries`` times) stops new submissions; the groups already
        running finish and are stored, then the error is raised."""
        ray = self._ray
        resources = ({"num_gpus": 1} if context.runtime.device.type == "cuda"
                     else {"num_cpus": self.threads or 1})
        threads = None if context.runtime.device.type == "cuda" else self.threads or 1
        task = ray.remote(_train_in_task)
        options = dict(max_retries=self.max_retries, retry_exceptions=False, **resources)
        shared = ray.put(replace(context, group_data=None))
        deadline_wall = None if context.deadline is None else time.time() + context.deadline - time.perf_counter()
        waiting, running = list(jobs), {}
        error: BaseException | None = None
        bar = tqdm(total=len(jobs), desc=f"{context.experiment.key} groups on Ray", disable=not context.progress)
        try:
            while True:
                while error is None and (ready := [job for job in waiting if driver.ready(job)]):
                    for job in ready:  # a group stored meanwhile may make others ready: look again
                        waiting.remove(job)
                        try:
                            started = driver.start(job)
                        except GroupBusy as err:
                            error = err
                            break
                        if started:
                            ref = task.options(name=job.description, **options).remote(
                                shared, job, driver.inputs(job), deadline_wall, threads, train)
                            running[ref] = job
                        else:
                            bar.update()
                if not running:
                    break
                (ref,), _ = ray.wait(list(running), num_returns=1)
                job = running.pop(ref)
                try:
                    result = ray.get(ref)
                except ray.exceptions.RayTaskError as err:  # the group's training raised
                    error = error or (err.cause if isinstance(err.cause, Exception) else err)
                    continue
                except ray.exceptions.RayError as err:  # its worker or node was lost too often
                    error = error or ExecutorError(
                        f"{job.description}: lost its Ray worker {self.max_retries + 1} times "
                        f"({type(err).__name__}); its checkpoint keeps its progress, run the sweep again")
                    continue
                driver.finish(job, result)
                bar.update()
        finally:
            bar.close()
        if error is not None:
            raise error
        if waiting:
            raise _never_ready(waiting[0])


def make_executor(executor: str | LocalExecutor | RayExecutor = "local") -> LocalExecutor | RayExecutor:
    """An executor by name (``local`` or ``ray``, see :data:`EXECUTORS`), or ``executor`` itself."""
    if isinstance(executor, (LocalExecutor, RayExecutor)):
        return executor
    if executor == "local":
        return LocalExecutor()
    if executor == "ray":
        return RayExecutor()
    raise ValueError(f"unknown executor {executor!r}; known: {', '.join(EXECUTORS)}")
