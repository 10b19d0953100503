"""Where a stage's weights start, what it trains, and the tokenizer it uses.

`init`:
  "recipe"      build the module from the recipe's named sizes; a perception model takes
                pretrained tower / decoder weights from `vision_init` / `text_init` (hub
                ids or folders) when given, a random projector always.
  "stage:NAME"  the final checkpoint of an earlier stage of the same recipe.
  anything else a checkpoint folder or hub id (safetensors only).
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

from runtime.errors import ConfigError
from runtime.tokenizer import BundleTokenizer
from training.config import Recipe, StageConfig
from training.corpus import tokenizer_corpus
from training.models.builders import (
    build_perception,
    build_reasoner,
    perception_config,
    qwen3_config,
)
from training.models.loading import from_pretrained, load_perception, load_reasoner
from training.models.sizes import text_size, vision_size
from training.stages import init_of, module_of, trainable_parts
from training.tokenizer_build import build_qwen3_tokenizer, save_tokenizer, train_bpe_tokenizer

log = logging.getLogger(__name__)

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")


# ---------------------------------------------------------------------------------------
# Tokenizer


def resolve_tokenizer(recipe: Recipe) -> Path:
    """A folder holding tokenizer.json (+ tokenizer_config.json) for the recipe."""
    src = recipe.tokenizer.source
    if src == "qwen3":
        out = Path(recipe.output_dir) / "tokenizer"
        if not (out / "tokenizer.json").is_file():
            log.info("building Qwen3's tokenizer offline into %s", out)
            save_tokenizer(build_qwen3_tokenizer(), out)
        return out
    if src == "train":
        out = Path(recipe.output_dir) / "tokenizer"
        if not (out / "tokenizer.json").is_file():
            assert recipe.tokenizer.corpus is not None
            log.info("training a %d-entry BPE on %s into %s", recipe.tokenizer.vocab_size,
                     recipe.tokenizer.corpus, out)
            tok = train_bpe_tokenizer(tokenizer_corpus(Path(recipe.tokenizer.corpus)),
                                      vocab_size=recipe.tokenizer.vocab_size)
            save_tokenizer(tok, out)
        return out
    path = Path(src)
    if path.is_dir():
        if not (path / "tokenizer.json").is_file():
            raise ConfigError(f"tokenizer.source {src}: no tokenizer.json in that folder")
        return path
    if path.is_file() and path.name == "tokenizer.json":
        return path.parent
    try:
        # deferred: only a hub id needs it (it comes with transformers, the [train] extra)
        from huggingface_hub import hf_hub_download

        out = Path(recipe.output_dir) / "tokenizer"
        for name in TOKENIZER_FILES:
            got = hf_hub_download(src, name)
            out.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(got, out / name)
        return out
    except Exception as exc:  # hub errors come in many types
        raise ConfigError(f"tokenizer.source {src!r} is neither 'qwen3', a folder nor a reachable "
                          f"hub id ({str(exc).splitlines()[0]})") from None


def special_ids(tokenizer_dir: Path) -> dict[str, int]:
    """The ids the models are built with (image placeholder, end of turn, padding) and the vocab size."""
    tok = BundleTokenizer(tokenizer_dir / "tokenizer.json")
    ids = {"image": tok.token_id("<|image_pad|>"), "eos": tok.token_id("<|im_end|>"),
           "pad": tok.token_id("<|endoftext|>")}
    missing = [k for k, v in ids.items() if v is None]
    if missing:
        raise ConfigError(f"{tokenizer_dir}: the tokenizer lacks Qwen3's special tokens ({missing})")
    return {**ids, "vocab": tok.vocab_size}  # type: ignore[dict-item]


def copy_tokenizer(tokenizer_dir: Path, out: Path) -> None:
    for name in TOKENIZER_FILES:
        if (tokenizer_dir / name).is_file():
            shutil.copyfile(tokenizer_dir / name, out / name)


# ---------------------------------------------------------------------------------------
# Models


def resolve_init(recipe: Recipe, stage_name: str) -> str:
    """The stage's init, with a default "stage:KIND" pointed at the nearest earlier stage
    of that kind (recipes may name their stages freely)."""
    stage = recipe.stage(stage_name)
    init = init_of(stage)
    if stage.init is None and init.startswith("stage:"):
        kind = init[len("stage:"):]
        names = list(recipe.stages)
        earlier = [n for n in names[: names.index(stage_name)] if recipe.stages[n].kind == kind]
        if not earlier:
            raise ConfigError(f"stage {stage_name!r} ({stage.kind}) starts from an earlier "
                              f"{kind!r} stage, but the recipe has none before it: set init")
        return f"stage:{earlier[-1]}"
    return init


def final_dir(recipe: Recipe, stage_name: str) -> Path:
    return recipe.stage_dir(stage_name) / "final"


def init_source(recipe: Recipe, stage_name: str) -> str:
    init = resolve_init(recipe, stage_name)
    if init.startswith("stage:"):
        ref = init[len("stage:"):]
        path = final_dir(recipe, ref)
        if not (path / "config.json").is_file():
            raise ConfigError(f"stage {stage_name!r} starts from stage {ref!r}, which has not "
                              f"finished (no {path}); run `edge train {ref}` first")
        return str(path)
    return init


def _padded_vocab(n: int, multiple: int = 64) -> int:
    return -(-n // multiple) * multiple


def build_perception_from_recipe(recipe: Recipe, tokenizer_dir: Path, seed: int):
    ids = special_ids(tokenizer_dir)
    spec = recipe.perception
    vsize, tsize = vision_size(spec.vision), text_size(spec.text)
    if spec.text_init is None:  # from scratch: exactly the tokenizer's rows (padded to 64)
        tsize = replace(tsize, vocab_size=_padded_vocab(ids["vocab"]))
    config = perception_config(vsize, tsize, image_token_id=ids["image"], eos_token_id=ids["eos"],
                               pad_token_id=ids["pad"])
    model = build_perception(config, seed=seed)
    if spec.vision_init:
        _load_vision(model, spec.vision_init)
    if spec.text_init:
        _load_text(model.model.language_model, model.lm_head, spec.text_init)
    if ids["vocab"] > model.config.text_config.vocab_size:
        raise ConfigError(f"the tokenizer has {ids['vocab']} tokens but the decoder only "
                          f"{model.config.text_config.vocab_size} embedding rows")
    return model


def build_reasoner_from_recipe(recipe: Recipe, tokenizer_dir: Path, seed: int):
    ids = special_ids(tokenizer_dir)
    spec = recipe.reasoner
    if spec.init:
        model = load_reasoner(spec.init)
    else:
        tsize = replace(text_size(spec.text), vocab_size=_padded_vocab(ids["vocab"]))
        model = build_reasoner(qwen3_config(tsize, eos_token_id=ids["eos"], pad_token_id=ids["pad"]), seed=seed)
    if ids["vocab"] > model.config.vocab_size:
        raise ConfigError(f"the tokenizer has {ids['vocab']} tokens but the reasoner only "
                          f"{model.config.vocab_size} embedding rows")
    return model


def _load_vision(model: Any, source: str) -> None:
    """Pretrained SigLIP weights into the tower (extra layers and the pooling head dropped)."""
    from transformers import SiglipVisionModel  # deferred: transformers is slow to import

    pre = from_pretrained(SiglipVisionModel, source)
    tower = model.model.vision_tower
    state = {k: v for k, v in pre.state_dict().items() if not k.startswith(("head.", "vision_model.head."))}
    # transformers versions differ on a "vision_model." prefix; match the tower's keys
    own = set(tower.state_dict())
    if not (set(state) & own):
        state = {k.removeprefix("vision_model."): v for k, v in state.items()}
    state = {k: v for k, v in state.items() if k in own}
    missing = own - set(state)
    if missing:
        raise ConfigError(f"{source}: vision weights missing for {sorted(missing)[:4]}...")
    for k, v in state.items():
        if v.shape != tower.state_dict()[k].shape:
            raise ConfigError(f"{source}: {k} has shape {tuple(v.shape)}, the tower expects "
                              f"{tuple(tower.state_dict()[k].shape)}")
    tower.load_state_dict(state, strict=False)
    log.info("vision tower: %d tensors from %s", len(state), source)


def _load_text(decoder: Any, lm_head: Any, source: str) -> None:
    pre = load_reasoner(source)
    missing, unexpected = decoder.load_state_dict(pre.model.state_dict(), strict=False)
    if missing or unexpected:
        raise ConfigError(f"{source}: decoder weights do not fit the recipe's text size "
                          f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
    if lm_head.weight is not decoder.embed_tokens.weight:
        lm_head.weight.data.copy_(pre.lm_head.weight.data)
    log.info("decoder: weights from %s", source)


def load_module(module: str, source: str | Path):
    if module == "reasoner" and _is_perception_checkpoint(source):
        return reasoner_from_perception(source)
    return (load_perception if module == "perception" else load_reasoner)(source)


def _is_perception_checkpoint(source: str | Path) -> bool:
    cfg = Path(source) / "config.json"
    return cfg.is_file() and json.loads(cfg.read_text()).get("model_type") == "llava"


def reasoner_from_perception(source: str | Path):
    """A Qwen3ForCausalLM holding a perception checkpoint's decoder (and LM head).

    The paper's two modules start from the same pretrained LM (Qwen3). Trained from
    scratch, the only LM that knows the world's language is the perception module's
    decoder, so a reasoner may start from it: the text-only model it contains.
    """
    from transformers import Qwen3ForCausalLM  # deferred: transformers is slow to import

    vlm = load_perception(source)
    cfg = vlm.config.text_config
    model = Qwen3ForCausalLM(cfg)
    missing, unexpected = model.model.load_state_dict(vlm.model.language_model.state_dict(), strict=False)
    if missing or unexpected:
        raise ConfigError(f"{source}: decoder weights do not fit a Qwen3 ({missing[:3]}, {unexpected[:3]})")
    if model.lm_head.weight is not model.model.embed_tokens.weight:
        model.lm_head.weight.data.copy_(vlm.lm_head.weight.data)
    log.info("reasoner: the decoder of %s", source)
    return model.eval()


def initial_model(recipe: Recipe, stage_name: str, tokenizer_dir: Path, seed: int):
    """The model a stage starts from when it has no checkpoint of its own yet."""
    stage = recipe.stage(stage_name)
    module = module_of(stage)
    init = resolve_init(recipe, stage_name)
    if init == "recipe":
        if module == "perception":
            return build_perception_from_recipe(recipe, tokenizer_dir, seed)
        return build_reasoner_from_recipe(recipe, tokenizer_dir, seed)
    return load_module(module, init_source(recipe, stage_name))


# ---------------------------------------------------------------------------------------
# What trains


def part_modules(model: Any, module: str) -> dict[str, list[Any]]:
    if module == "reasoner":
        return {"language": [model]}
    inner = model.model
    return {
        "vision": [inner.vision_tower],
        "projector": [inner.multi_modal_projector],
        "language": [inner.language_model, model.lm_head],
    }


def set_trainable(model: Any, stage: StageConfig) -> dict[str, list[tuple[str, Any]]]:
    """Freeze everything, then unfreeze the stage's parts; returns part -> named params."""
    module = module_of(stage)
    parts = trainable_parts(stage)
    known = part_modules(model, module)
    for p in parts:
        if p not in known:
            raise ConfigError(f"stage kind {stage.kind!r} has no part {p!r} (parts: {', '.join(known)})")
    for p in model.parameters():
        p.requires_grad_(False)
    names = {id(p): n for n, p in model.named_parameters(remove_duplicate=False)}
    out: dict[str, list[tuple[str, Any]]] = {}
    seen: set[int] = set()
    for part in parts:
        out[part] = []
        for mod in known[part]:
            for p in mod.parameters():
                if id(p) in seen:
                    continue
                seen.add(id(p))
                p.requires_grad_(True)
                out[part].append((names[id(p)], p))
    if module == "perception":
        # The features are the last layer's states *before* post_layernorm: it gets no
        # gradient, and DDP refuses parameters that never receive one.
        tower = model.model.vision_tower
        post = getattr(tower, "post_layernorm", None) or getattr(getattr(tower, "vision_model", None),
                                                                 "post_layernorm", None)
        if post is not None:
            frozen = {id(p) for p in post.parameters()}
            for p in post.parameters():
                p.requires_grad_(False)
            for part in out:
                out[part] = [(n, p) for n, p in out[part] if id(p) not in frozen]
    n_train = sum(p.numel() for ps in out.values() for _, p in ps)
    log.info("stage %s trains %s: %.2fM parameters", stage.kind, "+".join(parts), n_train / 1e6)
    if n_train == 0:
        raise ConfigError(f"stage kind {stage.kind!r} with trainable={parts} has nothing to train")
    return out

