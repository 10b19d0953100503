"""The visual-extraction data pipeline (the paper's method), resumable and shardable.

For every input row in [start, end):
1. rows without an image become a SKIP row, unusable rows (malformed, missing or
   unreadable image) an error row, so output line k is always input row start + k;
2. the teacher turns the row's question-answer pairs into declarative statements
   (text only, capped at 1024 tokens);
3. the teacher describes the image, resized to 512 x 512, working the statements in
   (capped at 2048 tokens); the description is the extraction-tuning target.

Rows are appended to a JSONL file in index order and fsynced after every batch. A
restarted run reads what is there, drops a torn last line, checks that the rows are the
expected indices, and carries on after them. Shards (disjoint index ranges, one output
file each) concatenated in order are byte-identical to one unsharded run; `merge_shards`
does that and checks it.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageOps

from runtime.atomic import atomic_write_text
from runtime.errors import ConfigError
from training.data.records import SourceRow, VisualExample
from training.data.teachers import Failure, Teacher

log = logging.getLogger(__name__)

META_FORMAT = "edge-extract"
META_VERSION = 1
TEACHER_IMAGE_SIZE = 512


@dataclass(frozen=True)
class ExtractProgress:
    done: int  # rows of [start, end) finished, including those of earlier runs
    total: int  # end - start
    new: int  # rows finished by this run
    elapsed: float  # seconds of this run
    ok: int
    skipped: int
    errors: int

    @property
    def rate(self) -> float:
        return self.new / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def eta(self) -> float | None:
        return (self.total - self.done) / self.rate if self.rate > 0 else None


@dataclass(frozen=True)
class ExtractSummary:
    output: str
    start: int
    end: int
    resumed_at: int  # the first index this run processed
    written: int  # rows this run wrote
    ok: int
    skipped: int
    errors: int
    seconds: float

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def shard_range(total: int, shard: int, num_shards: int) -> tuple[int, int]:
    """Shard `shard` (0-based) of `num_shards` contiguous, near-equal index ranges."""
    if num_shards < 1 or not 0 <= shard < num_shards:
        raise ConfigError(f"shard must be in 0..{num_shards - 1}, got {shard}")
    return total * shard // num_shards, total * (shard + 1) // num_shards


def meta_path(out_path: Path) -> Path:
    return out_path.with_name(out_path.name + ".meta.json")


def teacher_image(path: Path, size: int = TEACHER_IMAGE_SIZE):
    """The image as the teacher sees it: EXIF-upright RGB, resized to size x size."""
    with Image.open(path) as img:
        img = ImageOps.exif_transpose(img)
        return img.convert("RGB").resize((size, size), Image.Resampling.BICUBIC)


def _dump(row: dict) -> bytes:
    return (json.dumps(row, ensure_ascii=False) + "\n").encode("utf-8")


def resume_point(out_path: Path, start: int, end: int) -> int:
    """The next index to process; truncates a torn last line left by a killed run."""
    if not out_path.exists():
        return start
    data = out_path.read_bytes()
    good = 0  # bytes of complete, valid rows
    expected = start
    pos = 0
    while pos < len(data):
        nl = data.find(b"\n", pos)
        if nl < 0:
            break  # torn last line
        try:
            row = json.loads(data[pos:nl])
            index = row["index"]
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError):
            if data.find(b"\n", nl + 1) >= 0:
                raise ConfigError(f"{out_path}: line {expected - start + 1} is corrupt "
                                  "(only the last line of a killed run may be torn)") from None
            break
        if index != expected:
            raise ConfigError(f"{out_path}: expected row {expected}, found row {index} "
                              "(the file belongs to another shard or input)")
        expected += 1
        pos = good = nl + 1
    if expected > end:
        raise ConfigError(f"{out_path}: has rows past the end of the range ({end})")
    if good < len(data):
        log.warning("%s: dropping a torn last line (%d bytes) left by an interrupted run",
                    out_path, len(data) - good)
        with open(out_path, "r+b") as fh:
            fh.truncate(good)
    return expected


def _check_meta(out_path: Path, meta: dict) -> None:
    path = meta_path(out_path)
    if path.exists():
        try:
            old = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path}: not valid JSON ({exc})") from None
        diff = [k for k in meta if old.get(k) != meta[k]]
        if diff:
            details = ", ".join(f"{k}: {old.get(k)!r} -> {meta[k]!r}" for k in diff)
            raise ConfigError(f"{out_path} was started with other settings ({details}); "
                              "use another output file or delete it to start over")
    elif out_path.exists() and out_path.stat().st_size:
        raise ConfigError(f"{out_path} exists but was not written by this pipeline (no {path.name})")
    else:
        atomic_write_text(path, json.dumps(meta, indent=2) + "\n")


def run_extraction(
    rows: Sequence[SourceRow],
    teacher: Teacher,
    out_path: str | os.PathLike[str],
    *,
    start: int = 0,
    end: int | None = None,
    image_size: int = TEACHER_IMAGE_SIZE,
    source: str = "",
    batch_size: int | None = None,
    progress: Callable[[ExtractProgress], None] | None = None,
) -> ExtractSummary:
    """Run (or resume) the pipeline over rows[start:end], appending to `out_path`."""
    out = Path(out_path)
    end = len(rows) if end is None else min(end, len(rows))
    if not 0 <= start <= end:
        raise ConfigError(f"bad index range {start}..{end} for {len(rows)} rows")
    for i, row in enumerate(rows):
        if row.index != i:
            raise ConfigError(f"source rows are not in order (row {i} has index {row.index})")
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"format": META_FORMAT, "version": META_VERSION, "source": source, "source_rows": len(rows),
            "start": start, "end": end, "teacher": teacher.name, "image_size": image_size}
    _check_meta(out, meta)
    first = resume_point(out, start, end)
    if first > start:
        log.info("%s: resuming at row %d (%d of %d done)", out, first, first - start, end - start)
    batch = batch_size or teacher.batch_size
    counts = {"ok": 0, "skip": 0, "error": 0}
    t0 = time.perf_counter()
    written = 0
    with open(out, "ab") as fh:
        for lo in range(first, end, batch):
            chunk = rows[lo:min(lo + batch, end)]
            for row in _process(chunk, teacher, image_size):
                fh.write(_dump(row))
                counts[row["status"]] += 1
            fh.flush()
            os.fsync(fh.fileno())
            written += len(chunk)
            if progress:
                progress(ExtractProgress(lo + len(chunk) - start, end - start, written,
                                         time.perf_counter() - t0, counts["ok"], counts["skip"], counts["error"]))
    seconds = time.perf_counter() - t0
    return ExtractSummary(str(out), start, end, first, written, counts["ok"], counts["skip"], counts["error"], seconds)


def _process(chunk: Sequence[SourceRow], teacher: Teacher, image_size: int) -> list[dict]:
    results: dict[int, dict] = {}
    todo: list[tuple[VisualExample, object]] = []
    for row in chunk:
        ex = row.example
        if ex is None:
            results[row.index] = {"index": row.index, "id": row.id, "status": "error", "reason": row.problem}
        elif ex.image is None:
            results[row.index] = {"index": row.index, "id": row.id, "status": "skip", "reason": "no image"}
        elif teacher.needs_image:
            try:
                todo.append((ex, teacher_image(ex.image, image_size)))
            except Exception as exc:  # PIL raises many types for bad files; the row records it
                results[row.index] = {"index": row.index, "id": row.id, "status": "error",
                                      "reason": f"unreadable image: {type(exc).__name__}: {exc}"}
        else:
            todo.append((ex, None))
    if todo:
        examples = [ex for ex, _ in todo]
        facts = teacher.statements(examples)
        if len(facts) != len(examples):
            raise ConfigError(f"teacher {teacher.name} returned {len(facts)} statement lists for {len(examples)} rows")
        ready = [(ex, img, st) for (ex, img), st in zip(todo, facts, strict=True) if not isinstance(st, Failure)]
        for (ex, _), st in zip(todo, facts, strict=True):
            if isinstance(st, Failure):
                results[ex.index] = {"index": ex.index, "id": ex.id, "status": "error",
                                     "reason": f"statements: {st.reason}"}
        if ready:
            texts = teacher.describe([r[0] for r in ready], [r[2] for r in ready], [r[1] for r in ready])
            for (ex, _, st), text in zip(ready, texts, strict=True):
                if isinstance(text, Failure):
                    results[ex.index] = {"index": ex.index, "id": ex.id, "status": "error",
                                         "reason": f"description: {text.reason}"}
                else:
                    results[ex.index] = {"index": ex.index, "id": ex.id, "status": "ok",
                                         "image": str(ex.image), "statements": st, "description": text,
                                         "teacher": teacher.name}
    return [results[row.index] for row in chunk]


def merge_shards(shards: Sequence[str | os.PathLike[str]], out_path: str | os.PathLike[str]) -> int:
    """Concatenate shard outputs (in the given order) after checking that their indices
    run on without gaps or overlaps; the result is written atomically. Returns rows."""
    out = Path(out_path)
    tmp = out.with_name(f".{out.name}.tmp")
    expected: int | None = None
    n = 0
    try:
        with open(tmp, "wb") as dst:
            for shard in shards:
                path = Path(shard)
                if not path.is_file():
                    raise ConfigError(f"{path}: file not found")
                with open(path, "rb") as src:
                    for lineno, line in enumerate(src, 1):
                        if not line.endswith(b"\n"):
                            raise ConfigError(f"{path}:{lineno}: torn last line (is the shard still running?)")
                        try:
                            index = json.loads(line)["index"]
                        except (json.JSONDecodeError, KeyError, TypeError):
                            raise ConfigError(f"{path}:{lineno}: not a pipeline row") from None
                        if expected is not None and index != expected:
                            raise ConfigError(f"{path}:{lineno}: expected row {expected}, found {index} "
                                              "(shards must be given in order, without gaps)")
                        expected = index + 1
                        dst.write(line)
                        n += 1
            dst.flush()
            os.fsync(dst.fileno())
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return n


def read_rows(path: str | os.PathLike[str]) -> list[dict]:
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]
