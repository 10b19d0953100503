"""Recipes: frozen dataclass configs for models, data and training stages.

A recipe is a YAML (or JSON) file whose first comment line is the exact command that runs
it. It names the models (sizes and where their weights start), the tokenizer, and an
ordered set of stages; each stage says what it trains (`kind`), from what (`init`), on
which data, and how. Loading is strict (`runtime.config_io.from_dict`): an unknown key or a
wrong type is an error naming the field, so a typo never silently falls back to a default.

`--set stages.align.steps=10` style overrides are applied to the raw data before that
check, so they are validated exactly like the file.
"""

from __future__ import annotations

import copy
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from runtime.config_io import from_dict
from runtime.errors import ConfigError

StageKind = Literal["vision", "align", "instruct", "caption", "extract", "reasoner"]
Style = Literal["caption", "direct", "extraction", "trace", "hint", "conversation", "grid", "cells"]
Part = Literal["vision", "projector", "language"]
Precision = Literal["auto", "fp32", "bf16"]
Schedule = Literal["cosine", "linear", "constant"]

RECIPES = Path(__file__).parent / "recipes"  # the recipe files shipped with the package


@dataclass(frozen=True)
class PerceptionSpec:
    """The perception VLM: SigLIP tower + 2-layer GELU projector + Qwen3 decoder.

    `vision` / `text` are named sizes (training.models.sizes). `vision_init` / `text_init`
    (a hub id or a folder) load pretrained weights into the tower and the decoder; left
    out, that part starts from random weights (the synthetic-world recipes).
    """

    vision: str = "siglip-edge-s"
    text: str = "qwen3-edge-s"
    vision_init: str | None = None
    text_init: str | None = None
    # LLaVA-OneVision pooling stride of the image features after the projector: 1 none
    # (27x27 = 729 tokens), 2 (14x14 = 196), 3 (9x9 = 81). Recorded in the checkpoint;
    # `edge export` writes it into the bundle's image_layout.
    image_pool: int = 1
    # The image input: "single" (one view) or "anyres" (LLaVA-OneVision's base view + tiles
    # from the pinpoints, unpadded, shrunk past `anyres_max_tiles` tiles, with a learned
    # image_newline ending every row: training.models.anyres, the runtime's own planning).
    # Pinpoints as the fork's flag ("(1x1),...,(6x6)": multiples of the view size) or a list
    # of [width, height] pixel pairs written as a string; anyres_max_tiles null: no shrink.
    input_mode: Literal["single", "anyres"] = "single"
    image_grid_pinpoints: str = "(1x1),...,(6x6)"
    anyres_max_tiles: int | None = 9


@dataclass(frozen=True)
class ReasonerSpec:
    text: str = "qwen3-edge-s"
    init: str | None = None  # hub id or folder of a Qwen3 checkpoint


@dataclass(frozen=True)
class DataSource:
    """One ingredient of a stage's data mix.

    kind "synthetic": a dataset folder written by `edge data synth` (records carry every
    target, `style` picks one; "grid" lists every grid cell, an alignment target for towers
    trained from scratch). kind "llava_json": LLaVA conversation JSON with an image
    folder (style "conversation"; "caption" takes the first answer as the caption, under
    the runtime's caption instruction). kind "extraction_jsonl": the output of the
    visual-extraction pipeline (`edge data extract`; style "extraction": the extraction
    instruction -> the teacher's description; SKIP and error rows are left out).
    `weight` scales how often the source appears per epoch (0.5 = half its records, 2 =
    twice); `limit` caps how many records are read.
    """

    kind: Literal["synthetic", "llava_json", "extraction_jsonl"]
    path: str
    style: Style
    split: str = "train"
    image_folder: str | None = None
    weight: float = 1.0
    limit: int | None = None
    # trace style: share of examples whose description is the caption rather than the
    # question-relevant extraction (one reasoner serves Caption+Think and Extract+Think).
    caption_share: float = 0.0
    # trace style: how a multiple-choice trace ends. "letter": it restates the options and
    # answers with a letter (the paper's format); "value": it answers with the option's text,
    # which the runtime maps to the letter (runtime.answer.match_option) -- a small model
    # trained from scratch copies one value more reliably than it restates four options.
    answer: Literal["letter", "value"] = "letter"
    # trace style: share of examples trained with thinking; the rest are trained in the
    # runtime's non-thinking form (the direct-answer instruction, an empty think block, then
    # the answer line), so one reasoner serves `thinking` on and off (the study's finding (d)).
    thinking_share: float = 1.0


