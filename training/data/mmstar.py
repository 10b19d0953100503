"""Loader for MMStar-style multiple-choice benchmarks with embedded images.

Two layouts are read:
- parquet (the Hugging Face release): columns `index`, `question`, `image` (bytes, or a
  struct with `bytes`), `answer`, `category`, `l2_category`; the options are inside the
  question text ("...\\nOptions: A: x, B: y, C: z, D: w").
- TSV (VLMEvalKit's layout): `index`, `question`, `A`..`D`, `answer`, `category`,
  `l2-category`, `image` (base64).

Rows with a missing or undecodable image, no options, or an answer that is not one of the
option letters are reported and skipped with a count.
"""

from __future__ import annotations

import base64
import binascii
import csv
import io
import json
import os
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from runtime.atomic import atomic_write_text
from runtime.errors import ConfigError
from training.data.records import LoadReport

LETTERS = "ABCDEFGH"


@dataclass(frozen=True)
class MCItem:
    index: int  # row position in the file
    id: str
    question: str  # the stem, without the options
    options: tuple[str, ...]
    answer: str  # a letter
    category: str
    subcategory: str
    image: bytes  # the encoded image file (PNG, JPEG...)

    @property
    def answer_text(self) -> str:
        return self.options[LETTERS.index(self.answer)]


_OPTIONS_RE = re.compile(r"\n?\s*Options?\s*:\s*", re.IGNORECASE)


def split_options(question: str) -> tuple[str, tuple[str, ...]]:
    """"Stem\\nOptions: A: x, B: y" -> ("Stem", ("x", "y")). Empty options if none found."""
    # the last "Options:" marker: the stem itself may mention options
    match = next(iter(reversed(list(_OPTIONS_RE.finditer(question)))), None)
    if match is None:
        return question.strip(), ()
    stem, tail = question[: match.start()].strip(), question[match.end():]
    starts = []
    pos = 0
    for letter in LETTERS:
        m = re.compile(rf"(?:^|[\s,;(]){letter}\s*[:.)]\s*").search(tail, pos)
        if m is None:
            break
        starts.append((m.start(), m.end()))
        pos = m.end()
    if len(starts) < 2:
        return question.strip(), ()
    options = []
    for i, (_, end) in enumerate(starts):
        stop = starts[i + 1][0] if i + 1 < len(starts) else len(tail)
        options.append(tail[end:stop].strip().rstrip(",;").strip())
    return stem, tuple(options)


def _image_bytes(value: object) -> bytes | None:
    if isinstance(value, dict):
        value = value.get("bytes")
    if isinstance(value, (bytes, bytearray)):
        return bytes(value) or None
    if isinstance(value, str) and value.strip():
        try:
            return base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            return None
    return None


def _decodes(data: bytes) -> str | None:
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.verify()
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        return str(exc) or type(exc).__name__
    return None


def _rows(path: Path) -> Iterator[dict]:
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        try:
            import pyarrow.parquet as pq  # deferred: optional ([data] extra), only for parquet files
        except ImportError:
            raise ConfigError("reading parquet needs pyarrow: pip install -e '.[data]'") from None
        try:
            table = pq.ParquetFile(path)
        except Exception as exc:  # pyarrow raises its own error types
            raise ConfigError(f"{path}: not a readable parquet file ({exc})") from None
        for batch in table.iter_batches(batch_size=256):
            yield from batch.to_pylist()
    elif suffix in (".tsv", ".csv"):
        csv.field_size_limit(sys.maxsize)  # base64 images are long fields
        with open(path, encoding="utf-8", newline="") as fh:
            yield from csv.DictReader(fh, delimiter="\t" if suffix == ".tsv" else ",")
    else:
        raise ConfigError(f"{path}: expected a .parquet or .tsv file")


def iter_mmstar(path: str | os.PathLike[str], *, report: LoadReport | None = None) -> Iterator[MCItem]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: file not found")
    report = report if report is not None else LoadReport(str(path))
    for i, row in enumerate(_rows(path)):
        row_id = str(row.get("index", i))
        question = row.get("question")
        if not isinstance(question, str) or not question.strip():
            report.bad(i, "malformed", "no question")
            continue
        columns = [row.get(letter) for letter in LETTERS[:4]]
        if any(isinstance(c, str) and c.strip() for c in columns):
            stem = question.strip()
            options = tuple(str(c).strip() for c in columns if isinstance(c, str) and c.strip() and c != "nan")
        else:
            stem, options = split_options(question)
        if len(options) < 2:
            report.bad(i, "malformed", "no options")
            continue
        answer = str(row.get("answer") or "").strip().upper().rstrip(".")
        if len(answer) != 1 or answer not in LETTERS[: len(options)]:
            report.bad(i, "malformed", f"answer {row.get('answer')!r} is not one of the option letters")
            continue
        image = _image_bytes(row.get("image"))
        if image is None:
            report.bad(i, "missing image", "no image bytes")
            continue
        problem = _decodes(image)
        if problem is not None:
            report.bad(i, "bad image", problem)
            continue
        report.ok()
        yield MCItem(i, row_id, stem, options, answer, str(row.get("category") or ""),
                     str(row.get("l2_category") or row.get("l2-category") or ""), image)


def load_mmstar(path: str | os.PathLike[str]) -> tuple[list[MCItem], LoadReport]:
    report = LoadReport(str(path))
    return list(iter_mmstar(path, report=report)), report


def write_eval_set(items: list[MCItem], out_dir: str | os.PathLike[str]) -> Path:
    """Write the items as the evaluation JSONL (`data.jsonl` + `images/`), atomically.

    One line per item: {"id", "image" (relative path), "question", "options", "answer",
    "category", "subcategory"}, the format `edge eval` reads.
    """
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    lines = []
    for item in items:
        with Image.open(io.BytesIO(item.image)) as img:
            ext = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp", "GIF": "gif", "BMP": "bmp"}.get(img.format or "", "img")
        rel = f"images/{item.index:06d}_{_safe(item.id)}.{ext}"
        tmp = out / (rel + ".tmp")
        tmp.write_bytes(item.image)
        os.replace(tmp, out / rel)
        lines.append(json.dumps({"id": item.id, "image": rel, "question": item.question,
                                 "options": list(item.options), "answer": item.answer,
                                 "category": item.category, "subcategory": item.subcategory},
                                ensure_ascii=False))
    atomic_write_text(out / "data.jsonl", "\n".join(lines) + ("\n" if lines else ""))
    return out / "data.jsonl"


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)[:100] or "item"
