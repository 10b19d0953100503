"""The resumable predictions file of one evaluation setting.

Every finished item is appended (flushed and fsynced) as one JSON line carrying two keys:

- `config`: a fingerprint of the settings (mode, budgets, sampling, bundle, backends). A
  file holding another fingerprint is refused: one file, one setting.
- `key`: what makes a row reusable for an item: the data file's sha256 plus the item's
  id, question, options, image bytes (sha256) and gold answer. A second data file with the
  same ids, an edited question or a replaced picture gets new rows, never an old row's
  grade. Rows whose key no item has are kept in the file (nothing is deleted) but ignored.

So a killed run continues where it stopped and never mixes results of different
settings or different data.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

from benchmarks.eval_items import EvalItem
from runtime.errors import ConfigError

log = logging.getLogger(__name__)


def fingerprint(settings: dict[str, Any], bundle_id: str, backends: dict[str, str]) -> str:
    """The settings' fingerprint: rows made with other settings are never reused."""
    blob = json.dumps({"cfg": settings, "bundle": bundle_id, "backends": backends}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def item_key(item: EvalItem, data_sha256: str) -> str:
    """The key of `item`'s row: data file, id, question, options, image bytes, gold answer."""
    blob = json.dumps({"data": data_sha256, "id": item.id, "question": item.question,
                       "options": list(item.options) if item.options else None,
                       "image": item.image_sha256(), "answer": item.answer, "aliases": list(item.aliases)},
                      sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:32]


def read_rows(path: Path, config_id: str) -> dict[str, dict]:
    """key -> the finished rows of an earlier (possibly killed) run with the same settings.

    A half-written last line (the process died mid-write) is cut off so appending continues
    on a clean line; rows of other settings are refused with a ConfigError.
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
    rows: dict[str, dict] = {}
    for n, line in enumerate(raw.splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
            raise ConfigError(f"{path} line {n} is not JSON: not a predictions file of `edge eval`") from None
        if not isinstance(rec, dict) or "id" not in rec:
            raise ConfigError(f"{path} line {n} is not a prediction row of `edge eval`")
        if rec.get("config") != config_id:
            raise ConfigError(
                f"{path} holds predictions made with other settings (bundle, backend, mode or budgets); "
                "use another --out folder, or --fresh to start over")
        if isinstance(rec.get("key"), str):  # rows written before rows had keys are never reused
            rows[rec["key"]] = rec
    return rows


class PredictionsFile:
    """Rows already made for these settings, and appending new ones durably."""

    def __init__(self, path: str | os.PathLike[str], config_id: str, *, fresh: bool = False) -> None:
        self.path = Path(path)
        self.config_id = config_id
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if fresh:
            self.path.unlink(missing_ok=True)
        self.rows = read_rows(self.path, config_id)
        self._fh: IO[str] | None = None

    def reusable(self, keys: Sequence[str]) -> int:
        """How many of `keys` already have a row (the rest must be evaluated)."""
        return sum(1 for k in keys if k in self.rows)

    def append(self, record: dict) -> None:
        if self._fh is None:
            self._fh = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 (closed in close())
        self._fh.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self.rows[record["key"]] = record

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def __enter__(self) -> PredictionsFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