@dataclass(frozen=True)
class OptimConfig:
    lr: float = 1e-4
    weight_decay: float = 0.0
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    warmup_steps: int = 0
    warmup_ratio: float = 0.0  # used when warmup_steps is 0
    schedule: Schedule = "cosine"
    min_lr_ratio: float = 0.0  # cosine/linear decay ends at lr * min_lr_ratio
    max_grad_norm: float = 1.0  # 0 disables clipping
    # learning-rate multiplier per part (LLaVA-OneVision trains the tower at ~1/5 the lr)
    part_lr_scale: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class StageConfig:
    kind: StageKind
    data: tuple[DataSource, ...]
    steps: int = 0  # optimizer steps; 0 = derive from `epochs`
    epochs: float = 0.0
    micro_batch_size: int = 8  # per process
    grad_accum: int = 0  # 0 = derive from global_batch_size (or 1)
    global_batch_size: int = 0  # 0 = micro_batch_size * grad_accum * processes
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainable: tuple[Part, ...] | None = None  # None: the kind's default
    # where the weights start: "recipe" (build/load from the recipe's model spec),
    # "stage:NAME" (the final checkpoint of an earlier stage of this recipe), or a
    # folder / hub id. None: the kind's default.
    init: str | None = None
    max_length: int = 2048
    precision: Precision = "auto"
    gradient_checkpointing: bool = False
    save_every: int = 0  # 0 = only at the end
    keep_checkpoints: int = 2
    log_every: int = 1
    seed: int | None = None  # None: the recipe's seed


@dataclass(frozen=True)
class TokenizerSpec:
    """"qwen3" rebuilds Qwen3's tokenizer offline; "train" trains a small byte-level BPE
    (Qwen3's specials appended) on the text of the synthetic dataset `corpus`; anything
    else is a folder (or hub id) with a tokenizer.json. Built tokenizers are written to
    OUTPUT_DIR/tokenizer once and reused."""

    source: str = "qwen3"
    corpus: str | None = None
    vocab_size: int = 2000


@dataclass(frozen=True)
class Recipe:
    name: str
    output_dir: str
    stages: dict[str, StageConfig]
    tokenizer: TokenizerSpec = field(default_factory=TokenizerSpec)
    perception: PerceptionSpec = field(default_factory=PerceptionSpec)
    reasoner: ReasonerSpec = field(default_factory=ReasonerSpec)
    seed: int = 0
    threads: int = 0  # CPU threads per process (0 = torch's default)
    description: str = ""
    # `${name}` in any string of the recipe is replaced by vars[name] (e.g. a work folder,
    # so `--set vars.work=/scratch/run` moves every path at once)
    vars: dict[str, str] = field(default_factory=dict)

    def stage(self, name: str) -> StageConfig:
        try:
            return self.stages[name]
        except KeyError:
            raise ConfigError(f"recipe {self.name!r} has no stage {name!r} "
                              f"(stages: {', '.join(self.stages)})") from None

    def stage_dir(self, name: str) -> Path:
        return Path(self.output_dir) / name


def _parse_scalar(text: str) -> Any:
    import yaml  # deferred: `edge --help` imports this module, and pyyaml is the [train] extra's

    return yaml.safe_load(text)


def apply_overrides(data: dict, overrides: list[str] | tuple[str, ...]) -> dict:
    """`a.b.c=value` assignments (value parsed as YAML) on a copy of the raw recipe."""
    out = copy.deepcopy(data)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not KEY=VALUE (e.g. stages.align.steps=10)")
        key, _, raw = item.partition("=")
        parts = [p for p in key.strip().split(".") if p]
        if not parts:
            raise ConfigError(f"override {item!r} has an empty key")
        node = out
        for p in parts[:-1]:
            if isinstance(node, list):
                node = _list_item(node, p, item)
                continue
            if p not in node or not isinstance(node[p], (dict, list)):
                node[p] = {}
            node = node[p]
        last = parts[-1]
        if isinstance(node, list):
            idx = _list_index(node, last, item)
            node[idx] = _parse_scalar(raw)
        else:
            node[last] = _parse_scalar(raw)
    return out


def _list_index(node: list, p: str, item: str) -> int:
    try:
        idx = int(p)
        node[idx]  # noqa: B018 - bounds check
        return idx
    except (ValueError, IndexError):
        raise ConfigError(f"override {item!r}: {p!r} is not an index of a {len(node)}-item list") from None


def _list_item(node: list, p: str, item: str) -> Any:
    return node[_list_index(node, p, item)]


def read_recipe_data(path: str | os.PathLike[str]) -> dict:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{p}: recipe not found") from None
    if p.suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{p}: not valid JSON ({exc})") from None
    else:
        import yaml  # deferred (see _parse_scalar)

        try:
            data = yaml.safe_load(text)  # safe_load: no object construction from the file
        except yaml.YAMLError as exc:
            raise ConfigError(f"{p}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: a recipe is a mapping at the top level")
    return data


