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

Logits are computed only at positions whose next token is trained (a 150k-token
vocabulary times every prompt position would dominate memory at the paper's sizes).
bf16 autocast on GPUs (`precision: auto`), gradient checkpointing and SDPA attention are
stage options. Checkpoints and resuming: `training.checkpoint`.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from runtime.atomic import atomic_write_text
from runtime.config_io import to_dict
from runtime.errors import ConfigError
from runtime.manifest import ImagePreprocess
from runtime.progress import Progress
from training import checkpoint as ck
from training.collate import Collator, StageData, step_slices
from training.config import OptimConfig, Recipe, StageConfig
from training.examples import ExampleSource
from training.logs import StepLog, plot_loss
from training.model_init import (
    copy_tokenizer,
    final_dir,
    initial_model,
    load_module,
    resolve_init,
    resolve_tokenizer,
    set_trainable,
    special_ids,
)
from training.stages import module_of, trainable_parts

log = logging.getLogger(__name__)

SUMMARY = "training.json"
HEAD_FILE = "cell_heads.safetensors"  # vision stages: the pretraining heads (checkpoints only)


def _scene_grid(stage: StageConfig) -> int:
    from training.data.synth import SynthDataset

    return SynthDataset(stage.data[0].path).config.scene.grid


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


def _target_loss_module():
    import torch
    import torch.nn.functional as F

    class TargetLoss(torch.nn.Module):
        """Wraps a causal LM (Qwen3ForCausalLM or Llava): returns (summed loss, #targets).

        Going through `self.model.model` (decoder / LlavaModel) and `lm_head` on the
        trained positions only; the wrapper is what DDP/FSDP wrap, so gradient sync hooks
        see this forward.
        """

        def __init__(self, model: Any) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids, attention_mask, labels, pixel_values=None):
            kwargs = {"input_ids": input_ids, "attention_mask": attention_mask, "use_cache": False}
            if pixel_values is not None:
                kwargs["pixel_values"] = pixel_values
            hidden = self.model.model(**kwargs).last_hidden_state
            shift = labels[:, 1:]
            mask = shift != -100
            picked = hidden[:, :-1][mask]
            logits = self.model.lm_head(picked).float()
            loss = F.cross_entropy(logits, shift[mask], reduction="sum")
            return loss, mask.sum()

    return TargetLoss


def _mixed_precision(stage: StageConfig) -> str:
    import torch

    if stage.precision == "fp32":
        return "no"
    if stage.precision == "bf16":
        return "bf16"
    return "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "no"


def _param_groups(parts: dict[str, list[tuple[str, Any]]], opt: OptimConfig) -> list[dict]:
    groups = []
    for part, named in parts.items():
        scale = opt.part_lr_scale.get(part, 1.0)
        decay = [p for n, p in named if p.ndim >= 2 and "norm" not in n]
        plain = [p for n, p in named if not (p.ndim >= 2 and "norm" not in n)]
        for params, wd in ((decay, opt.weight_decay), (plain, 0.0)):
            if params:
                groups.append({"params": params, "weight_decay": wd, "lr": opt.lr * scale,
                               "base_lr": opt.lr * scale, "part": part})
    return groups


def _image_prep(model: Any) -> ImagePreprocess:
    from runtime.image import SIGLIP_MEAN, SIGLIP_STD

    return ImagePreprocess(size=model.config.vision_config.image_size, mean=SIGLIP_MEAN, std=SIGLIP_STD)


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


