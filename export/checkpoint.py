"""What the exporters and the parity check read from a source checkpoint folder, once.

The bundle writer and `export.verify` both hash the checkpoint, load it the same way (the
perception tower cut at its feature layer) and read its image preprocessing; both import
this module, so neither imports the other.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from pathlib import Path
from typing import Any

from runtime.bundle import sha256_file
from runtime.errors import ConfigError
from runtime.image import SIGLIP_MEAN, SIGLIP_STD
from runtime.image_pool import POOL_STRIDES
from runtime.manifest import ImageLayout, ImagePreprocess, TextShape, VisionShape
from training.models.anyres import CONFIG_KEY as TRAINED_LAYOUT_KEY
from training.models.anyres import NEWLINE_FILE  # the image_newline, raw float32 (re-exported)
from training.models.loading import load_perception, load_reasoner

log = logging.getLogger(__name__)

PREPROCESSOR_CONFIG = "preprocessor_config.json"
CONVERSION_NOTE = "conversion.json"  # written by export.convert_llava_ov
BUNDLE_NEWLINE = "perception-image-newline-f32.bin"
# PIL resample ids in HF image processors -> the manifest's names
_RESAMPLE = {2: "bilinear", 3: "bicubic"}


def checkpoint_sha256(folder: Path) -> str:
    """One hash over the config and every safetensors file of a checkpoint folder."""
    folder = Path(folder)
    h = hashlib.sha256()
    extra = [folder / NEWLINE_FILE] if (folder / NEWLINE_FILE).is_file() else []
    for p in sorted([folder / "config.json", *folder.glob("*.safetensors"), *extra]):
        h.update(p.name.encode())
        h.update(sha256_file(p).encode())
    return h.hexdigest()


def normalize_feature_layer(model: Any) -> None:
    """Make the feature layer the last kept layer, dropping layers that never run.

    LLaVA picks image features from `vision_feature_layer` (e.g. -2); the exported graphs
    and llama.cpp's mmproj run the tower to its end, so trailing layers are removed here.
    """
    cfg = model.config
    layer = cfg.vision_feature_layer
    if not isinstance(layer, int):
        raise ConfigError("multi-layer vision features are not supported by the exporters")
    if cfg.vision_feature_select_strategy != "full":
        raise ConfigError("only vision_feature_select_strategy='full' (SigLIP, no CLS) is supported")
    n = cfg.vision_config.num_hidden_layers
    keep = n + 1 + layer if layer < 0 else layer
    if not 1 <= keep <= n:
        raise ConfigError(f"vision_feature_layer {layer} is out of range for {n} layers")
    if keep < n:
        tower = model.model.vision_tower
        tower.encoder.layers = tower.encoder.layers[:keep]
        cfg.vision_config.num_hidden_layers = keep
        log.info("vision tower: keeping %d of %d layers (feature layer %d)", keep, n, layer)
    cfg.vision_feature_layer = -1


def load_for_export(role: str, folder: Path) -> Any:
    """The float32 eval-mode model of `role` in `folder`, as every exporter sees it."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ConfigError(f"--{role}: {folder} is not a folder")
    if not (folder / "tokenizer.json").is_file():
        raise ConfigError(f"--{role}: {folder} has no tokenizer.json")
    model = (load_perception if role == "perception" else load_reasoner)(folder).float().eval()
    if role == "perception":
        normalize_feature_layer(model)
    return model


def _triple(data: dict, key: str, default: tuple[float, float, float], where: Path) -> tuple[float, ...]:
    value = data.get(key, default)
    try:
        out = tuple(float(x) for x in value)
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: {key} must be 3 numbers, got {value!r}") from None
    if len(out) != 3 or not all(math.isfinite(x) for x in out):
        raise ConfigError(f"{where}: {key} must be 3 finite numbers, got {value!r}")
    return out


def image_preprocess(folder: Path | None, image_size: int) -> ImagePreprocess:
    """The checkpoint's image preprocessing: preprocessor_config.json, else SigLIP's.

    The one reader of that file: the manifest's `image` entry, the GGUF mmproj's mean/std
    and the parity checks' pixels all come from here, so they cannot disagree.
    """
    pp = Path(folder) / PREPROCESSOR_CONFIG if folder is not None else None
    if pp is None or not pp.is_file():
        return ImagePreprocess(size=int(image_size), mean=SIGLIP_MEAN, std=SIGLIP_STD)
    data = _json_object(pp)
    mean = _triple(data, "image_mean", SIGLIP_MEAN, pp)
    std = _triple(data, "image_std", SIGLIP_STD, pp)
    if min(std) <= 0:
        raise ConfigError(f"{pp}: image_std must be > 0, got {list(std)}")
    resample = data.get("resample", 3)
    if resample not in _RESAMPLE:
        raise ConfigError(f"{pp}: resample {resample!r} is not supported (2 bilinear, 3 bicubic)")
    return ImagePreprocess(size=int(image_size), mean=mean, std=std, resample=_RESAMPLE[resample])


