"""The study as a graph of jobs, what each job does, and what the graph is estimated to cost.

    data, heldout-mc, heldout-open      the worlds (OUT/data, OUT/heldout-*)
    tokenizer                           after data
    vision                              the tower (then saved as OUT/tower)
    train:STAGE                         each stage the evaluated systems need, after the stages it starts from
    export:SYSTEM                       a GGUF bundle of the system's final checkpoints
    eval:CELL                           a system on one split (benchmarks.study.evaluation)

A job whose output is already in the study folder is left out of the graph (resuming is
this, plus the stage runner's checkpoints and run_eval's per-answer file).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from benchmarks.study import data as study_data
from benchmarks.study.evaluation import cell_done, evaluate_cell
from benchmarks.study.grid import SYSTEMS, Cell, cells, needed_stages, stage_order, stage_recipes
from benchmarks.study.presets import LAPTOP_RATES, Preset
from benchmarks.study.scheduler import Job, simulate, worker_progress
from runtime.atomic import atomic_write_text
from training.config import Recipe, recipe_from_data
from training.data.heldout import SPLIT_FILE
from training.stage_result import stage_summary

log = logging.getLogger(__name__)


def recipes(preset: Preset, out: Path) -> dict[str, Recipe]:
    return {k: recipe_from_data(v, where=f"study {k}") for k, v in stage_recipes(preset, out).items()}


def _stage_cost(preset: Preset, stage: str, rates: dict[str, float]) -> float:
    if stage == "vision":
        return preset.steps.vision * rates["vision"] + rates["stage_overhead"]
    kind, size = stage.rsplit("-", 1)
    steps = {"align": preset.steps.align, "instruct": preset.steps.instruct, "reasoner": preset.steps.reasoner}
    n = steps.get(kind, preset.steps.finetune)
    return n * rates.get(f"{kind}:{size}", 1.0) + rates["stage_overhead"]


def _eval_cost(cell: Cell, rates: dict[str, float]) -> float:
    key = "eval:nothink" if not cell.thinking and cell.mode != "end-to-end" else f"eval:{cell.mode}"
    return cell.n * rates[key] + 2.0


def plan(preset: Preset, out: Path, *, skip_done: bool = True) -> list[Job]:
    """Every job of the study; with `skip_done`, those whose output is in `out` are left out."""
    rates = preset.rates or LAPTOP_RATES
    d = preset.data
    cell_list = cells(preset)
    order = stage_order(preset)
    deps_of = {name: deps for _, name, deps in order}
    key_of = {name: key for key, name, _ in order}
    wanted = needed_stages(cell_list)
    todo = set(wanted)
    while True:  # the stages the wanted ones start from
        more = {d for s in todo for d in deps_of[s]} - todo
        if not more:
            break
        todo |= more
    per_item = rates["heldout_per_item"]
    jobs = [
        Job("data", "data", (), rates["data"] * (d.train + d.test + d.test_iid) / 4800),
        Job("heldout-mc", "heldout", (), per_item * (d.heldout + 2000), {"multiple_choice": True}),
        Job("heldout-open", "heldout", (), per_item * (d.heldout_open + 2000), {"multiple_choice": False}),
        Job("tokenizer", "tokenizer", ("data",), 10.0),
    ]
    recipe_set = recipes(preset, out)
    for key, name, deps in order:
        if name not in todo:
            continue
        first = ("tokenizer",) if name == "vision" or preset.models.pretrained or name.startswith("reasoner") else ()
        jobs.append(Job(f"train:{name}", "vision" if name == "vision" else "train",
                        tuple(f"train:{x}" for x in deps) + first, _stage_cost(preset, name, rates),
                        {"recipe": key, "stage": name}))
    systems = sorted({c.system for c in cell_list})
    for system in systems:
        _, perception, reasoner = SYSTEMS[system]
        deps = (f"train:{perception}",) + ((f"train:{reasoner}",) if reasoner else ())
        jobs.append(Job(f"export:{system}", "export", deps, rates["export"] * (8 if system == "et-MM" else 1),
                        {"system": system}))
    for cell in cell_list:
        split_job = {"hw": "heldout-mc", "hw-open": "heldout-open"}.get(cell.split, "data")
        jobs.append(Job(f"eval:{cell.name}", "eval", (f"export:{cell.system}", split_job), _eval_cost(cell, rates),
                        {"cell": [cell.system, cell.split, cell.n, cell.thinking, cell.blank]}))
    if skip_done:
        jobs = [j for j in jobs if not job_done(j, preset, out, recipe_set, key_of)]
    return jobs


def job_done(job: Job, preset: Preset, out: Path, recipe_set: dict[str, Recipe], key_of: dict[str, str]) -> bool:
    if job.kind == "data":
        return (out / "data" / "dataset.json").is_file()
    if job.kind == "heldout":
        return (out / job.name / SPLIT_FILE).is_file()
    if job.kind == "tokenizer":
        return (out / "tokenizer" / "tokenizer.json").is_file()
    if job.kind in ("train", "vision"):
        stage = job.args["stage"]
        summary = stage_summary(recipe_set[key_of[stage]], stage)
        finished = bool(summary and summary.get("complete"))
        return finished and (job.kind == "train" or (out / "tower" / "config.json").is_file())
    if job.kind == "export":
        return (out / "bundles" / job.args["system"] / "manifest.json").is_file()
    if job.kind == "eval":
        return cell_done(out, Cell(*job.args["cell"]))
    raise ValueError(f"unknown job kind {job.kind!r}")


def estimate(preset: Preset, out: Path) -> dict[str, Any]:
    """Process seconds per job kind and the wall time of the whole graph on the preset's
    workers, at the preset's measured rates (None: never measured)."""
    jobs = plan(preset, out, skip_done=False)  # costs at the preset's rates, or the laptop's
    by_kind: dict[str, float] = {}
    for j in jobs:
        by_kind[j.kind] = by_kind.get(j.kind, 0.0) + j.cost
    setup = (preset.rates or LAPTOP_RATES)["setup"] * preset.run.workers
    n_items = sum(Cell(*j.args["cell"]).n for j in jobs if j.kind == "eval")
    return {"measured": preset.rates is not None, "process_seconds": round(sum(by_kind.values()) + setup),
            "by_kind": {k: round(v) for k, v in by_kind.items()},
            "wall_seconds": round(simulate(jobs, preset.run.workers) + setup / max(preset.run.workers, 1)),
            "workers": preset.run.workers, "stages": sum(1 for j in jobs if j.kind in ("train", "vision")),
            "cells": sum(1 for j in jobs if j.kind == "eval"), "items": n_items}


