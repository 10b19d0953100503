"""Evaluate one cell with the runtime, and read every cell back as scored rows.

A cell's system is an exported bundle run by `runtime.pipeline.ExtractThink` (llama.cpp,
greedy decoding, the bundle's budgets, focus hint on), exactly as `edge run` runs it, through
`benchmarks.accuracy.run_eval`: every answer is appended to OUT/eval/CELL.jsonl as it is made
(a killed run continues where it stopped) and OUT/eval/CELL.json marks the cell finished.

Scoring: multiple-choice items by the option letter (`accuracy.is_correct`); the open-answer
held-out items by `benchmarks.open_answer.score` (normalised gold or a listed synonym), with
`form_ok` beside it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass, replace
from pathlib import Path

from benchmarks.accuracy import EvalConfig, run_eval
from benchmarks.eval_items import EvalItem, load_items
from benchmarks.open_answer import form_ok, score
from benchmarks.study.grid import Cell
from benchmarks.study.presets import Preset
from runtime.atomic import atomic_write_text
from runtime.errors import ConfigError
from runtime.pipeline import ExtractThink
from runtime.progress import Progress

log = logging.getLogger(__name__)

# split -> (folder under OUT, items file)
SPLIT_FILES = {"id": ("data", "test_iid.jsonl"), "hc": ("data", "test.jsonl"),
               "hw": ("heldout-mc", "heldout.jsonl"), "hw-open": ("heldout-open", "heldout.jsonl")}


@dataclass(frozen=True)
class Row:
    """One scored answer of one cell."""

    id: str
    split: str
    cluster: str  # the image: the bootstrap resamples these
    category: str  # ID / HC: the world's MMStar-like category; HW: the question type
    qtype: str  # ID / HC: the question type; HW: the question type again
    correct: bool
    form: bool | None  # open answers: in the form the question asks for
    mc: bool


def split_path(out: Path, split: str) -> Path:
    folder, name = SPLIT_FILES[split]
    return out / folder / name


def raw_records(out: Path, split: str) -> dict[str, dict]:
    """The split file's rows by id (what `EvalItem` leaves out: qtype, scene, form, picture)."""
    rows = {}
    for line in split_path(out, split).read_text(encoding="utf-8").splitlines():
        if line.strip():
            rec = json.loads(line)
            rows[str(rec["id"])] = rec
    return rows


def split_items(out: Path, split: str, n: int) -> tuple[list[EvalItem], str]:
    """The split's first `n` items and the split file's sha256 (what resumed answers are keyed by)."""
    items, report = load_items(split_path(out, split), limit=n)
    return items, report.sha256


def bundle_id(bundle: Path) -> str:
    return hashlib.sha256((bundle / "manifest.json").read_bytes()).hexdigest()[:16]


def eval_config(cell: Cell) -> EvalConfig:
    return EvalConfig(mode=cell.mode, thinking=cell.thinking, hint=True, sampling="greedy")


def summary_path(out: Path, cell: Cell) -> Path:
    return out / "eval" / f"{cell.name}.json"


def cell_done(out: Path, cell: Cell) -> bool:
    path = summary_path(out, cell)
    if not path.is_file():
        return False
    try:
        return json.loads(path.read_text()).get("n_requested") == cell.n
    except (json.JSONDecodeError, OSError):
        return False


def evaluate_cell(out: Path, cell: Cell, preset: Preset, progress: Progress | None = None) -> dict:
    """Answer the cell's items with its bundle; returns (and writes) the cell's summary."""
    items, data_sha256 = split_items(out, cell.split, cell.n)
    if cell.blank:
        items = [replace(it, image=out / "blank.png") for it in items]
    bundle = out / "bundles" / cell.system
    if not (bundle / "manifest.json").is_file():
        raise ConfigError(f"{bundle}: the system {cell.system} has not been exported")
    t0 = time.perf_counter()

    def step(message: str, fraction: float) -> None:  # run_eval reports "<tag>: done/total"
        if progress is not None:
            progress(f"eval {cell.name}: {message.rsplit(': ', 1)[-1]}", fraction)

    with ExtractThink.load(bundle, backend="llamacpp", threads=preset.run.threads, verify="size",
                           gpu_layers=preset.run.gpu_layers) as et:
        summary = run_eval(et, items, eval_config(cell), out / "eval" / f"{cell.name}.jsonl",
                           bundle_id=bundle_id(bundle), data_sha256=data_sha256, progress=step)
    summary.update(cell=cell.name, system=cell.system, split=cell.split, n_requested=cell.n,
                   blank=cell.blank, wall_seconds=round(time.perf_counter() - t0, 2))
    atomic_write_text(summary_path(out, cell), json.dumps(summary, indent=1))
    return summary


def read_rows(out: Path, cell: Cell, raw: dict[str, dict]) -> list[Row]:
    """The finished cell's answers, scored (see the module doc)."""
    path = out / "eval" / f"{cell.name}.jsonl"
    wanted = set(list(raw)[: cell.n])  # the first n items of the split, as evaluated
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        rec = json.loads(line)
        if str(rec["id"]) not in wanted:
            continue
        item = raw[str(rec["id"])]
        heldout = cell.split.startswith("hw")
        mc = bool(item.get("options"))
        if cell.split == "hw-open":
            correct, form = score(rec.get("prediction"), item), form_ok(rec.get("prediction"), item)
        else:
            correct, form = bool(rec.get("correct")), None
        rows.append(Row(
            id=str(rec["id"]), split=cell.split,
            cluster=str(rec["id"]) if heldout else f"{cell.split}:{item['scene_id']}",
            category=str(item["category"]), qtype=str(item["category"] if heldout else item["qtype"]),
            correct=correct, form=form, mc=mc,
        ))
    if len(rows) < cell.n:
        log.warning("cell %s has %d of %d answers", cell.name, len(rows), cell.n)
    return rows
