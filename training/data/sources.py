"""Open any supported input of the extraction pipeline as a list of `SourceRow`s.

- a synthetic dataset folder (with `--split`) or one of its split files: every record is
  one example with one QA pair, its scene graph and its structured query;
- a LLaVA conversation file (JSON array or JSONL).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from runtime.errors import ConfigError
from runtime.prompts import question_block
from training.data.llava import iter_llava
from training.data.records import LoadReport, QAPair, SourceRow, VisualExample
from training.data.synth import SynthDataset


def detect_kind(path: Path) -> str:
    if path.is_dir():
        if (path / "dataset.json").is_file():
            return "synthetic"
        raise ConfigError(f"{path}: a folder input must be a synthetic dataset (no dataset.json)")
    if not path.is_file():
        raise ConfigError(f"{path}: file not found")
    with open(path, encoding="utf-8", errors="replace") as fh:
        head = fh.read(65536).lstrip()
    if head.startswith("["):
        return "llava"
    first = head.split("\n", 1)[0]
    try:
        obj = json.loads(first)
    except json.JSONDecodeError:
        raise ConfigError(f"{path}: neither a JSON array nor JSON Lines") from None
    if isinstance(obj, dict) and "scene_id" in obj and "query" in obj:
        return "synthetic"
    return "llava"


def open_source(
    path: str | os.PathLike[str], *, split: str | None = None, image_root: str | os.PathLike[str] | None = None,
) -> tuple[list[SourceRow], LoadReport, str]:
    """(rows, report, kind) for an input of the extraction pipeline."""
    p = Path(path)
    kind = detect_kind(p)
    if kind == "llava":
        report = LoadReport(str(p))
        return list(iter_llava(p, image_root, report=report)), report, kind
    return _synthetic_rows(p, split, image_root) + (kind,)


def _synthetic_rows(p: Path, split: str | None, image_root) -> tuple[list[SourceRow], LoadReport]:
    if p.is_dir():
        ds = SynthDataset(p)
        records_path = ds.split_file(split or "train")
        root = p
    else:
        if split is not None:
            raise ConfigError("--split applies to a dataset folder, not to a split file")
        records_path, root = p, p.parent
        ds = SynthDataset(root)
    scenes = {row["scene_id"]: row["scene"] for row in ds.scene_rows()}
    image_root = Path(image_root) if image_root is not None else root
    report = LoadReport(str(records_path))
    rows: list[SourceRow] = []
    with open(records_path, encoding="utf-8") as fh:
        for index, line in enumerate(line for line in fh if line.strip()):
            try:
                rec = json.loads(line)
                rid = str(rec["id"])
                qa = QAPair(question_block(rec["question"], rec.get("options")), rec["answer_text"], rec["query"])
                scene = scenes[rec["scene_id"]]
                image = (image_root / rec["image"]).resolve()
            except (json.JSONDecodeError, KeyError, TypeError) as exc:
                rows.append(SourceRow(index, str(index), None, report.bad(index, "malformed", repr(exc))))
                continue
            if not image.is_file():
                rows.append(SourceRow(index, rid, None, report.bad(index, "missing image", str(image))))
                continue
            report.ok()
            rows.append(SourceRow(index, rid, VisualExample(index, rid, image, (qa,), scene)))
    return rows, report
