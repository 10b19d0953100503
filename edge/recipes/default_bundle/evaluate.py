"""Measure the exported systems with the runtime's own pipeline.

Three systems are compared, each exported to a bundle and run by
`runtime.pipeline.ExtractThink` (llama.cpp backend, greedy decoding, the bundle's budgets,
NoWait on) exactly as `edge run` runs them:

    Extract+Think   extraction-tuned perception + reasoner   mode "extract-think" (focus hint on)
    Caption+Think   caption-tuned perception + same reasoner mode "caption-think"
    end-to-end      instruction-tuned perception, answering  mode "end-to-end"

on the training world's test splits (held-out compositions, in-distribution) and on the
held-out world (docs/heldout.md: another renderer and wording, never trained on), open
and multiple choice. Raw rows (every answer with its stage texts) go to
RUN/eval/SPLIT-MODE.jsonl, appended as they come: an interrupted evaluation continues
after the last complete row, and a finished file is reused. Jobs run `run.workers` at a
time, each in its own one-thread process.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from contextlib import ExitStack
from pathlib import Path

from benchmarks.open_answer import score_records
from edge.recipes.default_bundle.bundles import export_baseline
from edge.recipes.default_bundle.config import SPLITS, SYSTEMS, DefaultBundleRun
from edge.recipes.default_bundle.scoring import (
    chance_of,
    is_correct,
    majority_answers,
    paired_difference,
    right_form,
    split_by_wording,
    summarize,
    wording_key,
)
from runtime.pipeline import ExtractThink
from runtime.progress import Progress
from training.config import Recipe
from training.data.heldout import read_split
from training.data.synth import SynthDataset

log = logging.getLogger(__name__)


def _row(rec: dict, res) -> dict:
    return {"id": rec["id"], "category": rec["category"], "qtype": rec.get("qtype", rec["category"]),
            "answer": res.answer, "correct": is_correct(rec, res.answer), "form_ok": right_form(rec, res.answer),
            "hint": res.hint, "extraction": res.extraction, "thinking": res.thinking,
            "answer_text": res.answer_text, "tokens": {k: s.tokens for k, s in res.stages.items()}}


def _read_rows(path: Path) -> list[dict]:
    """The complete rows of a (possibly interrupted) evaluation file."""
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:  # a torn last line: answered again
            break
    return rows


def run_system(bundle: Path, mode: str, records: list[dict], data_dir: Path, *, hint: bool = True,
               sampling: str = "greedy", threads: int = 1, progress: Progress | None = None,
               out: Path | None = None) -> list[dict]:
    """Answer `records` with one bundle; one row per record (answer, correct, right form,
    stage texts). With `out`, rows already there are kept and new ones appended."""
    progress = progress or (lambda m, f: None)
    rows = _read_rows(out) if out is not None else []
    done = {r["id"] for r in rows}
    if out is not None:  # rewrite without a torn tail before appending
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    todo = [r for r in records if r["id"] not in done]
    if todo:
        with ExitStack() as stack:
            et = stack.enter_context(ExtractThink.load(bundle, backend="llamacpp", threads=threads, verify="size"))
            fh = stack.enter_context(open(out, "a", encoding="utf-8")) if out is not None else None
            for i, rec in enumerate(todo):
                res = et.answer(str(data_dir / rec["image"]), rec["question"], rec.get("options"), mode=mode,
                                hint=hint, sampling=sampling)
                row = _row(rec, res)
                rows.append(row)
                if fh is not None:
                    fh.write(json.dumps(row) + "\n")
                    fh.flush()
                if i % 10 == 0 or i + 1 == len(todo):
                    progress(f"{mode}: {len(rows)}/{len(records)}", len(rows) / len(records))
    order = {r["id"]: k for k, r in enumerate(records)}
    return sorted((r for r in rows if r["id"] in order), key=lambda r: order[r["id"]])


def _job(bundle: str, mode: str, records: list[dict], data_dir: str, out: str) -> str:
    """One evaluation (a process of its own): rows into `out`.partial, renamed when complete."""
    partial = Path(out + ".partial")
    rows = run_system(Path(bundle), mode, records, Path(data_dir), out=partial)
    if len(rows) == len(records):
        partial.replace(out)
    return out


def _finished(path: Path, n: int) -> list[dict] | None:
    rows = _read_rows(path)
    return rows if len(rows) == n and path.is_file() else None


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(x) for x in Path(path).read_text(encoding="utf-8").splitlines() if x.strip()]


def _heldout_items(folder: Path) -> tuple[list[dict], list[dict]]:
    """(items, reference draw) of a held-out world split folder."""
    _, items_path, ref_path = read_split(folder)
    return _jsonl(items_path), _jsonl(ref_path)


def evaluate_all(recipe: Recipe, run: DefaultBundleRun, bundle: Path, heldout: dict[str, Path] | None = None, *,
                 modes: tuple[str, ...] = tuple(SYSTEMS), progress: Progress | None = None) -> tuple[dict, bool]:
    """Accuracy per split, system and category (+ chance), and the held-out world's scores;
    (scores, every row was reused)."""
    progress = progress or (lambda m, f: None)
    ds = SynthDataset(run.data_dir)
    bundles = {"extract-think": bundle}
    for mode in modes:
        if mode != "extract-think":
            bundles[mode] = export_baseline(recipe, run.bundles_dir, mode)
    splits: dict[str, tuple[list[dict], Path]] = {}
    for split in SPLITS:
        if split in ds.splits:
            splits[split] = (list(ds.records(split))[: run.eval_limit or None], run.data_dir)
    references = {}
    for form, folder in (heldout or {}).items():
        items, references[form] = _heldout_items(folder)
        splits[form] = (items[: run.eval_limit or None], folder)
    jobs = [(s, m) for s in splits for m in modes]
    rows: dict[tuple[str, str], list[dict]] = {}
    for s, m in jobs:
        found = _finished(run.eval_dir / f"{s}-{m}.jsonl", len(splits[s][0]))
        if found is not None:
            rows[(s, m)] = found
    reused = len(rows) == len(jobs)
    todo = [j for j in jobs if j not in rows]
    if todo:
        _run_jobs(todo, splits, bundles, run, progress, len(jobs))
        for s, m in todo:
            rows[(s, m)] = _read_rows(run.eval_dir / f"{s}-{m}.jsonl")
    scores: dict = {"splits": {}, "systems": {m: SYSTEMS[m][0] for m in modes}, "n_multiple_choice": {},
                    "heldout": {}}
    train = list(ds.records("train"))
    majority = majority_answers(train)
    for split in (s for s in SPLITS if s in splits):
        records = splits[split][0]
        sc = scores["splits"][split] = {m: summarize(rows[(split, m)], "correct") for m in modes}
        sc["chance"] = summarize([{"category": r["category"], "chance": chance_of(r, majority)} for r in records],
                                 "chance")
        scores["n_multiple_choice"][split] = sum(1 for r in records if r.get("options"))
    trained = {wording_key(r["question"]) for r in train}
    for form in references:
        scores["heldout"][form] = heldout_scores(splits[form][0], {m: rows[(form, m)] for m in modes},
                                                 references[form], trained)
    return scores, reused


def _run_jobs(todo: list[tuple[str, str]], splits: dict, bundles: dict, run: DefaultBundleRun,
              progress: Progress, n_jobs: int) -> None:
    run.eval_dir.mkdir(parents=True, exist_ok=True)
    # spawn: a fresh interpreter per worker (llama.cpp and torch state are not fork-safe)
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=max(1, run.workers), mp_context=ctx) as pool:
        futures = {pool.submit(_job, str(bundles[m]), m, splits[s][0], str(splits[s][1]),
                               str(run.eval_dir / f"{s}-{m}.jsonl")): (s, m) for s, m in todo}
        done_n = n_jobs - len(todo)
        pending = set(futures)
        while pending:
            finished, pending = wait(pending, return_when=FIRST_COMPLETED)
            for f in finished:
                f.result()  # an evaluation that failed stops the run with its error
                done_n += 1
                progress(f"evaluated {futures[f][0]} {futures[f][1]}", done_n / n_jobs)


def heldout_scores(items: list[dict], rows: dict[str, list[dict]], reference: list[dict],
                   trained_wordings: set[str] | None = None) -> dict:
    """Per system: accuracy and right-form rate per question type (Wilson 95%), the yes/no
    right-form rate; the majority baseline; Extract+Think minus each other system, paired;
    with `trained_wordings` (`scoring.wording_key`s of the training questions), accuracy on
    the items worded as some training question and on the rest."""
    out: dict = {"systems": {}, "yesno_form": {}, "paired": {}}
    if trained_wordings is not None:
        out["wording"] = {m: split_by_wording(mrows, items, trained_wordings) for m, mrows in rows.items()}
    for mode, mrows in rows.items():
        preds = [{"id": r["id"], "prediction": r["answer"]} for r in mrows]
        summary = score_records(items, preds, reference=reference)
        out["baseline"] = summary.pop("baseline")
        out["systems"][mode] = summary
        yn = [r["form_ok"] for r in mrows if r["category"] in ("exists", "negation", "verify")]
        out["yesno_form"][mode] = {"n": len(yn), "rate": 100.0 * sum(yn) / len(yn) if yn else 0.0}
    if "extract-think" in rows:
        et = [r["correct"] for r in rows["extract-think"]]
        for mode, mrows in rows.items():
            if mode != "extract-think":
                out["paired"][mode] = paired_difference(et, [r["correct"] for r in mrows])
    return out
