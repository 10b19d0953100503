"""Train the recipe's stages, up to `workers` at a time, each in its own process.

A stage starts when the stage its weights come from (`init: stage:NAME`) has finished.
Every stage runs as `python -m edge train STAGE --recipe R --set vars.work=RUN ...` in a
new session with its output in RUN/logs/stage-NAME.log, so it resumes from its own
checkpoints and outlives an interrupted orchestrator: a lock file (RUN/stages/NAME.lock,
holding the process id) makes a restarted orchestrator wait for a stage that is still
running instead of starting it twice. Finished stages are skipped without a process.

On a 2-core machine two one-thread processes train nearly twice as fast as one process
with two threads (docs/heldout.md measured two threads 5-30x slower under load), and the
reasoner, the longest stage, shares no weights with the perception stages.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

from runtime.errors import EdgeError
from runtime.progress import Progress
from training.config import Recipe
from training.model_init import resolve_init
from training.stage_result import stage_summary

log = logging.getLogger(__name__)

POLL_SECONDS = 5.0


class StageFailed(EdgeError):
    """A stage's process exited with an error (its log names the cause)."""


def dependencies(recipe: Recipe, names: list[str]) -> dict[str, set[str]]:
    """stage -> the stages among `names` it starts from."""
    deps = {}
    for name in names:
        init = resolve_init(recipe, name)
        ref = init[len("stage:"):] if init.startswith("stage:") else None
        deps[name] = {ref} if ref in names else set()
    return deps


def _done(recipe: Recipe, name: str) -> bool:
    summary = stage_summary(recipe, name)
    return bool(summary and summary.get("complete", True))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _lock_owner(lock: Path) -> int | None:
    """The pid of a live process that holds the lock; None when free (stale locks are removed)."""
    try:
        pid = int(lock.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    if _alive(pid):
        return pid
    lock.unlink(missing_ok=True)
    return None


def _steps_done(recipe: Recipe, name: str) -> int:
    path = recipe.stage_dir(name) / "log.jsonl"
    try:
        lines = path.read_text().splitlines()
        return int(json.loads(lines[-1])["step"]) if lines else 0
    except (FileNotFoundError, ValueError, KeyError, IndexError):
        return 0


def _start(name: str, recipe_file: Path, overrides: list[str], log_dir: Path, lock: Path) -> subprocess.Popen:
    log_dir.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "edge", "-q", "train", name, "--recipe", str(recipe_file)]
    for item in overrides:
        cmd += ["--set", item]
    with open(log_dir / f"stage-{name}.log", "ab") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    lock.parent.mkdir(parents=True, exist_ok=True)
    lock.write_text(str(proc.pid))
    log.info("stage %s started (pid %d): %s", name, proc.pid, " ".join(cmd))
    return proc


def train_stages(recipe: Recipe, recipe_file: Path, overrides: list[str], names: list[str], log_dir: Path, *,
                 workers: int = 2, progress: Progress | None = None) -> dict[str, dict]:
    """Run every stage in `names` (dependencies first, `workers` at a time); returns each
    stage's summary plus "seconds" (wall time of this call's process, 0 when skipped) and
    "skipped" (it had finished before)."""
    progress = progress or (lambda msg, frac: None)
    deps = dependencies(recipe, names)
    total_steps = {n: max(1, recipe.stage(n).steps or 1) for n in names}
    pending = [n for n in names if not _done(recipe, n)]
    skipped = set(names) - set(pending)
    running: dict[str, tuple[subprocess.Popen | None, float]] = {}
    seconds: dict[str, float] = {}
    while pending or running:
        for name in list(pending):
            if len(running) >= max(1, workers):
                break
            if any(d in pending or d in running for d in deps[name]):
                continue
            lock = recipe.stage_dir(name).with_suffix(".lock")
            pending.remove(name)
            if _lock_owner(lock) is not None:  # still running from an earlier orchestrator
                running[name] = (None, time.perf_counter())
            else:
                running[name] = (_start(name, recipe_file, overrides, log_dir, lock), time.perf_counter())
        time.sleep(POLL_SECONDS)
        for name, (proc, t0) in list(running.items()):
            lock = recipe.stage_dir(name).with_suffix(".lock")
            if proc is not None:
                rc = proc.poll()
                if rc is None:
                    continue
                lock.unlink(missing_ok=True)
                if rc != 0 or not _done(recipe, name):
                    raise StageFailed(f"stage {name} failed (exit code {rc}); see {log_dir / f'stage-{name}.log'}")
            elif _lock_owner(lock) is not None:
                continue
            elif not _done(recipe, name):
                raise StageFailed(f"stage {name}, started by an earlier run, stopped unfinished: run again")
            seconds[name] = round(time.perf_counter() - t0, 1)
            del running[name]
        done = sum(min(_steps_done(recipe, n), total_steps[n]) for n in names)
        frac = done / sum(total_steps.values())
        progress(f"stages: running {', '.join(running) or '-'}; {len(pending)} waiting", frac)
    out = {}
    for name in names:
        summary = stage_summary(recipe, name) or {}
        out[name] = {"steps": summary.get("step"), "train_seconds": summary.get("seconds"),
                     "first_loss": summary.get("first_loss"), "last_loss": summary.get("last_loss"),
                     "tokens": summary.get("tokens"), "wall_seconds": seconds.get(name, 0.0),
                     "skipped": name in skipped}
    return out
