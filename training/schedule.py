"""How many examples a step sees, split how, at which learning rate: pure functions of the
stage config, the number of processes and the step (so resuming needs only the step)."""

from __future__ import annotations

import math

from runtime.errors import ConfigError
from training.config import OptimConfig, StageConfig


def lr_at(step: int, total: int, opt: OptimConfig) -> float:
    """Learning-rate multiplier for `step` (0-based): linear warmup, then the schedule."""
    warm = opt.warmup_steps or int(opt.warmup_ratio * total)
    if warm and step < warm:
        return (step + 1) / warm
    if opt.schedule == "constant" or total <= warm:
        return 1.0
    frac = (step - warm) / max(1, total - warm)
    floor = opt.min_lr_ratio
    if opt.schedule == "linear":
        return floor + (1 - floor) * (1 - frac)
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * frac))


def batch_geometry(stage: StageConfig, world: int) -> tuple[int, int, int]:
    """(micro, accum, global) for `world` processes."""
    micro = stage.micro_batch_size
    if stage.global_batch_size:
        per_step = micro * world
        if stage.global_batch_size % per_step:
            raise ConfigError(f"global_batch_size {stage.global_batch_size} is not a multiple of "
                              f"micro_batch_size {micro} x {world} processes")
        accum = stage.global_batch_size // per_step
        if stage.grad_accum and stage.grad_accum != accum:
            raise ConfigError("give grad_accum or global_batch_size, not both disagreeing")
    else:
        accum = stage.grad_accum or 1
    return micro, accum, micro * accum * world


def total_steps(stage: StageConfig, epoch_size: int, global_batch: int) -> int:
    """`steps` when given, else enough global batches for `epochs` passes over the data."""
    return stage.steps or max(1, math.ceil(stage.epochs * epoch_size / global_batch))
