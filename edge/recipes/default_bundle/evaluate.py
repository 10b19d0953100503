"""Measure the exported systems with the runtime's own pipeline.

Three systems are compared on the synthetic world's test splits, each exported to a
bundle and run by `runtime.pipeline.ExtractThink` (llama.cpp backend, greedy decoding,
the bundle's budgets, NoWait on) exactly as `edge run` runs them:

    Extract+Think   extraction-tuned perception + reasoner   mode "extract-think" (focus hint on)
    Caption+Think   caption-tuned perception + same reasoner mode "caption-think"
    end-to-end      instruction-tuned perception, answering  mode "end-to-end"

plus chance (`scoring.chance_of`). Raw rows (every answer with its stage texts) are kept
in RUN/eval/SPLIT-MODE.jsonl; a finished file is reused on the next run.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from edge.recipes.default_bundle.bundles import export_baseline
from edge.recipes.default_bundle.config import SPLITS, SYSTEMS, DefaultBundleRun
from edge.recipes.default_bundle.scoring import chance_of, is_correct, majority_answers, summarize
from runtime.atomic import atomic_write_text
from runtime.pipeline import ExtractThink
from runtime.progress import Progress
from training.config import Recipe
from training.data.synth import SynthDataset

log = logging.getLogger(__name__)


def run_system(bundle: Path, mode: str, records: list[dict], data_dir: Path, *, hint: bool = True,
               sampling: str = "greedy", threads: int = 1, progress: Progress | None = None) -> list[dict]:
    """Answer `records` with one bundle; one row per record (answer, correct, stage texts)."""
    progress = progress or (lambda m, f: None)
    out = []
    with ExtractThink.load(bundle, backend="llamacpp", threads=threads, verify="size") as et:
        for i, rec in enumerate(records):
            res = et.answer(str(data_dir / rec["image"]), rec["question"], rec.get("options"), mode=mode,
                            hint=hint, sampling=sampling)
            out.append({"id": rec["id"], "category": rec["category"], "qtype": rec["qtype"],
                        "answer": res.answer, "correct": is_correct(rec, res.answer),
                        "hint": res.hint, "extraction": res.extraction, "thinking": res.thinking,
                        "answer_text": res.answer_text,
                        "tokens": {k: s.tokens for k, s in res.stages.items()}})
            if i % 10 == 0 or i + 1 == len(records):
                progress(f"{mode}: {i + 1}/{len(records)}", (i + 1) / len(records))
    return out


def _read_rows(raw: Path, expected: int) -> list[dict] | None:
    """The rows of a finished evaluation file, None when it is missing or incomplete."""
    if not raw.is_file():
        return None
    lines = raw.read_text().splitlines()
    return [json.loads(x) for x in lines] if len(lines) == expected else None


def evaluate_all(recipe: Recipe, run: DefaultBundleRun, bundle: Path, *,
                 modes: tuple[str, ...] = tuple(SYSTEMS),
                 progress: Progress | None = None) -> tuple[dict, bool]:
    """Accuracy per split, system and category (+ chance); (scores, every row was reused)."""
    progress = progress or (lambda m, f: None)
    ds = SynthDataset(run.data_dir)
    majority = majority_answers(ds.records("train"))
    bundles = {"extract-think": bundle}
    for mode in modes:
        if mode != "extract-think":
            bundles[mode] = export_baseline(recipe, run.bundles_dir, mode)
    scores: dict = {"splits": {}, "systems": {m: SYSTEMS[m][0] for m in modes}, "n_multiple_choice": {}}
    jobs = [(s, m) for s in SPLITS if s in ds.splits for m in modes]
    reused = True
    for j, (split, mode) in enumerate(jobs):
        records = list(ds.records(split))[: run.eval_limit or None]
        raw = run.eval_dir / f"{split}-{mode}.jsonl"
        rows = _read_rows(raw, len(records))
        if rows is None:
            reused = False
            rows = run_system(bundles[mode], mode, records, run.data_dir,
                              progress=lambda m, f, _j=j, _s=split: progress(f"{_s} {m}", (_j + f) / len(jobs)))
            atomic_write_text(raw, "".join(json.dumps(r) + "\n" for r in rows))
        split_scores = scores["splits"].setdefault(split, {})
        split_scores[mode] = summarize(rows, "correct")
        if "chance" not in split_scores:
            chance_rows = [{"category": r["category"], "chance": chance_of(r, majority)} for r in records]
            split_scores["chance"] = summarize(chance_rows, "chance")
            scores["n_multiple_choice"][split] = sum(1 for r in records if r.get("options"))
    return scores, reused
