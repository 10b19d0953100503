"""Run a graph of jobs on a few worker processes, longest remaining path first.

    results = run_jobs(jobs, run_one, workers=2, progress=progress, worker_init=init, init_args=(...))

Each job names the jobs it needs; a job starts when they are done. Of the jobs ready to start,
the one with the most estimated work still behind it (its critical path) goes first, so the
longest chain never waits behind short jobs. With `workers` > 1 the jobs run in that many
spawned processes (each job function must be importable: spawn pickles it by name); workers
report progress through a queue, which the calling process turns into `progress(stage,
fraction)` calls, the fraction being the share of the estimated work done. With one worker the
jobs run in the calling process. The first failure stops new jobs from starting; the running
ones finish, and `JobFailed` names the job and its error.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing as mp
import os
import queue as queue_mod
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import Any

from runtime.errors import EdgeError
from runtime.progress import Progress

log = logging.getLogger(__name__)

_QUEUE: Any = None  # in a worker: where progress messages go


class JobFailed(EdgeError):
    """A job of the graph raised; the message names the job."""


@dataclass(frozen=True)
class Job:
    name: str
    kind: str
    deps: tuple[str, ...] = ()
    cost: float = 1.0  # estimated seconds: priorities and the progress fraction
    args: dict[str, Any] = field(default_factory=dict)


@dataclass
class JobRun:
    name: str
    kind: str
    seconds: float
    result: Any
    worker: int


def critical_path(jobs: Sequence[Job]) -> dict[str, float]:
    """Estimated seconds from the start of each job to the end of the longest chain after it."""
    children: dict[str, list[str]] = {j.name: [] for j in jobs}
    by_name = {j.name: j for j in jobs}
    for j in jobs:
        for d in j.deps:
            if d in children:
                children[d].append(j.name)
    memo: dict[str, float] = {}

    def rank(name: str) -> float:
        if name not in memo:
            memo[name] = by_name[name].cost + max((rank(c) for c in children[name]), default=0.0)
        return memo[name]

    return {j.name: rank(j.name) for j in jobs}


def check_graph(jobs: Sequence[Job]) -> None:
    """Names are unique. A dependency that is not in the graph counts as done (a job the
    caller skipped because its output was already there)."""
    names = [j.name for j in jobs]
    if len(set(names)) != len(names):
        raise ValueError("job names repeat")


def simulate(jobs: Sequence[Job], workers: int) -> float:
    """The wall time the schedule would take if every job took exactly its estimate."""
    ranks = critical_path(jobs)
    names = {j.name for j in jobs}
    pending = {j.name: j for j in jobs}
    finished: set[str] = set()
    running: list[tuple[float, str]] = []
    now = 0.0
    while pending or running:
        ready = sorted((j for j in pending.values() if all(d in finished or d not in names for d in j.deps)),
                       key=lambda j: -ranks[j.name])
        while ready and len(running) < max(workers, 1):
            j = ready.pop(0)
            del pending[j.name]
            running.append((now + j.cost, j.name))
        if not running:
            raise ValueError("the job graph has a cycle")
        running.sort()
        now, name = running.pop(0)
        finished.add(name)
    return now


def _worker_init(q: Any, env: dict[str, str], init: Callable[..., None] | None, init_args: tuple) -> None:
    """In each spawned worker, before any job: the progress queue, the environment, `init`."""
    global _QUEUE
    _QUEUE = q
    os.environ.update(env)
    if init is not None:
        init(*init_args)


def worker_progress(job: str) -> Progress:
    """The progress callback a job gets: to the queue in a worker, to nowhere otherwise."""
    def report(stage: str, fraction: float) -> None:
        if _QUEUE is not None:
            with contextlib.suppress(Exception):  # a full or closed queue never stops the work
                _QUEUE.put_nowait((job, stage, float(fraction)))
    return report


def _timed(fn: Callable[[Job], Any], job: Job) -> tuple[Any, float, int]:
    t0 = time.perf_counter()
    out = fn(job)
    return out, time.perf_counter() - t0, os.getpid()


class _Board:
    """What is done and running, turned into one progress fraction and label."""

    def __init__(self, jobs: Sequence[Job], progress: Progress | None, tick: Callable[[], None] | None) -> None:
        self.total = sum(j.cost for j in jobs) or 1.0
        self.cost = {j.name: j.cost for j in jobs}
        self.done = 0.0
        self.running: dict[str, tuple[str, float]] = {}
        self.progress = progress
        self.tick = tick

    def start(self, name: str) -> None:
        self.running[name] = (name, 0.0)
        self.show(name)

    def update(self, name: str, stage: str, frac: float) -> None:
        if name in self.running:
            self.running[name] = (stage, min(max(frac, 0.0), 1.0))
            self.show(name)

    def finish(self, name: str) -> None:
        self.running.pop(name, None)
        self.done += self.cost[name]
        self.show(name)

    def show(self, name: str) -> None:
        if self.tick is not None:
            self.tick()
        if self.progress is None:
            return
        partial = sum(self.cost[n] * f for n, (_, f) in self.running.items())
        label = " | ".join(s for s, _ in self.running.values()) or f"{name} done"
        self.progress(label, min((self.done + partial) / self.total, 1.0))


def run_jobs(jobs: Sequence[Job], run_one: Callable[[Job], Any], *, workers: int = 1,
             progress: Progress | None = None, worker_init: Callable[..., None] | None = None,
             init_args: tuple = (), env: dict[str, str] | None = None,
             tick: Callable[[], None] | None = None) -> dict[str, JobRun]:
    """Run `jobs` (respecting `deps`) and return their results by name; see the module doc."""
    check_graph(jobs)
    sched = _Schedule(jobs, _Board(jobs, progress, tick))
    if workers <= 1:
        return _run_here(sched, run_one)
    return _run_pool(sched, run_one, workers, (dict(env or {}), worker_init, init_args))


class _Schedule:
    """Which jobs wait, which are done, and which to start next (longest remaining path first)."""

    def __init__(self, jobs: Sequence[Job], board: _Board) -> None:
        self.board = board
        self.ranks = critical_path(jobs)
        self.pending = {j.name: j for j in jobs}
        self.results: dict[str, JobRun] = {}

    def next(self) -> Job | None:
        ready = [j for j in self.pending.values() if all(d in self.results or d not in self.ranks for d in j.deps)]
        if not ready:
            return None
        job = max(ready, key=lambda j: self.ranks[j.name])
        del self.pending[job.name]
        self.board.start(job.name)
        return job

    def finish(self, job: Job, out: Any, secs: float, pid: int) -> None:
        self.results[job.name] = JobRun(job.name, job.kind, secs, out, pid)
        self.board.finish(job.name)


def _run_here(sched: _Schedule, run_one: Callable[[Job], Any]) -> dict[str, JobRun]:
    while sched.pending:
        job = sched.next()
        if job is None:
            raise ValueError("the job graph has a cycle")
        try:
            out, secs, pid = _timed(run_one, job)
        except EdgeError as exc:
            raise JobFailed(f"job {job.name} failed: {exc}") from exc
        sched.finish(job, out, secs, pid)
    return sched.results


def _run_pool(sched: _Schedule, run_one: Callable[[Job], Any], workers: int, init: tuple) -> dict[str, JobRun]:
    ctx = mp.get_context("spawn")
    q = ctx.Queue()  # handed to each worker when it is spawned
    running: dict[Future, Job] = {}
    failure: tuple[Job, BaseException] | None = None
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_worker_init, initargs=(q, *init))
    try:
        while sched.pending or running:
            while failure is None and len(running) < workers:
                job = sched.next()
                if job is None:
                    break
                running[pool.submit(_timed, run_one, job)] = job
            if not running:
                if failure is None and sched.pending:
                    raise ValueError("the job graph has a cycle")
                break
            finished, _ = wait(list(running), timeout=0.5, return_when=FIRST_COMPLETED)
            _drain(q, sched.board)
            for fut in finished:
                job = running.pop(fut)
                try:
                    sched.finish(job, *fut.result())
                except BrokenProcessPool as exc:
                    failure = failure or (job, JobFailed(
                        f"a worker process died while running it ({exc}); killed, or out of memory? "
                        "--resume continues from the last checkpoint"))
                except BaseException as exc:  # noqa: BLE001 - reported with the job's name below
                    failure = failure or (job, exc)
                    log.error("job %s failed: %s", job.name, exc)
    except BaseException:
        # interrupted (Ctrl-C, a signal): stop the workers now rather than letting the jobs
        # they hold run to the end; their stages resume from the last checkpoint next time
        _stop(pool)
        raise
    pool.shutdown(wait=True)
    if failure is not None:
        job, exc = failure
        if isinstance(exc, EdgeError):
            raise JobFailed(f"job {job.name} failed: {exc}") from exc
        raise exc  # a bug: keeps its traceback (the worker's is attached as the cause)
    return sched.results


def _stop(pool: ProcessPoolExecutor) -> None:
    pool.shutdown(wait=False, cancel_futures=True)
    # the executor has no public way to stop a running job: end its worker processes
    for proc in list((getattr(pool, "_processes", None) or {}).values()):
        if proc.is_alive():
            proc.terminate()
    for proc in list((getattr(pool, "_processes", None) or {}).values()):
        proc.join(timeout=10)


def _drain(q: Any, board: _Board) -> None:
    while True:
        try:
            name, stage, frac = q.get_nowait()
        except (queue_mod.Empty, EOFError, OSError):
            return
        board.update(name, stage, frac)
