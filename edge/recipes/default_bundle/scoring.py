"""Scoring answers, the baselines, and paired differences between systems.

Every answer is scored with `benchmarks.open_answer.score`: case, punctuation, articles and
plural forms are normalised and only the gold answer or a listed synonym earns credit (no
substring credit); a multiple-choice answer must name the gold option. Chance on the
training world: 1/(number of options) for multiple choice; for open questions, the accuracy
of always giving the most frequent training answer of that question type. On the held-out
world the baseline is `open_answer.majority_baseline` (counted on the split's reference draw).
"""

from __future__ import annotations

import random
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence

from benchmarks.open_answer import form_ok, normalise, score
from benchmarks.stats import wilson_interval
from training.data.language import plural
from training.data.vocabulary import COLOR_ALIASES, COLORS, SHAPE_ALIASES, SHAPES

_VALUE_WORDS = {*COLORS, *SHAPES, *(a for v in (*COLOR_ALIASES.values(), *SHAPE_ALIASES.values()) for a in v)}
_MASKED = _VALUE_WORDS | {plural(w) for w in _VALUE_WORDS}


def is_correct(rec: dict, answer: str | None) -> bool:
    """Multiple choice: the gold option (its letter or its exact text). Open: the answer or a
    listed alias, after normalising (benchmarks.open_answer.score)."""
    return score(answer, rec)


def right_form(rec: dict, answer: str | None) -> bool:
    """The answer has the form the question asks for (yes/no, a colour word, a number...)."""
    return form_ok(answer, rec)


def _accepted(rec: dict) -> set[str]:
    return {normalise(rec["answer"]), *(normalise(a) for a in rec.get("aliases") or [])}


def majority_answers(train_records: Iterable[dict]) -> dict[str, str]:
    """Most frequent open answer per question type (the open-question chance baseline)."""
    counts: dict[str, Counter] = defaultdict(Counter)
    for rec in train_records:
        if not rec.get("options"):
            counts[rec["qtype"]][normalise(rec["answer"])] += 1
    return {q: min(c.items(), key=lambda kv: (-kv[1], kv[0]))[0] for q, c in counts.items()}


def chance_of(rec: dict, majority: dict[str, str]) -> float:
    if rec.get("options"):
        return 1.0 / len(rec["options"])
    return 1.0 if majority.get(rec["qtype"]) in _accepted(rec) else 0.0


def summarize(rows: list[dict], key: str) -> dict[str, dict[str, float]]:
    """category -> {accuracy, n, ci95} (plus "overall") for one score column of `rows`
    (accuracy and interval in %; the interval is Wilson's, for 0/1 scores only)."""
    by: dict[str, list[float]] = defaultdict(list)
    for r in rows:
        by[r["category"]].append(float(r[key]))
        by["overall"].append(float(r[key]))
    out = {}
    for c, v in by.items():
        entry: dict = {"accuracy": 100.0 * sum(v) / len(v), "n": len(v)}
        if all(x in (0.0, 1.0) for x in v):
            lo, hi = wilson_interval(int(sum(v)), len(v))
            entry["ci95"] = [100.0 * lo, 100.0 * hi]
        out[c] = entry
    return out


def paired_difference(a: Sequence[bool], b: Sequence[bool], *, resamples: int = 10_000,
                      seed: int = 0) -> dict[str, float]:
    """Accuracy of `a` minus that of `b` on the same items, in points, with a 95% paired
    bootstrap interval (items resampled with replacement, fixed seed)."""
    if len(a) != len(b) or not a:
        raise ValueError("paired scores must cover the same, non-empty items")
    diffs = [int(x) - int(y) for x, y in zip(a, b, strict=True)]
    n = len(diffs)
    rng = random.Random(seed)
    stats = sorted(sum(diffs[rng.randrange(n)] for _ in range(n)) / n for _ in range(resamples))
    lo, hi = stats[int(0.025 * resamples)], stats[min(resamples - 1, int(0.975 * resamples))]
    return {"diff": 100.0 * sum(diffs) / n, "ci95": [100.0 * lo, 100.0 * hi], "n": n,
            "discordant": sum(1 for d in diffs if d)}


def wording_key(question: str) -> str:
    """A question's wording with its colour, shape and number words masked, lower case, no
    final mark: "Is there a red star?" and "is there a blue circle" share one key."""
    words = re.findall(r"[a-z0-9']+", question.lower())
    return " ".join("X" if w in _MASKED else "N" if w.isdigit() else "a" if w == "an" else w for w in words)


def split_by_wording(rows: list[dict], items: Sequence[dict], trained: set[str]) -> dict[str, dict]:
    """Accuracy (Wilson 95%) on the items whose `wording_key` occurs among the training
    questions (`trained`, a set of keys) and on the rest."""
    seen = {it["id"]: wording_key(it["question"]) in trained for it in items}
    out = {}
    for part, flag in (("seen", True), ("unseen", False)):
        hits = [bool(r["correct"]) for r in rows if seen.get(r["id"]) is flag]
        lo, hi = wilson_interval(sum(hits), len(hits))
        out[part] = {"accuracy": 100.0 * sum(hits) / len(hits) if hits else 0.0, "n": len(hits),
                     "ci95": [100.0 * lo, 100.0 * hi]}
    return out