# ---- in a worker -----------------------------------------------------------------------


def init_worker(threads: int) -> None:
    """Each worker process: its threads, and quiet library logging."""
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")


def run_one(job: Job, preset: Preset, out: str) -> dict[str, Any]:
    """Do one job (in a worker process or the caller's); returns what the report keeps of it."""
    root = Path(out)
    progress = worker_progress(job.name)
    if job.kind == "data":
        study_data.make_data(root, preset, progress)
    elif job.kind == "heldout":
        study_data.make_heldout(root, preset, multiple_choice=job.args["multiple_choice"], progress=progress)
    elif job.kind == "tokenizer":
        study_data.make_tokenizer(root, preset)
    elif job.kind in ("train", "vision"):
        return _train(job, preset, root, progress)
    elif job.kind == "export":
        _export(job.args["system"], preset, root, progress)
    elif job.kind == "eval":
        summary = evaluate_cell(root, Cell(*job.args["cell"]), preset, progress)
        return {"accuracy": summary["accuracy"], "n": summary["n"], "seconds": summary["wall_seconds"]}
    return {}


def _train(job: Job, preset: Preset, root: Path, progress: Any) -> dict[str, Any]:
    from training.loop import train_stage  # deferred: torch

    recipe = recipes(preset, root)[job.args["recipe"]]
    if preset.run.threads:
        import torch  # deferred: only a worker that trains needs it

        torch.set_num_threads(preset.run.threads)
    res = train_stage(recipe, job.args["stage"], progress=progress)
    if job.kind == "vision":
        study_data.save_tower(Path(res.final), root)
    return {"steps": res.steps, "first_loss": res.first_loss, "last_loss": res.last_loss,
            "train_seconds": round(res.seconds, 1)}


def _export(system: str, preset: Preset, root: Path, progress: Any) -> None:
    from export.bundle_writer import ExportRequest, export_bundle  # deferred: torch, gguf

    _, perception, reasoner = SYSTEMS[system]
    stages = root / "stages"
    export_bundle(ExportRequest(
        out=root / "bundles" / system, perception=stages / perception / "final",
        reasoner=stages / reasoner / "final" if reasoner else None, formats=("gguf",), quants=(preset.run.quant,),
        name=f"study-{system}", budgets=preset.budgets, overwrite=True,
        # the parity check (llama.cpp against transformers) once, on the system every finding uses
        verify=system == "et-MM",
    ), progress=progress)


def write_recipes(preset: Preset, out: Path) -> None:
    """The recipes as JSON files (`edge train list --recipe OUT/recipes/S.json` reads them)."""
    folder = out / "recipes"
    folder.mkdir(parents=True, exist_ok=True)
    for key, data in stage_recipes(preset, out).items():
        atomic_write_text(folder / f"{key}.json", json.dumps(data, indent=1))
