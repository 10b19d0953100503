"""Accuracy of a bundle on a question set: per category, with confidence intervals.

Input: a JSONL file, one item per line

    {"id": "q1", "image": "images/1.png", "question": "...", "answer": "B",
     "options": ["red", "blue", "green"], "category": "color", "aliases": ["..."]}

(`image` relative to the file; `options` shown as A/B/C...; `answer` a letter or an
option's text for multiple choice, else the reference answer, with optional `aliases`;
extra keys such as the synthetic world's are ignored), or an MMStar-style parquet/TSV
read through `training.data.mmstar`.

Every finished item is appended to a predictions JSONL (flushed and fsynced) tagged with
a fingerprint of the settings, so a killed run continues where it stopped and never mixes
results of different settings. Accuracy is recomputed from that file at the end.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.stats import summarize, wilson_interval
from runtime.errors import ConfigError, EdgeError

log = logging.getLogger(__name__)

LETTERS = "ABCDEFGHIJ"
MODES = ("extract-think", "end-to-end", "caption-think", "blind")
Progress = Callable[[int, int, dict], None]  # (done, total, last record)


# ---- items ------------------------------------------------------------------------------


@dataclass(frozen=True)
class EvalItem:
    id: str
    question: str
    answer: str  # a letter for multiple choice, else the reference answer
    options: tuple[str, ...] | None = None
    category: str = "all"
    image: Path | bytes | None = None
    aliases: tuple[str, ...] = ()

    @property
    def gold_text(self) -> str:
        if self.options:
            return f"{self.answer}. {self.options[LETTERS.index(self.answer)]}"
        return self.answer


@dataclass
class ItemReport:
    """What was loaded and what was skipped (and why), like the data loaders report."""

    source: str
    total: int = 0
    loaded: int = 0
    problems: dict[str, int] = field(default_factory=dict)

    def bad(self, line: int, reason: str, detail: str) -> None:
        self.total += 1
        self.problems[reason] = self.problems.get(reason, 0) + 1
        n = sum(self.problems.values())
        if n <= 10:
            log.warning("%s line %d skipped: %s: %s%s", self.source, line, reason, detail,
                        " (further skipped lines are only counted)" if n == 10 else "")

    def ok(self) -> None:
        self.total += 1
        self.loaded += 1


def _mc_letter(answer: str, options: Sequence[str]) -> str | None:
    a = answer.strip()
    if len(a) == 1 and a.upper() in LETTERS[: len(options)]:
        return a.upper()
    if len(a) == 2 and a[1] in ".):" and a[0].upper() in LETTERS[: len(options)]:
        return a[0].upper()
    norm = [normalize_answer(o) for o in options]
    if normalize_answer(a) in norm:
        return LETTERS[norm.index(normalize_answer(a))]
    return None


def parse_item(obj: Any, base: Path, *, need_image: bool) -> EvalItem:
    """One JSONL object -> EvalItem; raises ValueError with the reason."""
    if not isinstance(obj, dict):
        raise ValueError("malformed: not a JSON object")
    rid = obj.get("id")
    if isinstance(rid, bool) or not isinstance(rid, (str, int)) or str(rid).strip() == "":
        raise ValueError("malformed: no id")
    q = obj.get("question")
    if not isinstance(q, str) or not q.strip():
        raise ValueError("malformed: no question")
    ans = obj.get("answer")
    if isinstance(ans, bool) or not isinstance(ans, (str, int, float)) or str(ans).strip() == "":
        raise ValueError("malformed: no answer")
    ans = str(ans).strip()
    opts = obj.get("options")
    options = None
    if opts is not None:
        if not isinstance(opts, list) or not all(isinstance(o, (str, int, float)) for o in opts):
            raise ValueError("malformed: options must be a list of strings")
        options = tuple(str(o).strip() for o in opts)
        if not 2 <= len(options) <= len(LETTERS) or any(not o for o in options):
            raise ValueError(f"malformed: {len(options)} options (2 to {len(LETTERS)} non-empty ones)")
        letter = _mc_letter(ans, options)
        if letter is None:
            raise ValueError(f"malformed: answer {ans!r} is neither an option letter nor an option's text")
        ans = letter
    cat = obj.get("category")
    category = str(cat).strip() if isinstance(cat, (str, int)) and str(cat).strip() else "all"
    aliases = obj.get("aliases") or ()
    if not isinstance(aliases, (list, tuple)):
        raise ValueError("malformed: aliases must be a list")
    image = None
    rel = obj.get("image")
    if rel is not None:
        if not isinstance(rel, str) or not rel.strip():
            raise ValueError("malformed: image must be a path")
        path = Path(rel)
        image = path if path.is_absolute() else base / path
        if not image.is_file():
            raise ValueError(f"missing image: {image}")
    elif need_image:
        raise ValueError("missing image: the item has no image")
    return EvalItem(str(rid).strip(), q.strip(), ans, options, category, image, tuple(str(a) for a in aliases))


def load_items(path: str | Path, *, need_image: bool = True, limit: int | None = None
               ) -> tuple[list[EvalItem], ItemReport]:
    """Items from a JSONL file (or MMStar-style .parquet/.tsv); bad rows skipped and counted."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such file")
    report = ItemReport(str(path))
    items: list[EvalItem] = []
    if path.suffix.lower() in (".parquet", ".tsv", ".csv"):
        from training.data.mmstar import iter_mmstar
        from training.data.records import LoadReport

        lr = LoadReport(str(path))
        for it in iter_mmstar(path, report=lr):
            items.append(EvalItem(it.id, it.question, it.answer, tuple(it.options), it.category or "all", it.image))
            if limit is not None and len(items) >= limit:
                break
        report.total, report.loaded, report.problems = lr.total, lr.loaded, dict(lr.problems)
    else:
        with open(path, encoding="utf-8") as fh:
            for n, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as exc:
                    report.bad(n, "malformed", f"not JSON ({exc.msg})")
                    continue
                try:
                    items.append(parse_item(obj, path.parent, need_image=need_image))
                except ValueError as exc:
                    reason, _, detail = str(exc).partition(": ")
                    report.bad(n, reason, detail)
                    continue
                report.ok()
                if limit is not None and len(items) >= limit:
                    break
    seen: set[str] = set()
    for it in items:
        if it.id in seen:
            raise ConfigError(f"{path}: id {it.id!r} appears twice (ids key the resumable predictions file)")
        seen.add(it.id)
    if not items:
        problems = ", ".join(f"{n} {r}" for r, n in report.problems.items()) or "the file is empty"
        raise ConfigError(f"{path}: no usable items ({problems})")
    return items, report


