"""What every ONNX export step shares: accepted inputs, model parts, atomic writing."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import onnx

from runtime.errors import ConfigError, EdgeError
from runtime.manifest import ONNX_QUANTS, canonical_quant
from runtime.progress import Progress

log = logging.getLogger(__name__)

ROLES = ("perception", "reasoner")

# A protobuf cannot exceed 2 GiB; stay clear of the limit (graph structure, rounding).
EXTERNAL_DATA_THRESHOLD = 1_800_000_000


def check_quant(quant: str) -> str:
    """The canonical name of an ONNX quant ("f32" is accepted for "fp32"), or a ConfigError."""
    name = canonical_quant("onnx", quant)
    if name is None:
        choices = ", ".join(ONNX_QUANTS)
        raise ConfigError(f"unsupported ONNX quantization {quant!r} (choose from {choices})")
    return name


@dataclass(frozen=True)
class ModelParts:
    """The modules each graph is exported from, found and checked once."""

    language_model: Any  # Qwen3Model (takes inputs_embeds)
    lm_head: Any
    embed_tokens: Any
    text_config: Any
    vision_tower: Any = None  # SiglipVisionModel
    projector: Any = None  # LlavaMultiModalProjector
    vision_config: Any = None
    feature_layers: int = 0  # encoder layers run to reach the feature layer


def model_parts(model: Any, role: str) -> ModelParts:
    """Pick the parts for `role`, refusing anything that is not (LLaVA-)Qwen3 in float32."""
    import torch  # heavy: exporting needs it, importing this module must not
    from transformers import LlavaForConditionalGeneration, Qwen3ForCausalLM

    if role not in ROLES:
        raise ConfigError(f"unknown model role {role!r} (choose from {', '.join(ROLES)})")
    if role == "reasoner":
        if not isinstance(model, Qwen3ForCausalLM):
            got = type(model).__name__
            raise ConfigError(f"the reasoner must be a Qwen3ForCausalLM, got {got}")
        parts = ModelParts(model.model, model.lm_head, model.model.embed_tokens, model.config)
    else:
        if not isinstance(model, LlavaForConditionalGeneration):
            raise ConfigError(
                "the perception model must be a LlavaForConditionalGeneration, "
                f"got {type(model).__name__}"
            )
        cfg = model.config
        if cfg.text_config.model_type != "qwen3":
            got = cfg.text_config.model_type
            raise ConfigError(f"the perception text model is {got!r}, not qwen3")
        vcfg = cfg.vision_config
        if vcfg.model_type not in ("siglip_vision_model", "siglip"):
            raise ConfigError(f"the perception vision tower is {vcfg.model_type!r}, not SigLIP")
        if not isinstance(cfg.vision_feature_layer, int):
            raise ConfigError("only a single vision_feature_layer is supported")
        if cfg.vision_feature_select_strategy != "full":
            raise ConfigError(
                f"vision_feature_select_strategy {cfg.vision_feature_select_strategy!r} is not "
                "supported (SigLIP has no CLS token: use 'full')"
            )
        n_layers = vcfg.num_hidden_layers
        layer = cfg.vision_feature_layer
        # hidden_states[k] is the output after k encoder layers (index 0 = embeddings).
        depth = layer if layer >= 0 else n_layers + 1 + layer
        if not 1 <= depth <= n_layers:
            raise ConfigError(f"vision_feature_layer {layer} is outside the {n_layers}-layer tower")
        inner = model.model
        parts = ModelParts(
            inner.language_model, model.lm_head, inner.language_model.embed_tokens, cfg.text_config,
            inner.vision_tower, inner.multi_modal_projector, vcfg, depth,
        )
    if parts.text_config.model_type != "qwen3":
        raise ConfigError(f"model_type {parts.text_config.model_type!r} is not qwen3")
    dtypes = {p.dtype for p in model.parameters()}
    if dtypes != {torch.float32}:
        raise ConfigError(f"export expects a float32 model, got {sorted(str(d) for d in dtypes)}")
    return parts


@contextlib.contextmanager
def staging_dir(out_dir: Path, role: str) -> Iterator[Path]:
    """A scratch folder inside `out_dir` (same filesystem, so moves are renames),
    removed whatever happens: an interrupted export leaves no finished-looking file."""
    tmp = Path(tempfile.mkdtemp(prefix=f".onnx-{role}-", dir=out_dir))
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def publish(staged: Path, out_dir: Path) -> list[str]:
    """Move a staged .onnx (and its external-data file, first) into `out_dir`.

    Returns the file names placed in `out_dir`, the .onnx first.
    """
    data = external_data_files(staged)
    for name in [*data, staged.name]:
        # Some writers (the 4-bit quantizer's external data) create files 0600.
        os.chmod(staged.parent / name, 0o644)
    for name in data:
        os.replace(staged.parent / name, out_dir / name)
    os.replace(staged, out_dir / staged.name)
    return [staged.name, *data]


def external_data_files(path: Path) -> list[str]:
    """Names of the external-data files an .onnx refers to (usually none)."""
    model = onnx.load(str(path), load_external_data=False)
    names: set[str] = set()

    def visit(graph: Any) -> None:
        for tensor in graph.initializer:
            if onnx.external_data_helper.uses_external_data(tensor):
                names.update(e.value for e in tensor.external_data if e.key == "location")
        for node in graph.node:
            for attr in node.attribute:
                for sub in [attr.g, *attr.graphs] if attr.HasField("g") else attr.graphs:
                    visit(sub)

    visit(model.graph)
    return sorted(names)


def save_program(program: Any, path: Path) -> None:
    """Save a torch.onnx program; weights go to `<name>.data` only above ~2 GB."""
    size = sum(v.const_value.nbytes for v in program.model.graph.initializers.values()
               if v.const_value is not None)
    external = size > EXTERNAL_DATA_THRESHOLD
    program.save(str(path), external_data=external)
    log.info("wrote %s (%.1f MB of weights%s)", path.name, size / 1e6,
             ", external data" if external else "")


def check_file(path: Path) -> None:
    """The cheap structural check before a file is published."""
    try:
        onnx.checker.check_model(str(path))
    except Exception as exc:  # onnx raises ValidationError and friends
        raise EdgeError(f"{path.name}: exported graph failed the ONNX checker ({exc})") from exc


@contextlib.contextmanager
def quiet_exporter() -> Iterator[None]:
    """Keep torch.onnx's per-initializer INFO lines and noise warnings out of our logs."""
    quiet = {
        "onnx_ir": logging.WARNING, "onnxscript": logging.WARNING, "torch.onnx": logging.WARNING,
        # "torchvision is not installed" four times per export: irrelevant here.
        "torch.onnx._internal.exporter._registration": logging.ERROR,
    }
    loggers = [logging.getLogger(n) for n in quiet]
    levels = [lg.level for lg in loggers]
    for lg, floor in zip(loggers, quiet.values(), strict=True):
        lg.setLevel(max(lg.getEffectiveLevel(), floor))
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*axis name.*", category=UserWarning)
            warnings.filterwarnings("ignore", category=FutureWarning)
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def report(progress: Progress | None, stage: str, fraction: float) -> None:
    log.info("onnx export: %s (%.0f%%)", stage, fraction * 100)
    if progress is not None:
        progress(stage, fraction)
