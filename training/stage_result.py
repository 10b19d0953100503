"""What a stage run reports, and the summary a finished stage leaves beside its weights
(STAGE_DIR/final/training.json): how `edge train list` and a re-run know it is done."""

from __future__ import annotations

import json
from dataclasses import dataclass

from training.config import Recipe
from training.model_init import final_dir

SUMMARY = "training.json"


@dataclass(frozen=True)
class StageResult:
    stage: str
    kind: str
    final: str
    steps: int
    global_batch_size: int
    processes: int
    last_loss: float | None
    first_loss: float | None
    seconds: float
    tokens: int
    examples: int
    resumed_from: int | None = None
    skipped: bool = False


def stage_summary(recipe: Recipe, stage_name: str) -> dict | None:
    """The finished stage's summary; None when it has none (or an unreadable one)."""
    path = final_dir(recipe, stage_name) / SUMMARY
    if path.is_file():
        try:
            return json.loads(path.read_text())
        except json.JSONDecodeError:
            return None
    return None


def finished_result(recipe: Recipe, stage_name: str, summary: dict) -> StageResult:
    """The result of a stage that had already finished (nothing was trained)."""
    return StageResult(
        stage=stage_name, kind=recipe.stage(stage_name).kind, final=str(final_dir(recipe, stage_name)),
        steps=summary["step"], global_batch_size=summary["global_batch_size"], processes=summary["processes"],
        last_loss=summary.get("last_loss"), first_loss=summary.get("first_loss"),
        seconds=summary.get("seconds", 0.0), tokens=summary.get("tokens", 0),
        examples=summary.get("examples", 0), skipped=True)