# ---- grading ----------------------------------------------------------------------------

_NUMBER_WORDS = {w: str(i) for i, w in enumerate((
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
    "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen", "twenty"))}
_ARTICLES = {"a", "an", "the"}


def normalize_answer(text: str) -> str:
    """Lower case, punctuation and articles dropped, number words as digits."""
    words = re.sub(r"[^\w\s]", " ", str(text).lower()).split()
    return " ".join(_NUMBER_WORDS.get(w, w) for w in words if w not in _ARTICLES)


def is_correct(item: EvalItem, prediction: str | None) -> bool:
    """Multiple choice: the predicted letter is the answer's. Open: the normalised
    prediction equals the normalised answer or one of its aliases."""
    if prediction is None:
        return False
    if item.options:
        return prediction.strip().upper() == item.answer
    pred = normalize_answer(prediction)
    return bool(pred) and pred in {normalize_answer(a) for a in (item.answer, *item.aliases)}


# ---- running ----------------------------------------------------------------------------


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


def fingerprint(cfg: EvalConfig, bundle_id: str, backends: dict[str, str]) -> str:
    blob = json.dumps({"cfg": asdict(cfg), "bundle": bundle_id, "backends": backends}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def read_predictions(path: Path, config_id: str) -> dict[str, dict]:
    """Finished records of an earlier (possibly killed) run with the same settings.

    A half-written last line (the process died mid-write) is cut off so appending
    continues on a clean line; records of other settings are refused.
    """
    if not path.is_file():
        return {}
    raw = path.read_bytes()
    if raw and not raw.endswith(b"\n"):
        cut = raw.rfind(b"\n") + 1
        log.warning("%s: dropping a partly written last record", path)
        with open(path, "r+b") as fh:
            fh.truncate(cut)
        raw = raw[:cut]
    done: dict[str, dict] = {}
    for n, line in enumerate(raw.decode("utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            raise ConfigError(f"{path} line {n} is not JSON: not a predictions file of `edge eval`") from None
        if rec.get("config") != config_id:
            raise ConfigError(
                f"{path} holds predictions made with other settings (bundle, backend, mode or budgets); "
                "use another --out folder, or --fresh to start over")
        done[str(rec["id"])] = rec
    return done


def _append(fh, record: dict) -> None:
    fh.write(json.dumps(record, ensure_ascii=False) + "\n")
    fh.flush()
    os.fsync(fh.fileno())


def evaluate_item(et: Any, item: EvalItem, cfg: EvalConfig, config_id: str) -> dict:
    """Run one item through the pipeline and grade it; errors become wrong answers."""
    t0 = time.perf_counter()
    rec: dict[str, Any] = {"id": item.id, "config": config_id, "category": item.category,
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
        prediction=res.answer, correct=is_correct(item, res.answer), answer_found=res.answer_found,
        answer_source=res.answer_source, answer_text=res.answer_text, hint=res.hint, extraction=res.extraction,
        thinking=res.thinking, seconds=round(res.seconds, 4),
        tokens={name: st.tokens for name, st in res.stages.items() if name != "vision"},
        budgets=dict(res.budgets), forced_answer=any(e.kind == "force_answer" for e in res.budget_events),
        error=None,
    )
    return rec


def run_eval(et: Any, items: Sequence[EvalItem], cfg: EvalConfig, predictions: str | Path, *,
             bundle_id: str, fresh: bool = False, progress: Progress | None = None) -> dict:
    """Evaluate `items` (skipping those already in `predictions`); returns the summary."""
    predictions = Path(predictions)
    predictions.parent.mkdir(parents=True, exist_ok=True)
    config_id = fingerprint(cfg, bundle_id, et.backends())
    if fresh:
        predictions.unlink(missing_ok=True)
    done = read_predictions(predictions, config_id)
    wanted = {it.id for it in items}
    resumed = len(wanted & set(done))
    todo = [it for it in items if it.id not in done]
    if resumed:
        log.info("resuming: %d of %d items already in %s", resumed, len(items), predictions)
    with open(predictions, "a", encoding="utf-8") as fh:
        for i, item in enumerate(todo, 1):
            rec = evaluate_item(et, item, cfg, config_id)
            _append(fh, rec)
            done[item.id] = rec
            if progress is not None:
                progress(resumed + i, len(items), rec)
    records = [done[it.id] for it in items]
    summary = summarize_records(records)
    summary.update(mode=cfg.mode, thinking=cfg.thinking and cfg.mode != "end-to-end",
                   thinking_budget=cfg.thinking_budget, sampling=cfg.sampling, config=config_id,
                   predictions=str(predictions), resumed=resumed, evaluated=len(todo), backend=et.backends())
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


def summary_markdown(summary: dict, title: str = "") -> str:
    def pct(x: float) -> str:
        return f"{100 * x:.1f}"

    lat = summary.get("latency_s") or {}
    lines = [f"## {title}" if title else "## Evaluation", "",
             f"Accuracy {pct(summary['accuracy'])}% ({summary['correct']}/{summary['n']}, 95% CI "
             f"{pct(summary['ci95'][0])}–{pct(summary['ci95'][1])}); answered {pct(summary['answered'])}%, "
             f"forced answers {summary['forced_answers']}, errors {summary['errors']}; "
             f"median latency {lat.get('median', 0):.2f} s per item.", "",
             "| category | n | accuracy % | 95% CI |", "|---|---|---|---|"]
    for name, c in summary["categories"].items():
        lines.append(f"| {name} | {c['n']} | {pct(c['accuracy'])} | {pct(c['ci95'][0])}–{pct(c['ci95'][1])} |")
    used = summary.get("tokens_used") or {}
    if used:
        lines += ["", "| stage | mean tokens used | median | max |", "|---|---|---|---|"]
        for stage, s in used.items():
            if s.get("n"):
                lines.append(f"| {stage} | {s['mean']:.1f} | {s['median']:.0f} | {s['max']:.0f} |")
    return "\n".join(lines) + "\n"


def parse_sweep(text: str) -> list[int | None]:
    """'off,0,64,256' -> [None, 0, 64, 256] (None: thinking off)."""
    out: list[int | None] = []
    for part in filter(None, (p.strip().lower() for p in text.split(","))):
        if part in ("off", "none", "no"):
            out.append(None)
        elif part.isdigit():
            out.append(int(part))
        else:
            raise ConfigError(f"bad thinking budget {part!r} in the sweep (use e.g. off,0,64,256,1024)")
    if not out:
        raise ConfigError("the sweep needs at least one thinking budget")
    return list(dict.fromkeys(out))


def sweep_point(summary: dict, budget: int | None) -> dict:
    used = (summary.get("tokens_used") or {}).get("thinking") or {}
    return {"thinking_budget": budget, "label": "off" if budget is None else str(budget),
            "accuracy": summary["accuracy"], "ci": summary["ci95"], "n": summary["n"],
            "latency_s": (summary.get("latency_s") or {}).get("median", 0.0),
            "thinking_tokens_mean": used.get("mean", 0.0),
            "categories": {k: v["accuracy"] for k, v in summary["categories"].items()}}


def sweep_markdown(points: list[dict]) -> str:
    lines = ["| thinking budget | accuracy % | 95% CI | median s/item | mean thinking tokens |",
             "|---|---|---|---|---|"]
    for p in points:
        lines.append(f"| {p['label']} | {100 * p['accuracy']:.1f} | {100 * p['ci'][0]:.1f}–{100 * p['ci'][1]:.1f} | "
                     f"{p['latency_s']:.2f} | {p['thinking_tokens_mean']:.0f} |")
    return "\n".join(lines) + "\n"
