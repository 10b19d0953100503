"""The question sets `edge eval` reads: JSONL items, or an MMStar-style parquet/TSV.

A JSONL file holds one item per line

    {"id": "q1", "image": "images/1.png", "question": "...", "answer": "B",
     "options": ["red", "blue", "green"], "category": "color", "aliases": ["..."]}

(`image` relative to the file; `options` shown as A/B/C...; `answer` a letter or an
option's text for multiple choice, else the reference answer, with optional `aliases`;
extra keys such as the synthetic world's are ignored). Bad lines (not UTF-8, not JSON,
fields missing or of the wrong type, text that is not valid Unicode) are skipped and
counted by reason, like the training data loaders do.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.grading import is_correct, option_letter
from runtime.errors import ConfigError
from runtime.prompts import LETTERS
from training.data.mmstar import iter_mmstar
from training.data.records import LoadReport

log = logging.getLogger(__name__)

TABLE_SUFFIXES = (".parquet", ".tsv", ".csv")  # read through training.data.mmstar
_CHUNK = 1 << 20


@dataclass(frozen=True)
class EvalItem:
    id: str
    question: str
    answer: str  # a letter for multiple choice, else the reference answer
    options: tuple[str, ...] | None = None
    category: str = "all"
    image: Path | bytes | None = None
    aliases: tuple[str, ...] = ()

    def grade(self, prediction: str | None) -> bool:
        return is_correct(self.answer, prediction, multiple_choice=bool(self.options), aliases=self.aliases)

    def image_sha256(self) -> str:
        """sha256 of the image's bytes ("" without an image): a changed picture is a new item."""
        if self.image is None:
            return ""
        h = hashlib.sha256()
        if isinstance(self.image, bytes):
            h.update(self.image)
        else:
            with open(self.image, "rb") as fh:
                while block := fh.read(_CHUNK):
                    h.update(block)
        return h.hexdigest()


@dataclass
class ItemReport:
    """What was loaded and what was skipped (and why), like the data loaders report."""

    source: str
    sha256: str = ""  # of the whole data file: predictions of another file are never reused
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


def _text(value: Any, what: str) -> str:
    """`value` as text that can be written back out as UTF-8 (no lone surrogates)."""
    text = str(value).strip()
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"malformed: the {what} is not valid Unicode (a lone surrogate)") from None
    return text


def parse_item(obj: Any, base: Path, *, need_image: bool) -> EvalItem:
    """One JSONL object -> EvalItem; raises ValueError("reason: detail")."""
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
    ans = _text(ans, "answer")
    opts = obj.get("options")
    options = None
    if opts is not None:
        if not isinstance(opts, list) or not all(isinstance(o, (str, int, float)) for o in opts):
            raise ValueError("malformed: options must be a list of strings")
        options = tuple(_text(o, "option") for o in opts)
        if not 2 <= len(options) <= len(LETTERS) or any(not o for o in options):
            raise ValueError(f"malformed: {len(options)} options (2 to {len(LETTERS)} non-empty ones)")
        letter = option_letter(ans, options)
        if letter is None:
            raise ValueError(f"malformed: answer {ans!r} is neither an option letter nor an option's text")
        ans = letter
    cat = obj.get("category")
    category = _text(cat, "category") if isinstance(cat, (str, int)) and str(cat).strip() else "all"
    aliases = obj.get("aliases") or ()
    if not isinstance(aliases, (list, tuple)):
        raise ValueError("malformed: aliases must be a list")
    image = None
    rel = obj.get("image")
    if rel is not None:
        if not isinstance(rel, str) or not rel.strip():
            raise ValueError("malformed: image must be a path")
        path = Path(_text(rel, "image path"))
        image = path if path.is_absolute() else base / path
        if not image.is_file():
            raise ValueError(f"missing image: {image}")
    elif need_image:
        raise ValueError("missing image: the item has no image")
    return EvalItem(_text(rid, "id"), _text(q, "question"), ans, options, category, image,
                    tuple(_text(a, "alias") for a in aliases))


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(_CHUNK):
            h.update(block)
    return h.hexdigest()


def _jsonl_items(path: Path, report: ItemReport, need_image: bool, limit: int | None) -> list[EvalItem]:
    items: list[EvalItem] = []
    with open(path, "rb") as fh:  # bytes: one undecodable line is a bad line, not the end of the file
        for n, raw in enumerate(fh, 1):
            if not raw.strip():
                continue
            try:
                obj = json.loads(raw.decode("utf-8"))
            except UnicodeDecodeError as exc:
                report.bad(n, "malformed", f"not UTF-8 ({exc.reason} at byte {exc.start})")
                continue
            except json.JSONDecodeError as exc:
                report.bad(n, "malformed", f"not JSON ({exc.msg})")
                continue
            except RecursionError:
                report.bad(n, "malformed", "nested too deeply")
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
    return items


def _table_items(path: Path, report: ItemReport, limit: int | None) -> list[EvalItem]:
    lr = LoadReport(str(path))
    items = []
    for it in iter_mmstar(path, report=lr):
        items.append(EvalItem(it.id, it.question, it.answer, tuple(it.options), it.category or "all", it.image))
        if limit is not None and len(items) >= limit:
            break
    report.total, report.loaded, report.problems = lr.total, lr.loaded, dict(lr.problems)
    return items


def load_items(path: str | Path, *, need_image: bool = True, limit: int | None = None
               ) -> tuple[list[EvalItem], ItemReport]:
    """Items from a JSONL file (or MMStar-style .parquet/.tsv); bad rows skipped and counted."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such file")
    report = ItemReport(str(path), sha256=_file_sha256(path))
    if path.suffix.lower() in TABLE_SUFFIXES:
        items = _table_items(path, report, limit)
    else:
        items = _jsonl_items(path, report, need_image, limit)
    seen: set[str] = set()
    for it in items:
        if it.id in seen:
            raise ConfigError(f"{path}: id {it.id!r} appears twice (ids name the rows of the predictions file)")
        seen.add(it.id)
    if not items:
        problems = ", ".join(f"{n} {r}" for r, n in report.problems.items()) or "the file is empty"
        raise ConfigError(f"{path}: no usable items ({problems})")
    return items, report
