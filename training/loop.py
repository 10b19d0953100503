"""The training loop every stage runs: transformers models driven by accelerate.

One process on a CPU, or many through `accelerate launch` (DDP, FSDP, DeepSpeed ZeRO; the
configs are in training/accelerate/). What makes N processes equal one:

- the data order is a pure function of (seed, step) and each process takes its slice of
  every micro-batch (`training.collate`);
- the loss is a *sum* over target tokens divided by the number of target tokens in the
  whole global batch (every process counts them from the same token ids, no
  communication), scaled so that the gradient averaging of DDP / FSDP / DeepSpeed and
  accelerate's division by the accumulation steps give exactly the per-token mean over the
  global batch. One process with the same global batch computes the same gradient.

Where things live:

    training.runner.StageRunner   the stage as a recipe: setup, loss_step, save, train
    training.losses               TargetLoss (language stages), CellLoss (the vision stage)
    training.schedule             learning-rate schedule and batch geometry
    training.checkpoint           checkpoint layout, saving and resuming
    training.stage_result         StageResult and the summary a finished stage leaves

bf16 autocast on GPUs (`precision: auto`), gradient checkpointing and SDPA attention are
stage options.
"""

from __future__ import annotations

from runtime.progress import Progress
from training.config import Recipe
from training.stage_result import StageResult

__all__ = ["StageResult", "train_stage"]


def train_stage(
    recipe: Recipe,
    stage_name: str,
    *,
    progress: Progress | None = None,
    stop_at_step: int | None = None,
    fresh: bool = False,
) -> StageResult:
    """Train one stage of `recipe` (resuming from its last checkpoint unless `fresh`).

    `stop_at_step`: stop (with a checkpoint) once that many steps are done; a later call
    continues from there. A stage whose final checkpoint exists is skipped.
    """
    # deferred: the runner brings in torch and accelerate, which listing or planning
    # stages (`edge train list`, `edge --help`) does not need
    from training.runner import StageRunner

    return StageRunner(recipe, stage_name, progress=progress, stop_at_step=stop_at_step, fresh=fresh).train()
