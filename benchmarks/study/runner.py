"""`run_study`: the whole study into one folder, resumable, then the report.

    OUT/study.json        the preset and settings, the code's git commit, the runs (start, end, load)
    OUT/recipes/*.json    the training recipes the grid generated
    OUT/stages/STAGE/     every stage's checkpoints (training.checkpoint layout)
    OUT/bundles/SYSTEM/   the exported systems (GGUF)
    OUT/eval/CELL.jsonl   every answer; CELL.json marks a finished cell
    OUT/report/           study.md, study.json, the figures

A second run with `resume` continues: finished jobs are skipped, stages resume from their
last checkpoint, cells from their last answer.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import subprocess
import time
from dataclasses import asdict
from functools import partial
from pathlib import Path

from benchmarks.study.analysis import analyze
from benchmarks.study.data import make_blank
from benchmarks.study.jobs import estimate, init_worker, plan, run_one, write_recipes
from benchmarks.study.presets import Preset
from benchmarks.study.report import write_report
from benchmarks.study.scheduler import run_jobs
from runtime.atomic import atomic_write_text
from runtime.errors import ConfigError
from runtime.progress import Progress

log = logging.getLogger(__name__)

STUDY_FILE = "study.json"
FORMAT = "edge-study"


CODE_DIR = Path(__file__).resolve().parent


def git_commit(path: Path = CODE_DIR) -> dict:
    """The commit the code ran from, and whether the checkout had uncommitted changes."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=path, capture_output=True, text=True, timeout=20)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=path,
                               capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return {"commit": "unknown", "dirty": None}
    if head.returncode != 0:
        return {"commit": "unknown", "dirty": None}
    return {"commit": head.stdout.strip(), "dirty": bool(dirty.stdout.strip())}


class LoadSampler:
    """The 1-minute load average, sampled at most every `every` seconds while jobs run."""

    def __init__(self, every: float = 30.0) -> None:
        self.every, self.samples, self._last = every, [], float("-inf")

    def __call__(self) -> None:
        now = time.monotonic()
        if now - self._last >= self.every and hasattr(os, "getloadavg"):
            self._last = now
            self.samples.append(round(os.getloadavg()[0], 2))

    def summary(self) -> dict:
        s = sorted(self.samples)
        if not s:
            return {"samples": 0}
        return {"samples": len(s), "min": s[0], "median": s[len(s) // 2], "max": s[-1]}


def _open_study(out: Path, preset: Preset, resume: bool) -> dict:
    path = out / STUDY_FILE
    settings = asdict(preset)
    if path.is_file():
        meta = json.loads(path.read_text())
        if not resume:
            raise ConfigError(f"{out} holds a study already: --resume continues it, or choose another --out")
        if meta.get("preset") != json.loads(json.dumps(settings)):
            raise ConfigError(f"{out} holds a study with other settings (preset {meta.get('preset', {}).get('name')!r}); "
                              "choose another --out")
        return meta
    if out.exists() and any(out.iterdir()):
        raise ConfigError(f"{out} exists and is not a study folder: choose an empty or new --out")
    out.mkdir(parents=True, exist_ok=True)
    return {"format": FORMAT, "version": 1, "preset": settings, "runs": []}


def run_study(preset: Preset, out: Path, *, resume: bool = False, progress: Progress | None = None,
              command: str = "") -> dict:
    """Train, export and evaluate every cell the findings need (skipping finished work), then
    write the report; returns the report's JSON content."""
    out = Path(out)
    meta = _open_study(out, preset, resume)
    code = git_commit()
    run_record = {"started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "command": command, **code,
                  "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                              "python": platform.python_version()}}
    meta["runs"].append(run_record)
    atomic_write_text(out / STUDY_FILE, json.dumps(meta, indent=1))
    make_blank(out, 64)
    write_recipes(preset, out)
    jobs = plan(preset, out)
    log.info("study %s: %d jobs to run in %s", preset.name, len(jobs), out)
    sampler = LoadSampler()
    sampler()
    t0 = time.perf_counter()
    threads = str(preset.run.threads or os.cpu_count() or 1)
    try:
        done = run_jobs(jobs, partial(run_one, preset=preset, out=str(out)), workers=preset.run.workers,
                        progress=(lambda m, f: progress(m, 0.97 * f)) if progress else None,
                        worker_init=init_worker, init_args=(preset.run.threads,),
                        env={"OMP_NUM_THREADS": threads, "TOKENIZERS_PARALLELISM": "false"}, tick=sampler)
    finally:
        run_record.update(ended=time.strftime("%Y-%m-%dT%H:%M:%S%z"), wall_seconds=round(time.perf_counter() - t0, 1),
                          load_average=sampler.summary())
        atomic_write_text(out / STUDY_FILE, json.dumps(meta, indent=1))
    run_record["jobs"] = {name: {"kind": r.kind, "seconds": round(r.seconds, 1), **(r.result or {})}
                          for name, r in done.items()}
    atomic_write_text(out / STUDY_FILE, json.dumps(meta, indent=1))
    if progress:
        progress("report", 0.98)
    results = analyze(out, preset)
    report = write_report(out / "report", preset, meta, results, estimate(preset, out), command=command or None)
    if progress:
        progress("report", 1.0)
    return report