def stage_summary(recipe: Recipe, stage_name: str) -> dict | None:
    path = final_dir(recipe, stage_name) / SUMMARY
    if path.is_file():
        try:
            return json.loads(path.read_text())
        except json.JSONDecodeError:
            return None
    return None


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
    import torch
    from accelerate import Accelerator, PartialState
    from accelerate.state import AcceleratorState, GradientState
    from accelerate.utils import DistributedType, set_seed

    progress = progress or (lambda msg, frac: None)
    stage = recipe.stage(stage_name)
    module = module_of(stage)
    stage_dir = recipe.stage_dir(stage_name)
    # Without a GPU, accelerate only sets up a (gloo) process group when told to use the CPU.
    cpu = not torch.cuda.is_available()
    state = PartialState(cpu=cpu)
    world, rank, main = state.num_processes, state.process_index, state.is_main_process

    if fresh:
        if main and stage_dir.exists():
            shutil.rmtree(stage_dir)
        state.wait_for_everyone()
    done = stage_summary(recipe, stage_name)
    if done is not None and done.get("complete"):
        log.info("stage %s already finished (%s); skipping", stage_name, final_dir(recipe, stage_name))
        return StageResult(
            stage=stage_name, kind=stage.kind, final=str(final_dir(recipe, stage_name)), steps=done["step"],
            global_batch_size=done["global_batch_size"], processes=done["processes"],
            last_loss=done.get("last_loss"), first_loss=done.get("first_loss"), seconds=done.get("seconds", 0.0),
            tokens=done.get("tokens", 0), examples=done.get("examples", 0), skipped=True)

    if recipe.threads:
        torch.set_num_threads(recipe.threads)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # our own progress line covers loading and saving
    seed = recipe.seed if stage.seed is None else stage.seed
    set_seed(seed)
    micro, accum, global_batch = batch_geometry(stage, world)
    # Accelerator state is a process-wide singleton; each stage sets its own precision and
    # accumulation, so the previous stage's (same process: `edge train all`) is cleared.
    AcceleratorState._reset_state(reset_partial_state=False)
    GradientState._reset_state()
    accelerator = Accelerator(mixed_precision=_mixed_precision(stage), gradient_accumulation_steps=accum, cpu=cpu)
    sharded = accelerator.distributed_type in (DistributedType.FSDP, DistributedType.DEEPSPEED)
    if accelerator.distributed_type == DistributedType.DEEPSPEED:
        ds = accelerator.state.deepspeed_plugin.deepspeed_config
        ds["train_micro_batch_size_per_gpu"] = micro
        ds["gradient_accumulation_steps"] = accum
        ds["train_batch_size"] = global_batch
        ds["gradient_clipping"] = stage.optim.max_grad_norm

    with state.main_process_first():
        tokenizer_dir = resolve_tokenizer(recipe)
    ids = special_ids(tokenizer_dir)
    data = StageData([ExampleSource(s) for s in stage.data], seed)
    total = stage.steps or max(1, math.ceil(stage.epochs * data.epoch_size / global_batch))

    if main:
        ck.prune(stage_dir, stage.keep_checkpoints)  # also removes partial folders of killed runs
    resume = None if fresh else ck.latest_checkpoint(stage_dir)
    if resume is not None:
        ckpt, tstate = resume
        if tstate.get("global_batch_size") != global_batch:
            raise ConfigError(f"{ckpt} was saved with global batch {tstate.get('global_batch_size')}, "
                              f"this run has {global_batch}: resume with the same global batch")
        log.info("resuming stage %s from %s (step %d)", stage_name, ckpt, tstate["step"])
        model = load_module(module, ckpt)
        start = int(tstate["step"])
    else:
        with state.main_process_first():
            model = initial_model(recipe, stage_name, tokenizer_dir, seed)
        start = 0
    model.config.use_cache = False
    if hasattr(model, "set_attn_implementation"):
        try:
            model.set_attn_implementation("sdpa")
        except (ValueError, ImportError) as exc:  # e.g. a model class without SDPA support
            log.warning("SDPA attention unavailable (%s); using %s", exc, model.config._attn_implementation)
    parts = set_trainable(model, stage)
    if stage.gradient_checkpointing:
        # transformers 5 renamed it; older releases the project still allows have only the old name
        enable = getattr(model, "activation_checkpointing_enable", None)
        if enable is not None:
            enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.train()

    from runtime.tokenizer import BundleTokenizer

    if stage.kind == "vision":
        from training.cells import CellCollator, cell_loss_module

        collator: Any = CellCollator(_image_prep(model))
        grid = _scene_grid(stage)
        wrapper = cell_loss_module(model, grid)
        head = [(n, p) for n, p in wrapper.named_parameters() if not n.startswith("model.")]
        parts = {**parts, "head": head}
        if resume is not None and (resume[0] / HEAD_FILE).is_file():
            from safetensors.torch import load_file

            wrapper.load_state_dict(load_file(str(resume[0] / HEAD_FILE)), strict=False)
    else:
        collator = Collator(
            BundleTokenizer(tokenizer_dir / "tokenizer.json"), pad_id=ids["pad"], max_length=stage.max_length,
            image_tokens=(model.config.vision_config.image_size // model.config.vision_config.patch_size) ** 2
            if module == "perception" else 0,
            image_token_id=ids["image"] if module == "perception" else None,
            image=_image_prep(model) if module == "perception" else None,
            pad_to_multiple=8 if torch.cuda.is_available() else 1,
        )
        wrapper = _target_loss_module()(model)
    groups = _param_groups(parts, stage.optim)
    optimizer = torch.optim.AdamW(groups, lr=stage.optim.lr, betas=(stage.optim.beta1, stage.optim.beta2),
                                  eps=stage.optim.eps, weight_decay=stage.optim.weight_decay)
    wrapper, optimizer = accelerator.prepare(wrapper, optimizer)
    steplog = StepLog(stage_dir / "log.jsonl")
    if resume is not None:
        ckpt = resume[0]
        if sharded:
            accelerator.load_state(str(ckpt / "accelerate"), load_kwargs={"weights_only": True})
        else:
            ck.load_optimizer(optimizer, ckpt)
        ck.load_rng(ckpt, rank)
        if main:
            steplog.truncate(start)
    elif main:
        steplog.reset()
    accelerator.wait_for_everyone()

    meta = {"stage": stage_name, "kind": stage.kind, "module": module, "trainable": list(trainable_parts(stage)),
            "init": resolve_init(recipe, stage_name), "recipe": recipe.name,
            "global_batch_size": global_batch, "micro_batch_size": micro, "grad_accum": accum,
            "processes": world, "total_steps": total, "seed": seed,
            "mixed_precision": accelerator.mixed_precision, "distributed": str(accelerator.distributed_type),
            "epoch_size": data.epoch_size, "stage_config": to_dict(stage)}
    counters = {"tokens": 0, "examples": 0, "seconds": 0.0}
    if resume is not None:
        counters.update({k: resume[1].get(k, v) for k, v in counters.items()})
    first_loss = last_loss = None
    step = start
    t_run = time.perf_counter()

    def save(kind: str) -> Path:
        name = ck.checkpoint_name(step) if kind == "checkpoint" else "final"
        target = (stage_dir / "checkpoints" / name) if kind == "checkpoint" else final_dir(recipe, stage_name)
        tmp = target.parent / f".{target.name}.partial"
        if main:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
        accelerator.wait_for_everyone()
        inner = accelerator.unwrap_model(wrapper).model
        if sharded:
            sd = accelerator.get_state_dict(wrapper)
            if main:
                sd = {k.removeprefix("model."): v for k, v in sd.items() if k.startswith("model.")}
                inner.save_pretrained(tmp, state_dict=sd)
        elif main:
            inner.save_pretrained(tmp)
        if main and kind == "checkpoint" and stage.kind == "vision":
            from safetensors.torch import save_file

            heads = {k: v.detach().cpu().contiguous() for k, v in accelerator.unwrap_model(wrapper).state_dict().items()
                     if not k.startswith("model.")}
            save_file(heads, str(tmp / HEAD_FILE))
        if main:
            copy_tokenizer(tokenizer_dir, tmp)
        if kind == "checkpoint":
            if sharded:
                accelerator.save_state(str(tmp / "accelerate"))
            elif main:
                ck.save_optimizer(optimizer, tmp)
            ck.save_rng(tmp, rank)
            if main:
                atomic_write_text(tmp / ck.STATE, json.dumps({**meta, **counters, "step": step}, indent=1))
        elif main:
            entries = steplog.read_lines()
            summary = {**meta, **counters, "step": step, "complete": step >= total,
                       "first_loss": entries[0]["loss"] if entries else None,
                       "last_loss": entries[-1]["loss"] if entries else None}
            atomic_write_text(tmp / SUMMARY, json.dumps(summary, indent=1))
        accelerator.wait_for_everyone()
        if main:
            ck.publish(tmp, target)
            if kind == "checkpoint":
                ck.point_latest(stage_dir, target, step)
                ck.prune(stage_dir, stage.keep_checkpoints)
        accelerator.wait_for_everyone()
        return target

    device = accelerator.device
    progress(f"{stage_name}: step {start}/{total}", start / total)
    while step < total:
        if stop_at_step is not None and step >= stop_at_step:
            break
        t0 = time.perf_counter()
        factor = lr_at(step, total, stage.optim)
        for g in optimizer.param_groups:
            g["lr"] = g["base_lr"] * factor
        base = step * global_batch
        tokenized = [collator.tokenize(data.example(w)) for w in data.positions(base, global_batch)]
        n_global = sum(t.n_targets for t in tokenized)
        loss_sum = torch.zeros((), device=device)
        grad_norm = None
        for begin, count in step_slices(step, micro, accum, world, rank):
            batch = collator.collate(tokenized[begin - base: begin - base + count])
            batch = {k: (v.to(device) if v is not None else None) for k, v in batch.items()}
            with accelerator.accumulate(wrapper):
                loss, _ = wrapper(**batch)
                accelerator.backward(loss * (world * accum / max(n_global, 1)))
                if accelerator.sync_gradients:
                    if stage.optim.max_grad_norm > 0:
                        # the wrapped model's parameters: FSDP2 replaces the tensors it shards
                        gn = accelerator.clip_grad_norm_(wrapper.parameters(), stage.optim.max_grad_norm)
                        grad_norm = float(gn) if gn is not None else None
                    optimizer.step()
                    optimizer.zero_grad(set_to_none=True)
            loss_sum += loss.detach().float()
        total_loss = float(accelerator.reduce(loss_sum, reduction="sum")) / max(n_global, 1)
        step += 1
        dt = time.perf_counter() - t0
        n_tokens = sum(len(t.input_ids) for t in tokenized)
        counters["tokens"] += n_tokens
        counters["examples"] += global_batch
        counters["seconds"] += dt
        first_loss = total_loss if first_loss is None else first_loss
        last_loss = total_loss
        if main and (step % stage.log_every == 0 or step == total):
            steplog.append({"step": step, "loss": round(total_loss, 6), "lr": stage.optim.lr * factor,
                            "grad_norm": grad_norm, "tokens": n_tokens, "target_tokens": n_global,
                            "tokens_per_s": round(n_tokens / dt, 1), "examples_per_s": round(global_batch / dt, 2),
                            "seconds": round(counters["seconds"], 2),
                            "epoch": round(base / data.epoch_size, 4)})
        progress(f"{stage_name}: step {step}/{total} loss {total_loss:.4f}", step / total)
        if stage.save_every and step % stage.save_every == 0 and step < total:
            save("checkpoint")
            if main:
                plot_loss(steplog.read_lines(), stage_dir / "loss.png", title=f"{recipe.name}: {stage_name}")

    stopped_early = step < total
    if stopped_early:
        save("checkpoint")
    else:
        save("final")
    if main:
        plot_loss(steplog.read_lines(), stage_dir / "loss.png", title=f"{recipe.name}: {stage_name}")
    accelerator.wait_for_everyone()
    elapsed = time.perf_counter() - t_run
    log.info("stage %s: %d/%d steps in %.1fs (last loss %s)", stage_name, step, total, elapsed, last_loss)
    accelerator.free_memory()
    return StageResult(
        stage=stage_name, kind=stage.kind, final=str(final_dir(recipe, stage_name)), steps=step,
        global_batch_size=global_batch, processes=world, last_loss=last_loss, first_loss=first_loss,
        seconds=counters["seconds"], tokens=counters["tokens"], examples=counters["examples"],
        resumed_from=start if resume is not None else None,
    )


def result_json(result: StageResult) -> str:
    return json.dumps(asdict(result))