def system_prompt(folder: Path) -> str | None:
    """Converted paper checkpoints record the system prompt their training used."""
    prompt = _conversion_note(folder).get("system_prompt")
    if prompt is not None and not isinstance(prompt, str):
        raise ConfigError(f"{Path(folder) / CONVERSION_NOTE}: system_prompt must be a string")
    return prompt


def _conversion_note(folder: Path) -> dict[str, Any]:
    note = Path(folder) / CONVERSION_NOTE
    return _json_object(note) if note.is_file() else {}


def _json_object(path: Path) -> dict[str, Any]:
    """A checkpoint's JSON file (preprocessor config, conversion note): an object, or ConfigError."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ConfigError(f"{path}: unreadable ({exc})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a JSON object")
    return data


def _trained_layout(folder: Path) -> dict[str, Any] | None:
    """The any-resolution layout a model trained with `input_mode: anyres` records in its
    config.json (training.models.anyres), in conversion.json's schema; None otherwise."""
    try:
        lay = json.loads((Path(folder) / "config.json").read_text(encoding="utf-8")).get(TRAINED_LAYOUT_KEY)
    except (OSError, UnicodeDecodeError, ValueError, AttributeError) as exc:
        raise ConfigError(f"{folder / 'config.json'}: unreadable ({exc})") from None
    if lay is not None and not isinstance(lay, dict):
        raise ConfigError(f"{folder / 'config.json'}: {TRAINED_LAYOUT_KEY} is malformed")
    return lay


def image_layout(folder: Path, *, tile: int, hidden: int, input_mode: str | None = None,
                 pool: int = 1) -> tuple[ImageLayout, Path | None]:
    """The perception model's image layout for the manifest, and the newline file to ship.

    A converted paper checkpoint records its any-resolution layout (pinpoints, max tiles)
    and keeps its `image_newline`; so does a model trained with `input_mode: anyres`
    (in config.json, the newline beside the weights). Both go into every bundle made from
    it, so the runtime can run either mode; `input_mode` is the bundle's default (None:
    the mode the model was trained with: anyres for a model trained so, else single).
    `pool` is the LLaVA-OV pooling stride (1, 2, 3).
    """
    if pool not in POOL_STRIDES:
        raise ConfigError(f"pooling stride {pool} is not one of {', '.join(map(str, POOL_STRIDES))}")
    if input_mode not in (None, "single", "anyres"):
        raise ConfigError(f"input mode must be single or anyres, not {input_mode!r}")
    note = _conversion_note(folder)
    lay = note.get("image_layout") or _trained_layout(folder)
    if input_mode is None:
        input_mode = str(lay.get("input_mode", "single")) if lay else "single"
    if not lay:
        if input_mode == "anyres":
            why = note.get("image_layout_why") or "not a converted paper checkpoint nor trained with anyres"
            raise ConfigError(f"{folder}: no any-resolution layout to export ({why})")
        return ImageLayout(input_mode="single", pool=pool), None
    src = Path(folder) / str(lay.get("newline", NEWLINE_FILE))
    if not src.is_file() or src.stat().st_size != hidden * 4:
        raise ConfigError(f"{src}: missing or not {hidden} float32 values (re-run edge export convert)")
    try:
        pinpoints = tuple((int(w), int(h)) for w, h in lay["pinpoints"])
        max_tiles = None if lay.get("max_tiles") is None else int(lay["max_tiles"])
    except (KeyError, TypeError, ValueError):
        raise ConfigError(f"{folder / CONVERSION_NOTE}: image_layout is malformed") from None
    if int(lay.get("tile", tile)) != tile:
        raise ConfigError(f"{folder / CONVERSION_NOTE}: image_layout tile {lay.get('tile')} is not the tower's {tile}")
    return ImageLayout(input_mode=input_mode, pool=pool, pinpoints=pinpoints, max_tiles=max_tiles,
                       newline=BUNDLE_NEWLINE), src


def text_shape(cfg: Any) -> TextShape:
    rope = getattr(cfg, "rope_parameters", None) or {}
    theta = rope.get("rope_theta", getattr(cfg, "rope_theta", None))
    if theta is None:
        raise ConfigError("text config has no rope_theta")
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    return TextShape(
        hidden_size=cfg.hidden_size,
        num_layers=cfg.num_hidden_layers,
        num_heads=cfg.num_attention_heads,
        num_kv_heads=cfg.num_key_value_heads,
        head_dim=head_dim,
        intermediate_size=cfg.intermediate_size,
        vocab_size=cfg.vocab_size,
        context_length=cfg.max_position_embeddings,
        rope_theta=float(theta),
        rms_norm_eps=float(cfg.rms_norm_eps),
        tie_word_embeddings=bool(cfg.tie_word_embeddings),
    )


def vision_shape(v: Any) -> VisionShape:
    """From a SigLIP vision config (or any object with its field names)."""
    n = (v.image_size // v.patch_size) ** 2
    return VisionShape(
        image_size=v.image_size,
        patch_size=v.patch_size,
        hidden_size=v.hidden_size,
        num_layers=v.num_hidden_layers,
        num_heads=v.num_attention_heads,
        intermediate_size=v.intermediate_size,
        tokens_per_image=n,
    )