_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def substitute_vars(data: dict) -> dict:
    """Replace `${name}` in every string (except inside `vars`) by `vars[name]`."""
    values = data.get("vars") or {}
    if not isinstance(values, dict) or not all(isinstance(v, str) for v in values.values()):
        raise ConfigError("vars: a mapping of names to strings")

    def sub(node: Any, where: str) -> Any:
        if isinstance(node, str):
            def one(m: re.Match) -> str:
                if m.group(1) not in values:
                    raise ConfigError(f"{where}: ${{{m.group(1)}}} is not defined in vars")
                return values[m.group(1)]
            return _VAR.sub(one, node)
        if isinstance(node, dict):
            return {k: (v if (where == "" and k == "vars") else sub(v, f"{where}.{k}".lstrip(".")))
                    for k, v in node.items()}
        if isinstance(node, list):
            return [sub(v, f"{where}[{i}]") for i, v in enumerate(node)]
        return node

    return sub(data, "")


def recipe_from_data(data: dict, where: str = "recipe") -> Recipe:
    recipe = from_dict(Recipe, substitute_vars(data), where=where)
    validate_recipe(recipe)
    return recipe


def load_recipe(path: str | os.PathLike[str], overrides: list[str] | tuple[str, ...] = ()) -> Recipe:
    data = apply_overrides(read_recipe_data(path), overrides)
    return recipe_from_data(data, where=Path(path).name)


def validate_recipe(recipe: Recipe) -> None:
    if recipe.tokenizer.source == "train" and not recipe.tokenizer.corpus:
        raise ConfigError("tokenizer: source 'train' needs corpus (a synthetic dataset folder)")
    if not recipe.stages:
        raise ConfigError(f"recipe {recipe.name!r} has no stages")
    names = list(recipe.stages)
    for i, (name, st) in enumerate(recipe.stages.items()):
        where = f"stages.{name}"
        if not name or "/" in name or name.startswith("."):
            raise ConfigError(f"{where}: a stage name must be a plain folder name")
        if name in ("all", "default-bundle", "list"):
            raise ConfigError(f"{where}: {name!r} is reserved for a subcommand")
        if st.steps < 0 or st.epochs < 0 or (st.steps == 0 and st.epochs == 0):
            raise ConfigError(f"{where}: give steps > 0 or epochs > 0")
        if st.micro_batch_size < 1 or st.grad_accum < 0 or st.global_batch_size < 0:
            raise ConfigError(f"{where}: batch sizes must be positive")
        if st.max_length < 8:
            raise ConfigError(f"{where}: max_length must be at least 8")
        if st.optim.lr <= 0:
            raise ConfigError(f"{where}.optim.lr must be > 0")
        if not 0 <= st.optim.min_lr_ratio <= 1 or not 0 <= st.optim.warmup_ratio < 1:
            raise ConfigError(f"{where}.optim: min_lr_ratio in [0, 1], warmup_ratio in [0, 1)")
        for part, scale in st.optim.part_lr_scale.items():
            if part not in ("vision", "projector", "language") or scale < 0:
                raise ConfigError(f"{where}.optim.part_lr_scale: {part}={scale} (parts: vision, "
                                  "projector, language; scale >= 0)")
        if not st.data:
            raise ConfigError(f"{where}: no data")
        for j, src in enumerate(st.data):
            if src.weight <= 0:
                raise ConfigError(f"{where}.data[{j}].weight must be > 0")
            if not 0 <= src.caption_share <= 1:
                raise ConfigError(f"{where}.data[{j}].caption_share must be in [0, 1]")
            if not 0 <= src.thinking_share <= 1:
                raise ConfigError(f"{where}.data[{j}].thinking_share must be in [0, 1]")
            if src.answer not in ("letter", "value"):
                raise ConfigError(f"{where}.data[{j}].answer must be letter or value")
            if src.kind == "llava_json" and src.style not in ("conversation", "caption"):
                raise ConfigError(f"{where}.data[{j}]: llava_json data has style conversation or caption")
            if src.kind == "extraction_jsonl" and src.style != "extraction":
                raise ConfigError(f"{where}.data[{j}]: extraction_jsonl data has style extraction")
            if src.kind == "synthetic" and src.style == "conversation":
                raise ConfigError(f"{where}.data[{j}]: synthetic records have no conversation style")
            if (src.style == "cells") != (st.kind == "vision"):
                raise ConfigError(f"{where}.data[{j}]: the cells style is for (and only for) vision stages")
        if st.init and st.init.startswith("stage:"):
            ref = st.init[len("stage:"):]
            if ref not in names[:i]:
                raise ConfigError(f"{where}.init: {st.init!r} must name an earlier stage "
                                  f"(earlier: {', '.join(names[:i]) or 'none'})")
            if recipe.stages[ref].kind == "reasoner" and st.kind != "reasoner":
                raise ConfigError(f"{where}.init: {st.init!r} is a reasoner; a perception stage cannot start from it")
        if st.kind == "vision" and st.trainable and set(st.trainable) != {"vision"}:
            raise ConfigError(f"{where}.trainable: a vision stage trains the tower only")
        if st.kind == "reasoner" and st.trainable and set(st.trainable) != {"language"}:
            raise ConfigError(f"{where}.trainable: the reasoner has only the 'language' part")
