"""What the loaders produce: visual QA examples with their source index, and a report.

Every loader yields one `SourceRow` per row of its input, in order, so a pipeline that
writes one output row per input row (the extraction pipeline's SKIP rows) keeps indices
aligned even when a row is malformed. Problems are counted per reason in a `LoadReport`
and logged (the first few in full); a bad row never stops a run.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class QAPair:
    question: str
    answer: str
    query: dict | None = None  # the synthetic world's structured question, when known


@dataclass(frozen=True)
class VisualExample:
    index: int  # position in the source file (0-based)
    id: str
    image: Path | None  # None for text-only examples
    qa: tuple[QAPair, ...]
    scene: dict | None = None  # the synthetic world's scene graph, when known


@dataclass(frozen=True)
class SourceRow:
    index: int
    id: str
    example: VisualExample | None  # None when the row is unusable
    problem: str | None = None  # why the row is unusable: "<reason>: <detail>"

    @property
    def reason(self) -> str | None:
        return None if self.problem is None else self.problem.split(":", 1)[0]


@dataclass
class LoadReport:
    source: str
    total: int = 0
    loaded: int = 0
    problems: Counter[str] = field(default_factory=Counter)
    shown: int = 0
    max_shown: int = 10

    def ok(self) -> None:
        self.total += 1
        self.loaded += 1

    def bad(self, index: int, reason: str, detail: str) -> str:
        self.total += 1
        self.problems[reason] += 1
        if self.shown < self.max_shown:
            log.warning("%s row %d skipped: %s: %s", self.source, index, reason, detail)
            self.shown += 1
        return f"{reason}: {detail}"

    @property
    def skipped(self) -> int:
        return sum(self.problems.values())

    def summary(self) -> str:
        text = f"{self.source}: {self.loaded} of {self.total} rows loaded"
        if self.problems:
            text += ", skipped " + ", ".join(f"{n} {r}" for r, n in sorted(self.problems.items()))
        return text

    def to_dict(self) -> dict:
        return {"source": self.source, "total": self.total, "loaded": self.loaded,
                "skipped": dict(sorted(self.problems.items()))}
