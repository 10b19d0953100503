"""Loader for visual instruction data in the LLaVA conversation format.

    [{"id": "000123", "image": "coco/train2017/000000123.jpg",
      "conversations": [{"from": "human", "value": "<image>\\nWhat is ...?"},
                        {"from": "gpt", "value": "A dog."}, ...]}, ...]

A JSON array (the usual file) or JSON Lines with one such object per line. "user" and
"assistant" are accepted as role names, "system" turns are ignored, `<image>` markers are
removed from the text. Rows without "image" are text-only examples (kept, image=None).
Malformed rows and missing images are reported and counted, never fatal.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

from runtime.atomic import atomic_write_text
from runtime.errors import ConfigError
from training.data.records import LoadReport, QAPair, SourceRow, VisualExample

HUMAN = {"human", "user"}
GPT = {"gpt", "assistant"}
IMAGE_MARK = "<image>"


def _iter_objects(path: Path) -> Iterator[tuple[object, str | None]]:
    """(object, parse error) per row of a JSON array or a JSONL file."""
    try:
        with open(path, encoding="utf-8") as fh:
            head = fh.read(4096).lstrip()
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    if head.startswith("["):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path}: not valid JSON ({exc})") from None
        for obj in data:
            yield obj, None
        return
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if not line.strip():
                continue
            try:
                yield json.loads(line), None
            except json.JSONDecodeError as exc:
                yield None, f"line is not JSON ({exc.msg})"


def _clean(text: str) -> str:
    return text.replace(IMAGE_MARK, " ").strip()


def parse_conversation(turns: object) -> tuple[QAPair, ...]:
    """Question-answer pairs of a conversation; raises ValueError naming the problem."""
    if not isinstance(turns, list) or not turns:
        raise ValueError("conversations is not a non-empty list")
    pairs: list[QAPair] = []
    pending: str | None = None
    for i, turn in enumerate(turns):
        if not isinstance(turn, dict) or not isinstance(turn.get("value"), str):
            raise ValueError(f"turn {i} is not an object with a string value")
        role = turn.get("from")
        text = _clean(turn["value"])
        if role == "system":
            continue
        if role in HUMAN:
            if pending is not None:
                raise ValueError(f"turn {i}: two questions in a row")
            if not text:
                raise ValueError(f"turn {i}: empty question")
            pending = text
        elif role in GPT:
            if pending is None:
                raise ValueError(f"turn {i}: an answer without a question")
            if not text:
                raise ValueError(f"turn {i}: empty answer")
            pairs.append(QAPair(pending, text))
            pending = None
        else:
            raise ValueError(f"turn {i}: unknown role {role!r}")
    if pending is not None:
        raise ValueError("the last question has no answer")
    if not pairs:
        raise ValueError("no question-answer pair")
    return tuple(pairs)


def iter_llava(
    path: str | os.PathLike[str],
    image_root: str | os.PathLike[str] | None = None,
    *,
    report: LoadReport | None = None,
    check_images: bool = True,
) -> Iterator[SourceRow]:
    """One `SourceRow` per input row; image paths resolve against `image_root`
    (default: the file's folder)."""
    path = Path(path)
    root = Path(image_root) if image_root is not None else path.parent
    report = report if report is not None else LoadReport(str(path))
    for index, (obj, parse_error) in enumerate(_iter_objects(path)):
        row_id = str(obj.get("id", index)) if isinstance(obj, dict) else str(index)
        if parse_error is not None or not isinstance(obj, dict):
            problem = report.bad(index, "malformed", parse_error or "row is not an object")
            yield SourceRow(index, row_id, None, problem)
            continue
        try:
            qa = parse_conversation(obj.get("conversations"))
        except ValueError as exc:
            yield SourceRow(index, row_id, None, report.bad(index, "malformed", str(exc)))
            continue
        image = obj.get("image")
        if isinstance(image, list):
            if len(image) != 1:
                yield SourceRow(index, row_id, None,
                                report.bad(index, "unsupported", f"{len(image)} images in one example"))
                continue
            image = image[0]
        if image is not None and (not isinstance(image, str) or not image.strip()):
            yield SourceRow(index, row_id, None, report.bad(index, "malformed", "image is not a path"))
            continue
        image_path = None
        if image is not None:
            image_path = (root / image).resolve()
            if check_images and not image_path.is_file():
                yield SourceRow(index, row_id, None, report.bad(index, "missing image", str(image_path)))
                continue
        report.ok()
        yield SourceRow(index, row_id, VisualExample(index, row_id, image_path, qa))


def load_llava(
    path: str | os.PathLike[str], image_root: str | os.PathLike[str] | None = None, *, check_images: bool = True,
) -> tuple[list[VisualExample], LoadReport]:
    """The usable examples of a LLaVA-format file and a report of what was skipped."""
    report = LoadReport(str(path))
    examples = [r.example for r in iter_llava(path, image_root, report=report, check_images=check_images)
                if r.example is not None]
    return examples, report


def write_llava(path: str | os.PathLike[str], examples: list[dict]) -> None:
    """Write LLaVA-format JSON atomically (used to export the synthetic world)."""
    atomic_write_text(path, json.dumps(examples, ensure_ascii=False, indent=1) + "\n")
