"""Accuracy of a bundle on a question set: per category, with confidence intervals.

`run_eval` answers every item through the pipeline (`ExtractThink.answer`), grades it and
appends the row to a resumable predictions file (`benchmarks.predictions`); accuracy is
recomputed from the rows of the items asked for at the end. Items come from
`benchmarks.eval_items.load_items`; the summary's markdown and sweeps from
`benchmarks.eval_report`.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from benchmarks.eval_items import EvalItem
from benchmarks.predictions import PredictionsFile, fingerprint, item_key
from benchmarks.stats import summarize, wilson_interval
from runtime.errors import ConfigError, EdgeError
from runtime.pipeline import MODES
from runtime.progress import Progress, report

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EvalConfig:
    mode: str = "extract-think"
    thinking: bool = True
    thinking_budget: int | None = None  # None: the bundle's default
    hint: bool = True
    hint_budget: int | None = None
    extraction_budget: int | None = None
    answer_budget: int | None = None
    sampling: str = "paper"  # "paper" | "greedy"
    seed: int = 0

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"unknown mode {self.mode!r} (choose from {', '.join(MODES)})")
        if self.sampling not in ("paper", "greedy"):
            raise ConfigError(f"sampling must be paper or greedy, not {self.sampling!r}")
        for name in ("thinking_budget", "hint_budget", "extraction_budget", "answer_budget"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 0):
                raise ConfigError(f"{name.replace('_', ' ')} must be an integer >= 0, got {v!r}")

    @property
    def tag(self) -> str:
        """A short file-name tag: mode, thinking and its budget."""
        think = "nothink" if not self.thinking or self.mode == "end-to-end" else \
            f"think{self.thinking_budget if self.thinking_budget is not None else 'default'}"
        return f"{self.mode}-{think}"


def item_seed(base: int, item_id: str) -> int:
    """A per-item sampling seed independent of order, so a resumed run draws the same."""
    return (base + int.from_bytes(hashlib.sha256(item_id.encode()).digest()[:4], "little")) % (2**31)


def evaluate_item(et: Any, item: EvalItem, cfg: EvalConfig, config_id: str, key: str) -> dict:
    """Run one item through the pipeline and grade it; errors become wrong answers."""
    t0 = time.perf_counter()
    rec: dict[str, Any] = {"id": item.id, "key": key, "config": config_id, "category": item.category,
                           "question": item.question, "options": list(item.options) if item.options else None,
                           "gold": item.answer}
    try:
        res = et.answer(
            item.image if cfg.mode != "blind" else None, item.question, list(item.options) if item.options else None,
            mode=cfg.mode, thinking=cfg.thinking, hint=cfg.hint, hint_budget=cfg.hint_budget,
            extraction_budget=cfg.extraction_budget, thinking_budget=cfg.thinking_budget,
            answer_budget=cfg.answer_budget, sampling=cfg.sampling, seed=item_seed(cfg.seed, item.id),
        )
    except EdgeError as exc:
        rec.update(prediction=None, correct=False, answer_found=False, error=str(exc),
                   seconds=round(time.perf_counter() - t0, 4))
        return rec
    rec.update(
        prediction=res.answer, correct=item.grade(res.answer), answer_found=res.answer_found,
        answer_source=res.answer_source, answer_text=res.answer_text, hint=res.hint, extraction=res.extraction,
        thinking=res.thinking, seconds=round(res.seconds, 4),
        tokens={name: st.tokens for name, st in res.stages.items() if name != "vision"},
        image_tokens=res.stages["vision"].tokens if "vision" in res.stages else None,
        budgets=dict(res.budgets), forced_answer=any(e.kind == "force_answer" for e in res.budget_events),
        error=None,
    )
    return rec


def run_eval(et: Any, items: Sequence[EvalItem], cfg: EvalConfig, predictions: str | Path, *,
             bundle_id: str, data_sha256: str, fresh: bool = False, progress: Progress | None = None) -> dict:
    """Evaluate `items`, reusing the rows `predictions` already holds for exactly these
    items (same data file, question, options, image and gold answer) and settings; returns
    the summary. `data_sha256` is the data file's (`ItemReport.sha256`)."""
    config_id = fingerprint(asdict(cfg), bundle_id, et.backends())
    keys = [item_key(it, data_sha256) for it in items]
    with PredictionsFile(predictions, config_id, fresh=fresh) as store:
        reused = store.reusable(keys)
        if reused:
            others = len(set(store.rows) - set(keys))
            # a warning, so it shows at the CLI's default level: the summary will count
            # rows this command did not compute
            log.warning("resuming from %s: reusing %d of %d rows%s", store.path, reused, len(items),
                        f" ({others} rows of other data or items there are left as they are)" if others else "")
        todo = [(it, k) for it, k in zip(items, keys, strict=True) if k not in store.rows]
        report(progress, f"{cfg.tag}: {reused}/{len(items)}", reused / len(items))
        for i, (item, key) in enumerate(todo, 1):
            rec = evaluate_item(et, item, cfg, config_id, key)
            store.append(rec)
            log.info("%s %s -> %r (gold %r, %.2f s)%s", "ok " if rec["correct"] else "   ", item.id,
                     rec["prediction"], rec["gold"], rec["seconds"], f" error: {rec['error']}" if rec["error"] else "")
            report(progress, f"{cfg.tag}: {reused + i}/{len(items)}", (reused + i) / len(items))
        # the item's category as the data says now (it is not part of the key)
        records = [dict(store.rows[k], category=it.category) for it, k in zip(items, keys, strict=True)]
    summary = summarize_records(records)
    summary.update(mode=cfg.mode, thinking=cfg.thinking and cfg.mode != "end-to-end",
                   thinking_budget=cfg.thinking_budget, sampling=cfg.sampling, config=config_id,
                   data_sha256=data_sha256, predictions=str(predictions), resumed=reused, evaluated=len(todo),
                   backend=et.backends())
    return summary


def summarize_records(records: Iterable[dict]) -> dict:
    """Accuracy overall and per category (Wilson 95% intervals), budgets used, latency."""
    records = list(records)
    n = len(records)
    correct = sum(1 for r in records if r.get("correct"))
    cats: dict[str, list[dict]] = {}
    for r in records:
        cats.setdefault(str(r.get("category") or "all"), []).append(r)
    categories = {}
    for name in sorted(cats):
        rs = cats[name]
        c = sum(1 for r in rs if r.get("correct"))
        categories[name] = {"accuracy": c / len(rs), "n": len(rs), "correct": c,
                            "ci95": list(wilson_interval(c, len(rs)))}
    used: dict[str, list[float]] = {}
    for r in records:
        for stage, k in (r.get("tokens") or {}).items():
            used.setdefault(stage, []).append(k)
    return {
        "accuracy": correct / n if n else 0.0,
        "n": n,
        "correct": correct,
        "ci95": list(wilson_interval(correct, n)),
        "categories": categories,
        "answered": sum(1 for r in records if r.get("answer_found")) / n if n else 0.0,
        "forced_answers": sum(1 for r in records if r.get("forced_answer")),
        "errors": sum(1 for r in records if r.get("error")),
        "latency_s": summarize(r.get("seconds") for r in records if r.get("seconds") is not None),
        "tokens_used": {stage: summarize(v) for stage, v in sorted(used.items())},
    }
