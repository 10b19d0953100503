"""Convert the paper's released perception checkpoints into the project's model format.

`markendo/llava-extract-qwen3-0.6B` / `-1.7B` are LLaVA-OneVision-fork checkpoints
(model_type `llava_qwen_3`): a Qwen3 config plus `mm_*` fields, and weights named
`model.vision_tower.vision_tower.vision_model.*` (SigLIP with its last layer already
removed, no pooling head), `model.mm_projector.{0,2}.*` (2-layer GELU MLP),
`model.layers.*`, `model.embed_tokens.*`, `model.norm.*`, `model.image_newline` and
`lm_head.*`. They become a transformers `LlavaForConditionalGeneration` (one 384 px
view, 729 image tokens). The any-resolution layout they were trained with
(`image_aspect_ratio` anyres / anyres_max_N with `spatial_unpad`) is the runtime's job
(`runtime.anyres`): its pinpoints and max tiles are recorded in `conversion.json` and the
learned `image_newline` vector, which ends every row of tiles, is kept beside the weights
as raw float32 (`image_newline.f32`), so `edge export --input-mode anyres` can ship it.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from export.checkpoint import CONVERSION_NOTE, NEWLINE_FILE
from runtime.anyres import parse_max_tiles, parse_pinpoints
from runtime.atomic import atomic_write_bytes, atomic_write_text, staged_dir
from runtime.errors import ConfigError
from runtime.tokenizer import BundleTokenizer
from training.models.builders import perception_config
from training.models.sizes import TextSize, VisionSize

log = logging.getLogger(__name__)

PAPER_MODEL_TYPES = ("llava_qwen_3", "llava_qwen3")
VISION_PREFIX = "model.vision_tower.vision_tower.vision_model."
# Attention heads cannot be read off the weights; known towers by name.
KNOWN_VISION_HEADS = {"siglip-so400m-patch14-384": 16, "siglip-so400m-patch14-224": 16, "siglip-base-patch16": 12}

KEY_MAP = (
    (VISION_PREFIX, "model.vision_tower."),
    ("model.mm_projector.0.", "model.multi_modal_projector.linear_1."),
    ("model.mm_projector.2.", "model.multi_modal_projector.linear_2."),
    ("model.layers.", "model.language_model.layers."),
    ("model.embed_tokens.", "model.language_model.embed_tokens."),
    ("model.norm.", "model.language_model.norm."),
    ("lm_head.", "lm_head."),
)
NEWLINE_KEY = "model.image_newline"  # kept apart: the runtime appends it (anyres), not the model
DROPPED = (NEWLINE_KEY,)
PAPER_SYSTEM_PROMPT = "You are a helpful assistant."


def is_paper_checkpoint(folder: str | Path) -> bool:
    cfg = Path(folder) / "config.json"
    try:
        return json.loads(cfg.read_text()).get("model_type") in PAPER_MODEL_TYPES
    except (OSError, ValueError):
        return False


def map_key(key: str) -> str | None:
    """Paper-layout key -> project key; None for keys that are dropped on purpose."""
    if key in DROPPED or key.endswith(".inv_freq"):
        return None
    for old, new in KEY_MAP:
        if key.startswith(old):
            return new + key[len(old):]
    raise ConfigError(f"unexpected weight {key!r}: not a LLaVA-OneVision Qwen3 checkpoint")


def read_paper_weights(folder: Path) -> dict[str, Any]:
    """All tensors of a paper checkpoint (safetensors only; .bin is refused)."""
    from safetensors.torch import load_file  # imports torch: heavy, local

    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise ConfigError(f"{folder}: no .safetensors weights (pickled checkpoints are refused)")
    state: dict[str, Any] = {}
    for f in files:
        try:
            state.update(load_file(str(f)))
        except Exception as exc:  # safetensors raises its own error types
            raise ConfigError(f"{f}: unreadable safetensors file ({exc})") from None
    return state


def _vision_size(state: dict[str, Any], cfg: dict[str, Any], heads: int | None) -> VisionSize:
    layer_ids = {int(m.group(1)) for k in state if (m := re.match(re.escape(VISION_PREFIX) + r"encoder\.layers\.(\d+)\.", k))}
    if not layer_ids:
        raise ConfigError("checkpoint has no vision tower weights")
    patch_w = state[VISION_PREFIX + "embeddings.patch_embedding.weight"]
    positions = state[VISION_PREFIX + "embeddings.position_embedding.weight"].shape[0]
    hidden, patch = patch_w.shape[0], patch_w.shape[2]
    side = round(positions ** 0.5)
    if side * side != positions:
        raise ConfigError(f"vision position table has {positions} rows, not a square grid")
    if heads is None:
        name = str(cfg.get("mm_vision_tower", ""))
        heads = next((h for k, h in KNOWN_VISION_HEADS.items() if k in name), None)
        if heads is None:
            raise ConfigError(f"unknown vision tower {name!r}: pass the number of attention heads (--vision-heads)")
    inter = state[VISION_PREFIX + "encoder.layers.0.mlp.fc1.weight"].shape[0]
    return VisionSize(hidden, inter, max(layer_ids) + 1, heads, side * patch, patch)


def _text_size(cfg: dict[str, Any]) -> TextSize:
    try:
        rope = cfg.get("rope_parameters") or {}
        return TextSize(
            hidden_size=cfg["hidden_size"],
            intermediate_size=cfg["intermediate_size"],
            num_hidden_layers=cfg["num_hidden_layers"],
            num_attention_heads=cfg["num_attention_heads"],
            num_key_value_heads=cfg["num_key_value_heads"],
            head_dim=cfg.get("head_dim") or cfg["hidden_size"] // cfg["num_attention_heads"],
            vocab_size=cfg["vocab_size"],
            max_position_embeddings=cfg.get("max_position_embeddings", 40_960),
            rope_theta=float(rope.get("rope_theta", cfg.get("rope_theta", 1_000_000.0))),
            rms_norm_eps=float(cfg.get("rms_norm_eps", 1e-6)),
            tie_word_embeddings=bool(cfg.get("tie_word_embeddings", False)),
        )
    except KeyError as exc:
        raise ConfigError(f"paper config.json lacks {exc.args[0]}") from None


def _paper_config(src: Path) -> dict[str, Any]:
    if not (src / "config.json").is_file():
        raise ConfigError(f"{src}: no config.json")
    cfg = json.loads((src / "config.json").read_text())
    if cfg.get("model_type") not in PAPER_MODEL_TYPES:
        raise ConfigError(f"{src}: model_type {cfg.get('model_type')!r} is not a paper checkpoint "
                          f"({', '.join(PAPER_MODEL_TYPES)})")
    proj = cfg.get("mm_projector_type", "mlp2x_gelu")
    if proj != "mlp2x_gelu":
        raise ConfigError(f"{src}: projector {proj!r} is not supported (mlp2x_gelu only)")
    return cfg


def anyres_layout(cfg: dict[str, Any], tile: int) -> tuple[dict[str, Any] | None, str]:
    """The checkpoint's any-resolution layout for `conversion.json` (or None) and why.

    A layout the runtime cannot reproduce (no pinpoints, a merge other than spatial_unpad)
    is not an error: the model still converts for single-view use, and the note says why
    `edge export --input-mode anyres` will refuse it."""
    aspect = str(cfg.get("image_aspect_ratio") or "")
    if "anyres" not in aspect:
        return None, f"image_aspect_ratio {aspect or 'unset'!r} is not an any-resolution mode"
    merge = str(cfg.get("mm_patch_merge_type") or "flat")
    if "unpad" not in merge:
        return None, f"mm_patch_merge_type {merge!r} is not supported for {aspect} (spatial_unpad only)"
    if cfg.get("image_grid_pinpoints") in (None, "", []):
        return None, f"image_aspect_ratio {aspect!r} but the config has no image_grid_pinpoints"
    try:
        max_tiles = parse_max_tiles(aspect)
        pinpoints = parse_pinpoints(cfg["image_grid_pinpoints"], tile)
    except (ValueError, SyntaxError) as exc:
        return None, f"config.json: {exc}"
    layout = {"image_aspect_ratio": aspect, "mm_patch_merge_type": merge, "tile": tile,
              "pinpoints": [list(p) for p in pinpoints], "max_tiles": max_tiles, "newline": NEWLINE_FILE}
    return layout, f"{aspect} with {merge}"


def _tokenizer(src: Path, tokenizer: str | Path | None) -> tuple[Path, BundleTokenizer]:
    tok_dir = Path(tokenizer) if tokenizer else src
    tok_json = tok_dir / "tokenizer.json" if tok_dir.is_dir() else tok_dir
    if not tok_json.is_file():
        raise ConfigError(f"no tokenizer.json in {tok_dir} (pass --tokenizer with Qwen3's tokenizer)")
    tok = BundleTokenizer(tok_json)
    if tok.token_id("<|image_pad|>") is None:
        raise ConfigError(f"{tok_json}: tokenizer has no <|image_pad|> token")
    return tok_json, tok


def _build_model(config: Any, mapped: dict[str, Any], tied: bool) -> Any:
    """A LlavaForConditionalGeneration holding `mapped` (checked name by name, shape by shape)."""
    import torch  # heavy: only conversion needs it
    from transformers import LlavaForConditionalGeneration

    with torch.device("meta"):
        model = LlavaForConditionalGeneration(config)
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    expected = set(shapes)
    missing = sorted(expected - set(mapped))
    if tied and "lm_head.weight" in missing:
        missing.remove("lm_head.weight")
    unexpected = sorted(set(mapped) - expected)
    # The paper tower keeps SigLIP's post-layernorm weights although features are taken
    # before it; our model has the same (unused) module, so nothing is lost either way.
    if missing or unexpected:
        raise ConfigError(f"weights do not match the architecture: missing {missing[:4]}, unexpected {unexpected[:4]}")
    for k, v in mapped.items():
        if tuple(v.shape) != shapes[k]:
            raise ConfigError(f"{k}: shape {tuple(v.shape)} in the checkpoint, {shapes[k]} expected")
    # Only persistent weights are assigned; meta-device buffers (rotary tables, position
    # ids) are never saved and are rebuilt when the converted folder is loaded.
    model.load_state_dict(mapped, strict=False, assign=True)
    if tied:
        model.tie_weights()
    model.config.dtype = next(iter(mapped.values())).dtype
    return model


def convert_llava_ov(
    src: str | Path,
    out: str | Path,
    *,
    tokenizer: str | Path | None = None,
    vision_heads: int | None = None,
    overwrite: bool = False,
    progress: Callable[[str, float], None] | None = None,
) -> Path:
    """Write a project-format perception checkpoint (safetensors + tokenizer) to `out`."""
    progress = progress or (lambda s, f: None)
    src, out = Path(src), Path(out).resolve()
    cfg = _paper_config(src)
    if out.exists() and not overwrite:
        raise ConfigError(f"{out} already exists (use --force to replace it)")
    tok_json, tok = _tokenizer(src, tokenizer)

    progress("read weights", 0.0)
    state = read_paper_weights(src)
    vision = _vision_size(state, cfg, vision_heads)
    text = _text_size(cfg)
    config = perception_config(vision, text, image_token_id=tok.token_id("<|image_pad|>"),
                               eos_token_id=tok.token_id("<|im_end|>"), pad_token_id=tok.token_id("<|endoftext|>"))
    mapped, dropped = {}, []
    for key, value in state.items():
        new = map_key(key)
        if new is None:
            dropped.append(key)
        else:
            mapped[new] = value
    layout, why = anyres_layout(cfg, vision.image_size)
    newline = state.get(NEWLINE_KEY)
    if layout is not None:
        if newline is None or tuple(newline.shape) != (text.hidden_size,):
            got = None if newline is None else tuple(newline.shape)
            raise ConfigError(f"{NEWLINE_KEY}: shape {got}, expected ({text.hidden_size},) for {why}")
        newline_bytes = newline.float().contiguous().numpy().astype("<f4").tobytes()
    progress("build model", 0.4)
    model = _build_model(config, mapped, text.tie_word_embeddings)

    progress("save", 0.7)
    with staged_dir(out, marker=CONVERSION_NOTE) as tmp:  # --force replaces only a conversion
        model.save_pretrained(tmp)
        shutil.copyfile(tok_json, tmp / "tokenizer.json")
        if (tok_json.parent / "tokenizer_config.json").is_file():
            shutil.copyfile(tok_json.parent / "tokenizer_config.json", tmp / "tokenizer_config.json")
        if layout is not None:
            atomic_write_bytes(tmp / NEWLINE_FILE, newline_bytes)
        note = {
            "converted_from": str(src),
            "source_model_type": cfg.get("model_type"),
            "mode": "anyres" if layout is not None else "single-view",
            "tokens_per_image": vision.tokens_per_image,
            "vision_layers": vision.num_hidden_layers,
            "dropped_weights": [k for k in dropped if not (layout is not None and k == NEWLINE_KEY)],
            "why_dropped": "not part of the single-view model",
            "image_layout": layout,
            "image_layout_why": why,
            # LLaVA-OneVision's qwen_1_5 conversation template, which the paper's models saw.
            "system_prompt": PAPER_SYSTEM_PROMPT,
        }
        atomic_write_text(tmp / CONVERSION_NOTE, json.dumps(note, indent=2) + "\n")
    progress("done", 1.0)
    log.info("converted %s -> %s (%d vision layers, %d image tokens)", src, out,
             vision.num_hidden_layers, vision.tokens_per_image)
    return out
