"""Read every evaluated cell back, score it, set it against its baseline, and judge the findings.

Baseline of an item: a uniform pick among its options (multiple choice); for an open question
of the synthetic world, whether the most common training answer of its question type is right;
for an open held-out item, whether its type's most common answer in the split's reference draw
(another seed) is right (`benchmarks.open_answer.majority_baseline`). A system has *learned* the
task when the low end of its in-domain accuracy interval is above the in-domain baseline.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from benchmarks.grading import normalize_answer
from benchmarks.open_answer import majority_baseline, score
from benchmarks.study.bootstrap import Table, bootstrap
from benchmarks.study.evaluation import Row, cell_done, raw_records, read_rows, split_path
from benchmarks.study.grid import Cell, cells
from benchmarks.study.presets import Preset
from benchmarks.study.verdicts import FINDINGS
from training.data.heldout import REFERENCE_FILE
from training.data.synth import SynthDataset


def _accepted(rec: dict) -> set[str]:
    return {normalize_answer(rec["answer"]), *(normalize_answer(a) for a in rec.get("aliases") or [])}


def item_baselines(out: Path, split: str, raw: dict[str, dict]) -> dict[str, float]:
    """Each item's baseline score (see the module doc)."""
    if split in ("id", "hc"):
        counts: dict[str, Counter] = defaultdict(Counter)
        for rec in SynthDataset(out / "data").records("train"):
            if not rec.get("options"):
                counts[rec["qtype"]][normalize_answer(rec["answer"])] += 1
        majority = {q: c.most_common(1)[0][0] for q, c in counts.items()}
        return {i: (1.0 / len(r["options"]) if r.get("options") else float(majority.get(r["qtype"]) in _accepted(r)))
                for i, r in raw.items()}
    if split == "hw":
        return {i: 1.0 / len(r["options"]) for i, r in raw.items()}
    reference = [json.loads(x) for x in (split_path(out, split).parent / REFERENCE_FILE).read_text().splitlines()
                 if x.strip()]
    answers = {c: v["answer"] for c, v in majority_baseline(list(raw.values()), reference=reference)["categories"].items()}
    return {i: float(answers.get(r["category"]) is not None and score(answers[r["category"]], r)) for i, r in raw.items()}


class Results:
    """The scored rows of every finished cell, by (system, split, thinking, blank)."""

    def __init__(self, out: Path, preset: Preset) -> None:
        self.out, self.preset = out, preset
        self.cells = [c for c in cells(preset) if cell_done(out, c)]
        self.missing = [c.name for c in cells(preset) if not cell_done(out, c)]
        splits = sorted({c.split for c in self.cells})
        self.raw = {s: raw_records(out, s) for s in splits}
        self.rows = {(c.system, c.split, c.thinking, c.blank): read_rows(out, c, self.raw[c.split]) for c in self.cells}
        self.by_cell = {c.name: self.rows[(c.system, c.split, c.thinking, c.blank)] for c in self.cells}
        self.baseline = {s: item_baselines(out, s, self.raw[s]) for s in splits}
        self._summaries: dict[str, dict] = {}

    def get(self, system: str, splits: Sequence[str], thinking: bool = True, blank: bool = False) -> list[Row]:
        out: list[Row] = []
        for split in splits:
            out += self.rows.get((system, split, thinking, blank), [])
        return out

    def cell_summary(self, cell: Cell) -> dict:
        if cell.name not in self._summaries:
            self._summaries[cell.name] = self._summary(cell)
        return self._summaries[cell.name]

    def _summary(self, cell: Cell) -> dict:
        rows = self.by_cell[cell.name]
        est = bootstrap(Table({"x": rows}), lambda m: m.acc("x"), resamples=self.preset.run.bootstrap)
        base = float(np.mean([self.baseline[cell.split][r.id] for r in rows])) if rows else float("nan")
        out = {"cell": cell.name, "system": cell.system, "split": cell.split, "thinking": cell.thinking,
               "blank": cell.blank, "accuracy": est.to_dict(), "baseline": round(100 * base, 2),
               "above_baseline": bool(est.low > base)}
        if cell.split == "hw-open":
            out["form"] = round(100 * float(np.mean([bool(r.form) for r in rows])), 2)
        return out

    def learned(self) -> dict[str, bool]:
        """system -> its in-domain accuracy interval is above the in-domain baseline."""
        flags: dict[str, bool] = {}
        for c in self.cells:
            if c.split == "id" and c.thinking and not c.blank:
                flags[c.system] = self.cell_summary(c)["above_baseline"]
        return flags


def analyze(out: Path, preset: Preset) -> dict:
    """Cell summaries and the four findings with their verdicts."""
    res = Results(out, preset)
    learned = res.learned()
    findings = [f(res.get, learned, preset.margin / 100.0, preset.run.bootstrap) for f in FINDINGS]
    return {"cells": [res.cell_summary(c) for c in res.cells], "learned": learned, "missing_cells": res.missing,
            "findings": findings}
