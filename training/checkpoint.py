"""Training checkpoints: HF-format weights + optimizer, RNG and progress, nothing pickled.

    STAGE_DIR/checkpoints/step-000300/
        config.json, model.safetensors, tokenizer.json ...   save_pretrained (loadable as is)
        optimizer.safetensors + optimizer.json                AdamW moments + param groups
        rng-rank0.safetensors + rng-rank0.json                torch / CUDA / numpy / python RNG
        trainer_state.json                                    step, batch geometry, counters
        accelerate/                                           FSDP / DeepSpeed only (sharded state)
    STAGE_DIR/latest.json                                     {"checkpoint": ..., "step": N}
    STAGE_DIR/final/                                          the stage's result (HF format)

A checkpoint is written into a hidden `.step-N.partial` folder and renamed when complete;
`latest.json` is replaced atomically after that, so a run killed at any moment resumes
from the last complete checkpoint. The learning-rate schedule is a pure function of the
step and the data order a pure function of (seed, step) (`training.collate`), so the step
restores both. Sharded optimizers (FSDP, DeepSpeed) go through accelerate's
`save_state`, whose optimizer files are `torch.save` archives: they are read back with
`weights_only=True`.
"""

from __future__ import annotations

import json
import logging
import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from runtime.atomic import atomic_write_text
from runtime.errors import ConfigError

log = logging.getLogger(__name__)

LATEST = "latest.json"
STATE = "trainer_state.json"


def checkpoint_name(step: int) -> str:
    return f"step-{step:06d}"


# ---------------------------------------------------------------------------------------
# Optimizer state as safetensors + JSON


def save_optimizer(optimizer: Any, out: Path) -> None:
    from safetensors.torch import save_file  # deferred: imports torch

    sd = optimizer.state_dict()
    tensors = {}
    scalars: dict[str, dict[str, Any]] = {}
    for idx, st in sd["state"].items():
        for k, v in st.items():
            if hasattr(v, "detach"):
                tensors[f"{idx}.{k}"] = v.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(idx), {})[k] = v
    save_file(tensors, str(out / "optimizer.safetensors"))
    atomic_write_text(out / "optimizer.json", json.dumps(
        {"param_groups": sd["param_groups"], "scalars": scalars}, indent=1, default=_jsonable))


def _jsonable(v: Any) -> Any:
    if isinstance(v, tuple):
        return list(v)
    if isinstance(v, (np.integer, np.floating)):
        return v.item()
    raise TypeError(f"cannot store {type(v).__name__} in optimizer.json")


def load_optimizer(optimizer: Any, ckpt: Path) -> None:
    from safetensors.torch import load_file  # deferred: imports torch

    meta = json.loads((ckpt / "optimizer.json").read_text())
    tensors = load_file(str(ckpt / "optimizer.safetensors"))
    state: dict[int, dict[str, Any]] = {}
    for key, v in tensors.items():
        idx, _, name = key.partition(".")
        state.setdefault(int(idx), {})[name] = v
    for idx, vals in meta.get("scalars", {}).items():
        state.setdefault(int(idx), {}).update(vals)
    groups = meta["param_groups"]
    for g in groups:
        if "betas" in g:
            g["betas"] = tuple(g["betas"])
    optimizer.load_state_dict({"state": state, "param_groups": groups})


# ---------------------------------------------------------------------------------------
# RNG


def save_rng(out: Path, rank: int) -> None:
    import torch  # deferred: `edge train list` reads checkpoints without torch
    from safetensors.torch import save_file  # deferred: imports torch

    tensors = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"cuda.{i}"] = s
    save_file(tensors, str(out / f"rng-rank{rank}.safetensors"))
    np_state = np.random.get_state()
    py_state = random.getstate()
    atomic_write_text(out / f"rng-rank{rank}.json", json.dumps({
        "python": [py_state[0], list(py_state[1]), py_state[2]],
        "numpy": [np_state[0], np_state[1].tolist(), int(np_state[2]), int(np_state[3]), float(np_state[4])],
    }))


def load_rng(ckpt: Path, rank: int) -> None:
    import torch  # deferred: `edge train list` reads checkpoints without torch
    from safetensors.torch import load_file  # deferred: imports torch

    path = ckpt / f"rng-rank{rank}.safetensors"
    if not path.is_file():  # a different number of processes than the saving run
        path = ckpt / "rng-rank0.safetensors"
        rank = 0
    tensors = load_file(str(path))
    torch.set_rng_state(tensors["torch"])
    cuda = [tensors[f"cuda.{i}"] for i in range(len(tensors) - 1) if f"cuda.{i}" in tensors]
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
    meta = json.loads((ckpt / f"rng-rank{rank}.json").read_text())
    py = meta["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    npst = meta["numpy"]
    np.random.set_state((npst[0], np.asarray(npst[1], dtype=np.uint32), npst[2], npst[3], npst[4]))


# ---------------------------------------------------------------------------------------
# Finding and pruning checkpoints


def latest_checkpoint(stage_dir: Path) -> tuple[Path, dict] | None:
    """The newest complete checkpoint and its trainer state, or None."""
    pointer = stage_dir / LATEST
    if not pointer.is_file():
        return None
    try:
        rel = json.loads(pointer.read_text())["checkpoint"]
    except (json.JSONDecodeError, KeyError, TypeError):
        raise ConfigError(f"{pointer}: unreadable (delete it to start the stage over)") from None
    ckpt = stage_dir / rel
    try:
        state = json.loads((ckpt / STATE).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        raise ConfigError(f"{ckpt}: incomplete checkpoint named by {pointer}") from None
    return ckpt, state


def publish(tmp: Path, final: Path) -> None:
    """Rename a finished folder into place, replacing an older one only afterwards."""
    old = None
    if final.exists():
        old = final.parent / f".{final.name}.old-{os.getpid()}"
        os.replace(final, old)
    os.replace(tmp, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def point_latest(stage_dir: Path, ckpt: Path, step: int) -> None:
    atomic_write_text(stage_dir / LATEST, json.dumps(
        {"checkpoint": ckpt.relative_to(stage_dir).as_posix(), "step": step}) + "\n")


def prune(stage_dir: Path, keep: int) -> None:
    folder = stage_dir / "checkpoints"
    if keep <= 0 or not folder.is_dir():
        return
    done = sorted(p for p in folder.iterdir() if p.is_dir() and p.name.startswith("step-"))
    for p in done[:-keep]:
        shutil.rmtree(p, ignore_errors=True)
    for p in folder.iterdir():  # partial folders of killed runs
        if p.name.startswith(".") and p.name.endswith(".partial"):
            shutil.rmtree(p, ignore_errors=True)
