"""Scoring answers against the synthetic world's records, and the chance baseline.

Chance: 1/(number of options) for multiple choice; for open questions, the accuracy of
always giving the most frequent training answer of that question type.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Iterable


def _norm(text: str | None) -> str:
    return re.sub(r"[^\w]+", " ", (text or "").lower()).strip()


def _accepted(rec: dict) -> set[str]:
    return {_norm(rec["answer"]), *(_norm(a) for a in rec.get("aliases") or [])}


def is_correct(rec: dict, answer: str | None) -> bool:
    """Multiple choice: the option letter. Open: the answer or one of its aliases."""
    if rec.get("options"):
        return answer is not None and answer.strip().upper() == rec["answer"]
    return _norm(answer) in _accepted(rec)


def majority_answers(train_records: Iterable[dict]) -> dict[str, str]:
    """Most frequent open answer per question type (the open-question chance baseline)."""
    counts: dict[str, Counter] = defaultdict(Counter)
    for rec in train_records:
        if not rec.get("options"):
            counts[rec["qtype"]][_norm(rec["answer"])] += 1
    return {q: c.most_common(1)[0][0] for q, c in counts.items()}


def chance_of(rec: dict, majority: dict[str, str]) -> float:
    if rec.get("options"):
        return 1.0 / len(rec["options"])
    return 1.0 if majority.get(rec["qtype"]) in _accepted(rec) else 0.0


def summarize(rows: list[dict], key: str) -> dict[str, dict[str, float]]:
    """category -> {accuracy, n} (plus "overall") for one score column of `rows`."""
    by: dict[str, list[float]] = defaultdict(list)
    for r in rows:
        by[r["category"]].append(float(r[key]))
        by["overall"].append(float(r[key]))
    return {c: {"accuracy": 100.0 * sum(v) / len(v), "n": len(v)} for c, v in by.items()}
