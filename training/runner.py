"""One training stage as a recipe object: `setup`, `loss_step`, `save`, `train`.

    runner = StageRunner(recipe, "align", progress=..., stop_at_step=None, fresh=False)
    result = runner.train()       # setup() -> loss_step() per step -> save("checkpoint" | "final")

`training.loop.train_stage` is the functional entry point; it imports this module only
when a stage runs, since this is where torch and accelerate come in. What makes N
processes equal one, and how the loss is normalised: `training.loop`. The losses:
`training.losses`. Checkpoint layout and resuming: `training.checkpoint`.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator, PartialState
from accelerate.state import AcceleratorState, GradientState
from accelerate.utils import DistributedType, set_seed
from safetensors.torch import load_file, save_file
from transformers.utils import logging as hf_logging

from runtime.atomic import atomic_write_bytes, atomic_write_text
from runtime.config_io import to_dict
from runtime.errors import ConfigError
from runtime.image import SIGLIP_MEAN, SIGLIP_STD
from runtime.manifest import ImagePreprocess
from runtime.progress import Progress
from runtime.tokenizer import BundleTokenizer
from training import checkpoint as ck
from training.cells import CellCollator
from training.collate import Collator, StageData, step_slices
from training.config import OptimConfig, Recipe, StageConfig
from training.data.synth import SynthDataset
from training.examples import ExampleSource
from training.logs import StepLog, plot_loss
from training.losses import CellLoss, TargetLoss
from training.model_init import (
    copy_tokenizer,
    final_dir,
    init_source,
    initial_model,
    load_module,
    resolve_init,
    resolve_tokenizer,
    set_trainable,
    special_ids,
)
from training.models.anyres import CONFIG_KEY as LAYOUT_KEY
from training.models.anyres import (
    NEWLINE_FILE,
    config_entry,
    initial_newline,
    layout_spec,
    newline_bytes,
)
from training.models.pooling import CONFIG_KEY as POOL_KEY
from training.models.pooling import check_pool
from training.models.pooling import image_tokens as pooled_image_tokens
from training.schedule import batch_geometry, lr_at, total_steps
from training.stage_result import SUMMARY, StageResult, finished_result, stage_summary
from training.stages import module_of, trainable_parts

log = logging.getLogger(__name__)

HEAD_FILE = "cell_heads.safetensors"  # vision stages: the pretraining heads (checkpoints only)


def _mixed_precision(stage: StageConfig) -> str:
    if stage.precision == "fp32":
        return "no"
    if stage.precision == "bf16":
        return "bf16"
    return "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "no"


def _param_groups(parts: dict[str, list[tuple[str, Any]]], opt: OptimConfig) -> list[dict]:
    """AdamW groups per trainable part (its lr scale), decay on matrices that are not norms."""
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
    return ImagePreprocess(size=model.config.vision_config.image_size, mean=SIGLIP_MEAN, std=SIGLIP_STD)


class StageRunner:
    """Trains one stage of a recipe, resuming from its last checkpoint unless `fresh`.

    `stop_at_step`: stop (with a checkpoint) once that many steps are done; a later run
    continues from there. A stage whose final checkpoint exists is skipped.
    """

    def __init__(self, recipe: Recipe, stage_name: str, *, progress: Progress | None = None,
                 stop_at_step: int | None = None, fresh: bool = False) -> None:
        self.recipe, self.name = recipe, stage_name
        self.stage = recipe.stage(stage_name)
        self.module = module_of(self.stage)
        self.stage_dir = recipe.stage_dir(stage_name)
        self.progress = progress or (lambda msg, frac: None)
        self.stop_at_step, self.fresh = stop_at_step, fresh
        # Without a GPU, accelerate only sets up a (gloo) process group when told to use the CPU.
        self.cpu = not torch.cuda.is_available()
        self.state = PartialState(cpu=self.cpu)
        self.world, self.rank = self.state.num_processes, self.state.process_index
        self.main = self.state.is_main_process

    # ---- the recipe's steps ----------------------------------------------------------

    def train(self) -> StageResult:
        if self.fresh:
            if self.main and self.stage_dir.exists():
                shutil.rmtree(self.stage_dir)
            self.state.wait_for_everyone()
        done = stage_summary(self.recipe, self.name)
        if done is not None and done.get("complete"):
            log.info("stage %s already finished (%s); skipping", self.name, final_dir(self.recipe, self.name))
            return finished_result(self.recipe, self.name, done)
        self.setup()
        return self._run()

    def setup(self) -> None:
        """Seed, batch geometry, accelerator, data, model (fresh or resumed), loss, optimizer.

        The order is the seeded order: model and loss heads draw their initial weights
        from the RNG in exactly this sequence, so a rerun builds the same model."""
        if self.recipe.threads:
            torch.set_num_threads(self.recipe.threads)
        hf_logging.disable_progress_bar()  # our own progress line covers loading and saving
        self.seed = self.recipe.seed if self.stage.seed is None else self.stage.seed
        set_seed(self.seed)
        self.micro, self.accum, self.global_batch = batch_geometry(self.stage, self.world)
        self._setup_accelerator()
        with self.state.main_process_first():
            self.tokenizer_dir = resolve_tokenizer(self.recipe)
        self.ids = special_ids(self.tokenizer_dir)  # also checks the tokenizer has Qwen3's specials
        self.data = StageData([ExampleSource(s) for s in self.stage.data], self.seed)
        self.total = total_steps(self.stage, self.data.epoch_size, self.global_batch)
        if self.main:
            ck.prune(self.stage_dir, self.stage.keep_checkpoints)  # also removes partial folders of killed runs
        self.resume = None if self.fresh else ck.latest_checkpoint(self.stage_dir)
        model, parts = self._setup_model()
        self._setup_loss(model, parts)
        self._restore()

    def loss_step(self, step: int) -> tuple[float, float | None, int, int]:
        """One optimizer step over the global batch of `step`: (loss per target token,
        gradient norm, tokens seen, target tokens in the global batch)."""
        factor = lr_at(step, self.total, self.stage.optim)
        for g in self.optimizer.param_groups:
            g["lr"] = g["base_lr"] * factor
        base = step * self.global_batch
        tokenized = [self.collator.tokenize(self.data.example(w)) for w in self.data.positions(base, self.global_batch)]
        n_global = sum(t.n_targets for t in tokenized)
        acc = self.accelerator
        loss_sum = torch.zeros((), device=acc.device)
        grad_norm = None
        for begin, count in step_slices(step, self.micro, self.accum, self.world, self.rank):
            batch = self.collator.collate(tokenized[begin - base: begin - base + count])
            batch = {k: (v.to(acc.device) if isinstance(v, torch.Tensor) else v) for k, v in batch.items()}
            with acc.accumulate(self.wrapper):
                loss, _ = self.wrapper(**batch)
                # a sum over this slice's targets, scaled so that DDP's averaging and the
                # accumulation's division leave the mean over the global batch's targets
                acc.backward(loss * (self.world * self.accum / max(n_global, 1)))
                if acc.sync_gradients:
                    if self.stage.optim.max_grad_norm > 0:
                        # the wrapped model's parameters: FSDP2 replaces the tensors it shards
                        gn = acc.clip_grad_norm_(self.wrapper.parameters(), self.stage.optim.max_grad_norm)
                        grad_norm = float(gn) if gn is not None else None
                    self.optimizer.step()
                    self.optimizer.zero_grad(set_to_none=True)
            loss_sum += loss.detach().float()
        total_loss = float(acc.reduce(loss_sum, reduction="sum")) / max(n_global, 1)
        return total_loss, grad_norm, sum(len(t.input_ids) for t in tokenized), n_global

    def save(self, kind: str, step: int) -> Path:
        """A checkpoint (weights, optimizer, RNG, progress) or the final weights + summary,
        built in a hidden `.NAME.partial` folder and renamed into place when complete."""
        name = ck.checkpoint_name(step) if kind == "checkpoint" else "final"
        target = (self.stage_dir / "checkpoints" / name) if kind == "checkpoint" else final_dir(self.recipe, self.name)
        tmp = target.parent / f".{target.name}.partial"
        if self.main:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
        self.accelerator.wait_for_everyone()
        self._save_weights(tmp, with_heads=kind == "checkpoint")
        if kind == "checkpoint":
            self._save_training_state(tmp, step)
        elif self.main:
            entries = self.steplog.read_lines()
            summary = {**self.meta, **self.counters, "step": step, "complete": step >= self.total,
                       "first_loss": entries[0]["loss"] if entries else None,
                       "last_loss": entries[-1]["loss"] if entries else None}
            atomic_write_text(tmp / SUMMARY, json.dumps(summary, indent=1))
        self.accelerator.wait_for_everyone()
        if self.main:
            ck.publish(tmp, target)
            if kind == "checkpoint":
                ck.point_latest(self.stage_dir, target, step)
                ck.prune(self.stage_dir, self.stage.keep_checkpoints)
        self.accelerator.wait_for_everyone()
        return target

    # ---- setup parts -------------------------------------------------------------------

    def _setup_accelerator(self) -> None:
        # Accelerator state is a process-wide singleton; each stage sets its own precision and
        # accumulation, so the previous stage's (same process: `edge train all`) is cleared.
        AcceleratorState._reset_state(reset_partial_state=False)
        GradientState._reset_state()
        self.accelerator = Accelerator(mixed_precision=_mixed_precision(self.stage),
                                       gradient_accumulation_steps=self.accum, cpu=self.cpu)
        self.sharded = self.accelerator.distributed_type in (DistributedType.FSDP, DistributedType.DEEPSPEED)
        if self.accelerator.distributed_type == DistributedType.DEEPSPEED:
            ds = self.accelerator.state.deepspeed_plugin.deepspeed_config
            ds["train_micro_batch_size_per_gpu"] = self.micro
            ds["gradient_accumulation_steps"] = self.accum
            ds["train_batch_size"] = self.global_batch
            ds["gradient_clipping"] = self.stage.optim.max_grad_norm

    def _setup_model(self) -> tuple[Any, dict[str, list[tuple[str, Any]]]]:
        """The model from the last checkpoint or the stage's init, with its trainable parts."""
        if self.resume is not None:
            ckpt, tstate = self.resume
            if tstate.get("global_batch_size") != self.global_batch:
                raise ConfigError(f"{ckpt} was saved with global batch {tstate.get('global_batch_size')}, "
                                  f"this run has {self.global_batch}: resume with the same global batch")
            log.info("resuming stage %s from %s (step %d)", self.name, ckpt, tstate["step"])
            model = load_module(self.module, ckpt)
            self.start = int(tstate["step"])
        else:
            with self.state.main_process_first():
                model = initial_model(self.recipe, self.name, self.tokenizer_dir, self.seed)
            self.start = 0
        model.config.use_cache = False
        self.layout = None
        if self.module == "perception":  # saved with the checkpoint: export and evaluation read it
            setattr(model.config, POOL_KEY, check_pool(self.recipe.perception.image_pool))
            self.layout = layout_spec(self.recipe.perception, model.config.vision_config,
                                      model.config.text_config.hidden_size)
            setattr(model.config, LAYOUT_KEY, config_entry(self.layout))
        if hasattr(model, "set_attn_implementation"):
            try:
                model.set_attn_implementation("sdpa")
            except (ValueError, ImportError) as exc:  # e.g. a model class without SDPA support
                log.warning("SDPA attention unavailable (%s); using %s", exc, model.config._attn_implementation)
        parts = set_trainable(model, self.stage)
        if self.stage.gradient_checkpointing:
            # transformers 5 renamed it; older releases the project still allows have only the old name
            enable = getattr(model, "activation_checkpointing_enable", None)
            if enable is not None:
                enable(activation_checkpointing_kwargs={"use_reentrant": False})
            else:
                model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.train()
        return model, parts

    def _setup_loss(self, model: Any, parts: dict[str, list[tuple[str, Any]]]) -> None:
        """The collator and loss for the stage's kind, then the optimizer over its parts."""
        if self.stage.kind == "vision":
            self.collator: Any = CellCollator(_image_prep(model))
            grid = SynthDataset(self.stage.data[0].path).config.scene.grid
            wrapper: Any = CellLoss(model, grid)
            head = [(n, p) for n, p in wrapper.named_parameters() if not n.startswith("model.")]
            parts = {**parts, "head": head}
            if self.resume is not None and (self.resume[0] / HEAD_FILE).is_file():
                wrapper.load_state_dict(load_file(str(self.resume[0] / HEAD_FILE)), strict=False)
        else:
            ids = self.ids
            perception = self.module == "perception"
            vision = model.config.vision_config if perception else None
            self.collator = Collator(
                BundleTokenizer(self.tokenizer_dir / "tokenizer.json"), pad_id=ids["pad"],
                max_length=self.stage.max_length,
                image_tokens=pooled_image_tokens(vision, self.recipe.perception.image_pool) if perception else 0,
                image_token_id=ids["image"] if perception else None,
                image=_image_prep(model) if perception else None,
                pad_to_multiple=8 if torch.cuda.is_available() else 1,
                layout=self.layout,
            )
            newline = None
            if self.layout is not None:  # the checkpoint resumed, else the stage started from, else new
                if self.resume is not None:
                    start = self.resume[0]
                elif resolve_init(self.recipe, self.name) != "recipe":
                    start = Path(init_source(self.recipe, self.name))
                else:
                    start = None
                newline = initial_newline(self.layout.hidden, self.seed, start)
            wrapper = TargetLoss(model, image_pool=self.recipe.perception.image_pool if perception else 1,
                                 image_newline=newline)
            if wrapper.image_newline is not None:  # LLaVA trains it with the projector
                trains = "projector" in parts
                wrapper.image_newline.requires_grad_(trains)
                if trains:
                    parts = {**parts, "projector": [*parts["projector"], ("image_newline", wrapper.image_newline)]}
        opt = self.stage.optim
        optimizer = torch.optim.AdamW(_param_groups(parts, opt), lr=opt.lr, betas=(opt.beta1, opt.beta2),
                                      eps=opt.eps, weight_decay=opt.weight_decay)
        self.wrapper, self.optimizer = self.accelerator.prepare(wrapper, optimizer)

    def _restore(self) -> None:
        """Optimizer, RNG and the step log of the checkpoint resumed from (or a new log)."""
        self.steplog = StepLog(self.stage_dir / "log.jsonl")
        if self.resume is not None:
            ckpt = self.resume[0]
            if self.sharded:
                self.accelerator.load_state(str(ckpt / "accelerate"), load_kwargs={"weights_only": True})
            else:
                ck.load_optimizer(self.optimizer, ckpt)
            ck.load_rng(ckpt, self.rank)
            if self.main:
                self.steplog.truncate(self.start)
        elif self.main:
            self.steplog.reset()
        self.accelerator.wait_for_everyone()
        acc = self.accelerator
        self.meta = {"stage": self.name, "kind": self.stage.kind, "module": self.module,
                     "trainable": list(trainable_parts(self.stage)), "init": resolve_init(self.recipe, self.name),
                     "recipe": self.recipe.name, "global_batch_size": self.global_batch,
                     "micro_batch_size": self.micro, "grad_accum": self.accum, "processes": self.world,
                     "total_steps": self.total, "seed": self.seed, "mixed_precision": acc.mixed_precision,
                     "distributed": str(acc.distributed_type), "epoch_size": self.data.epoch_size,
                     "stage_config": to_dict(self.stage)}
        self.counters = {"tokens": 0, "examples": 0, "seconds": 0.0}
        if self.resume is not None:
            self.counters.update({k: self.resume[1].get(k, v) for k, v in self.counters.items()})

    # ---- training ----------------------------------------------------------------------

    def _run(self) -> StageResult:
        first_loss = last_loss = None
        step = self.start
        t_run = time.perf_counter()
        self.progress(f"{self.name}: step {step}/{self.total}", step / self.total)
        while step < self.total:
            if self.stop_at_step is not None and step >= self.stop_at_step:
                break
            t0 = time.perf_counter()
            loss, grad_norm, n_tokens, n_targets = self.loss_step(step)
            step += 1
            dt = time.perf_counter() - t0
            self.counters["tokens"] += n_tokens
            self.counters["examples"] += self.global_batch
            self.counters["seconds"] += dt
            first_loss = loss if first_loss is None else first_loss
            last_loss = loss
            if self.main and (step % self.stage.log_every == 0 or step == self.total):
                self._log_step(step, loss, grad_norm, n_tokens, n_targets, dt)
            self.progress(f"{self.name}: step {step}/{self.total} loss {loss:.4f}", step / self.total)
            if self.stage.save_every and step % self.stage.save_every == 0 and step < self.total:
                self.save("checkpoint", step)
                self._plot()
        self.save("checkpoint" if step < self.total else "final", step)
        self._plot()
        self.accelerator.wait_for_everyone()
        log.info("stage %s: %d/%d steps in %.1fs (last loss %s)", self.name, step, self.total,
                 time.perf_counter() - t_run, last_loss)
        self.accelerator.free_memory()
        return StageResult(
            stage=self.name, kind=self.stage.kind, final=str(final_dir(self.recipe, self.name)), steps=step,
            global_batch_size=self.global_batch, processes=self.world, last_loss=last_loss,
            first_loss=first_loss, seconds=self.counters["seconds"], tokens=self.counters["tokens"],
            examples=self.counters["examples"], resumed_from=self.start if self.resume is not None else None,
        )

    def _log_step(self, step: int, loss: float, grad_norm: float | None, n_tokens: int, n_targets: int,
                  dt: float) -> None:
        base = (step - 1) * self.global_batch
        self.steplog.append({"step": step, "loss": round(loss, 6),
                             "lr": self.stage.optim.lr * lr_at(step - 1, self.total, self.stage.optim),
                             "grad_norm": grad_norm, "tokens": n_tokens, "target_tokens": n_targets,
                             "tokens_per_s": round(n_tokens / dt, 1),
                             "examples_per_s": round(self.global_batch / dt, 2),
                             "seconds": round(self.counters["seconds"], 2),
                             "epoch": round(base / self.data.epoch_size, 4)})

    def _plot(self) -> None:
        if self.main:
            plot_loss(self.steplog.read_lines(), self.stage_dir / "loss.png",
                      title=f"{self.recipe.name}: {self.name}")

    def _save_weights(self, tmp: Path, *, with_heads: bool) -> None:
        """The model in HF format (+ the vision heads in checkpoints) and its tokenizer."""
        unwrapped = self.accelerator.unwrap_model(self.wrapper)
        inner = unwrapped.model
        newline = getattr(unwrapped, "image_newline", None)
        if self.sharded:
            sd = self.accelerator.get_state_dict(self.wrapper)
            if self.main:
                newline = sd.get("image_newline", newline)
                sd = {k.removeprefix("model."): v for k, v in sd.items() if k.startswith("model.")}
                inner.save_pretrained(tmp, state_dict=sd)
        elif self.main:
            inner.save_pretrained(tmp)
        if self.main and newline is not None:  # beside the weights, as a converted paper checkpoint has it
            atomic_write_bytes(tmp / NEWLINE_FILE, newline_bytes(newline))
        if self.main and with_heads and self.stage.kind == "vision":
            heads = {k: v.detach().cpu().contiguous()
                     for k, v in self.accelerator.unwrap_model(self.wrapper).state_dict().items()
                     if not k.startswith("model.")}
            save_file(heads, str(tmp / HEAD_FILE))
        if self.main:
            copy_tokenizer(self.tokenizer_dir, tmp)

    def _save_training_state(self, tmp: Path, step: int) -> None:
        """Optimizer (sharded through accelerate), RNG and the trainer state of a checkpoint."""
        if self.sharded:
            self.accelerator.save_state(str(tmp / "accelerate"))
        elif self.main:
            ck.save_optimizer(self.optimizer, tmp)
        ck.save_rng(tmp, self.rank)
        if self.main:
            atomic_write_text(tmp / ck.STATE, json.dumps({**self.meta, **self.counters, "step": step}, indent=1))
