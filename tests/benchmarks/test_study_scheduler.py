"""The study's job graph runner: order, priorities, failures, two processes."""

from __future__ import annotations

import os
import time
from functools import partial
from pathlib import Path

import pytest

from benchmarks.study.scheduler import (
    Job,
    JobFailed,
    critical_path,
    run_jobs,
    simulate,
    worker_progress,
)
from runtime.errors import ConfigError


def record(job: Job, log: list[str]) -> str:
    log.append(job.name)
    return job.name.upper()


def test_dependencies_first_then_the_longest_remaining_path():
    jobs = [Job("short", "x", cost=1), Job("long-a", "x", cost=5), Job("long-b", "x", ("long-a",), cost=5),
            Job("end", "x", ("short", "long-b"), cost=1)]
    assert critical_path(jobs) == {"short": 2, "long-a": 11, "long-b": 6, "end": 1}
    order: list[str] = []
    out = run_jobs(jobs, partial(record, log=order), workers=1)
    assert order == ["long-a", "long-b", "short", "end"]
    assert out["end"].result == "END" and out["end"].seconds >= 0


def test_simulated_wall_time_of_two_workers():
    jobs = [Job("a", "x", cost=4), Job("b", "x", cost=3), Job("c", "x", ("a",), cost=2), Job("d", "x", cost=1)]
    assert simulate(jobs, 1) == 10
    assert simulate(jobs, 2) == 6  # a then c on one worker (6); b then d on the other (4)


def test_a_dependency_outside_the_graph_counts_as_done():
    order: list[str] = []
    run_jobs([Job("b", "x", ("skipped",))], partial(record, log=order))
    assert order == ["b"]


def fail_on(job: Job, bad: str) -> None:
    if job.name == bad:
        raise ConfigError("no such folder")


def test_a_failure_names_the_job_and_stops_what_depends_on_it():
    jobs = [Job("a", "x"), Job("b", "x", ("a",))]
    with pytest.raises(JobFailed, match="job a failed: no such folder"):
        run_jobs(jobs, partial(fail_on, bad="a"))


def in_worker(job: Job, folder: str) -> int:
    """Runs in a spawned worker: reports progress, leaves a file, returns its process id."""
    worker_progress(job.name)(f"{job.name} half", 0.5)
    time.sleep(0.2)
    Path(folder, job.name).write_text(os.environ.get("STUDY_TEST_ENV", ""))
    return os.getpid()


def test_two_worker_processes_run_the_graph_and_report_progress(tmp_path):
    jobs = [Job(f"j{i}", "x", cost=1) for i in range(4)] + [Job("last", "x", tuple(f"j{i}" for i in range(4)))]
    seen: list[tuple[str, float]] = []
    out = run_jobs(jobs, partial(in_worker, folder=str(tmp_path)), workers=2,
                   progress=lambda m, f: seen.append((m, f)), env={"STUDY_TEST_ENV": "set"})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["j0", "j1", "j2", "j3", "last"]
    assert (tmp_path / "last").read_text() == "set"
    pids = {r.result for r in out.values()}
    assert os.getpid() not in pids and 1 <= len(pids) <= 2
    fractions = [f for _, f in seen]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0


def test_a_failure_in_a_worker_is_reported_with_the_job_name(tmp_path):
    jobs = [Job("ok", "x"), Job("bad", "x"), Job("after", "x", ("bad",))]
    with pytest.raises(JobFailed, match="job bad failed"):
        run_jobs(jobs, partial(fail_on, bad="bad"), workers=2)


def die(job: Job) -> None:
    if job.name == "dies":
        os._exit(3)  # a worker killed from outside (out of memory, a signal)
    time.sleep(0.1)


def test_a_worker_that_dies_is_a_clear_failure():
    # a dead worker breaks the whole pool: the job that was running beside it fails the same way
    with pytest.raises(JobFailed, match="job (dies|fine) failed: a worker process died"):
        run_jobs([Job("dies", "x"), Job("fine", "x")], die, workers=2)
