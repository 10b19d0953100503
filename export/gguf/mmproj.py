"""SigLIP vision tower + 2-layer GELU MLP projector -> a llama.cpp `clip` mmproj GGUF.

What llama.cpp's clip/mtmd code does with such a file, and why each key is set:
- projector_type "mlp" selects the LLaVA graph: ViT layers, then mm.0 -> GELU -> mm.2;
- that graph stops one layer early by default (LLaVA-1.5 used the penultimate layer), so
  `clip.vision.feature_layer` = [depth] and exactly `depth` blocks are written: the
  features are the output of the last written layer, as HF's `vision_feature_layer`
  selects them (the unused deeper layers are left out of the file);
- `v.post_ln` is left out: llama.cpp would apply it to the selected layer, HF does not;
- `clip.use_gelu` true selects tanh-GELU in the ViT MLP (SigLIP's gelu_pytorch_tanh)
  instead of the quick-GELU default;
- integers are UINT32 (clip reads them as such), mean/std are float lists; the runtime
  resizes images itself, so mtmd receives exactly image_size x image_size pixels and only
  normalises them with this mean/std.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from export.gguf.quantize import QuantSpec, choose_type
from export.gguf.writer import Progress, TensorPlan, write_gguf_file
from runtime.errors import ConfigError
from runtime.gguf_constants import CLIP_ARCH, MLP_PROJECTOR, Keys
from runtime.image import SIGLIP_MEAN, SIGLIP_STD

log = logging.getLogger(__name__)


# What llama.cpp's clip loader takes for the mmproj that is worth offering: Q4_0 also
# loads, but is ~22% off F16 on a random so400m tower (docs/gguf.md).
MMPROJ_QUANTS = ("f32", "f16", "q8_0")

# HF activation names that llama.cpp's GELU (tanh approximation) reproduces; exact-erf
# "gelu" differs from it by < 1e-3 and is accepted for the projector (LLaVA's choice).
_TANH_GELU = ("gelu_pytorch_tanh", "gelu_new", "gelu_fast")
_PROJECTOR_GELU = ("gelu",) + _TANH_GELU


@dataclass(frozen=True)
class VisionParts:
    vision_config: Any
    tower: Any  # SiglipVisionTransformer (embeddings, encoder.layers)
    projector: Any  # LlavaMultiModalProjector (linear_1, act, linear_2)
    depth: int  # encoder layers the features come from
    text_hidden: int


def feature_depth(vision_feature_layer: Any, n_layers: int) -> int:
    """How many encoder layers HF runs for `vision_feature_layer` (hidden_states index)."""
    if not isinstance(vision_feature_layer, int):
        raise ConfigError(
            f"vision_feature_layer={vision_feature_layer!r}: only a single feature layer is supported"
        )
    depth = vision_feature_layer if vision_feature_layer >= 0 else n_layers + 1 + vision_feature_layer
    if not 1 <= depth <= n_layers:
        raise ConfigError(f"vision_feature_layer={vision_feature_layer} selects no encoder layer")
    return depth


def vision_parts(model: Any) -> VisionParts:
    cfg = getattr(model, "config", None)
    if getattr(cfg, "model_type", None) != "llava":
        raise ConfigError(
            f"the perception model must be LLaVA-style (SigLIP + MLP + Qwen3), got "
            f"{getattr(cfg, 'model_type', None)!r}"
        )
    vcfg = cfg.vision_config
    if vcfg.model_type not in ("siglip_vision_model", "siglip"):
        raise ConfigError(f"vision tower {vcfg.model_type!r} is not SigLIP")
    if getattr(cfg, "vision_feature_select_strategy", "full") != "full":
        raise ConfigError(
            "vision_feature_select_strategy must be 'full' (SigLIP has no CLS token; llama.cpp "
            "keeps every patch)"
        )
    if vcfg.hidden_act not in _TANH_GELU:
        raise ConfigError(f"unsupported vision activation {vcfg.hidden_act!r} (llama.cpp: tanh GELU)")
    if getattr(cfg, "projector_hidden_act", "gelu") not in _PROJECTOR_GELU:
        raise ConfigError(f"unsupported projector activation {cfg.projector_hidden_act!r}")
    if vcfg.image_size < vcfg.patch_size:
        raise ConfigError(f"image_size {vcfg.image_size} is smaller than patch_size {vcfg.patch_size}")
    # image_size need not be a multiple of patch_size: SigLIP-so400m is 384 px with 14 px
    # patches; both HF's strided conv and clip use the floor (27 x 27), dropping 6 pixels.
    if vcfg.intermediate_size == vcfg.hidden_size:
        # clip.cpp swaps ffn_up/ffn_down when ffn_down's rows equal the hidden size (a
        # legacy-file fix), which would silently compute the wrong MLP.
        raise ConfigError("vision intermediate_size == hidden_size is not loadable by llama.cpp")
    if getattr(vcfg, "num_channels", 3) != 3:
        raise ConfigError("only RGB vision towers are supported")
    tower = model.model.vision_tower
    tower = getattr(tower, "vision_model", tower)
    depth = feature_depth(getattr(cfg, "vision_feature_layer", -1), len(tower.encoder.layers))
    projector = model.model.multi_modal_projector
    for name in ("linear_1", "linear_2"):
        if not hasattr(projector, name):
            raise ConfigError(f"the projector has no {name}: only the 2-layer MLP projector is supported")
    return VisionParts(vcfg, tower, projector, depth, int(cfg.text_config.hidden_size))


def _np(param: Any):
    return param.detach().to("cpu").float().contiguous().numpy()


def _zeros(n: int) -> np.ndarray:
    return np.zeros((n,), dtype=np.float32)


def mmproj_type(spec: QuantSpec, name: str, shape: tuple[int, ...]) -> str:
    """The ggml type of one mmproj tensor: `choose_type`'s (1-D F32; rows that are not a
    multiple of the block F16, e.g. so400m's ffn_down of 4304) and, for a quantized
    mmproj, F16 for the conv patch embedding and the position embeddings (added, not
    multiplied, and small: quantizing them saves nothing)."""
    if spec.weight_type not in ("F32", "F16") and len(shape) >= 2 and (
            len(shape) != 2 or name == "v.position_embd.weight"):
        return "F16"
    return choose_type(spec, name, shape, embed_like=False)


def plan_mmproj_tensors(parts: VisionParts, spec: QuantSpec) -> list[TensorPlan]:
    plans: list[TensorPlan] = []

    def add(name: str, param: Any) -> None:
        shape = tuple(int(s) for s in param.shape)
        plans.append(TensorPlan(name, shape, mmproj_type(spec, name, shape), lambda p=param: _np(p)))

    def add_bias(name: str, linear: Any) -> None:
        if linear.bias is not None:
            add(name, linear.bias)
        else:  # the llava graph always adds the bias: a zero bias is the same function
            n = int(linear.weight.shape[0])
            plans.append(TensorPlan(name, (n,), "F32", lambda n=n: _zeros(n)))

    emb = parts.tower.embeddings
    add("v.patch_embd.weight", emb.patch_embedding.weight)
    add_bias("v.patch_embd.bias", emb.patch_embedding)
    add("v.position_embd.weight", emb.position_embedding.weight)
    for i, layer in enumerate(parts.tower.encoder.layers[: parts.depth]):
        att, mlp = layer.self_attn, layer.mlp
        for short, lin in (("attn_q", att.q_proj), ("attn_k", att.k_proj),
                           ("attn_v", att.v_proj), ("attn_out", att.out_proj),
                           ("ffn_up", mlp.fc1), ("ffn_down", mlp.fc2)):
            add(f"v.blk.{i}.{short}.weight", lin.weight)
            add_bias(f"v.blk.{i}.{short}.bias", lin)
        add(f"v.blk.{i}.ln1.weight", layer.layer_norm1.weight)
        add(f"v.blk.{i}.ln1.bias", layer.layer_norm1.bias)
        add(f"v.blk.{i}.ln2.weight", layer.layer_norm2.weight)
        add(f"v.blk.{i}.ln2.bias", layer.layer_norm2.bias)
    add("mm.0.weight", parts.projector.linear_1.weight)
    add_bias("mm.0.bias", parts.projector.linear_1)
    add("mm.2.weight", parts.projector.linear_2.weight)
    add_bias("mm.2.bias", parts.projector.linear_2)
    return plans


def write_mmproj_parts(
    parts: VisionParts,
    path: Path,
    spec: QuantSpec,
    *,
    name: str,
    mean: tuple[float, float, float] = SIGLIP_MEAN,
    std: tuple[float, float, float] = SIGLIP_STD,
    plans: list[TensorPlan] | None = None,
    progress: Progress | None = None,
) -> Path:
    """Write an mmproj (spec: `MMPROJ_QUANTS`) from its shapes (`parts.vision_config`, depth,
    text width) and the planned tensors: by default the torch model's (`vision_parts(model)`),
    else given (random ones: export.gguf.random_weights; a requantized file's)."""
    v = parts.vision_config
    if spec.name not in MMPROJ_QUANTS:
        raise ConfigError(f"the mmproj is written in {', '.join(MMPROJ_QUANTS)}, not {spec.name}")

    def metadata(w) -> None:
        w.add_name(name)
        w.add_file_type(spec.file_type)
        w.add_bool(Keys.Clip.HAS_VISION_ENCODER, True)
        w.add_bool(Keys.Clip.HAS_LLAVA_PROJECTOR, True)
        w.add_string(Keys.Clip.PROJECTOR_TYPE, MLP_PROJECTOR)
        w.add_bool(Keys.ClipVision.USE_GELU, True)
        w.add_uint32(Keys.ClipVision.IMAGE_SIZE, int(v.image_size))
        w.add_uint32(Keys.ClipVision.PATCH_SIZE, int(v.patch_size))
        w.add_uint32(Keys.ClipVision.EMBEDDING_LENGTH, int(v.hidden_size))
        w.add_uint32(Keys.ClipVision.FEED_FORWARD_LENGTH, int(v.intermediate_size))
        w.add_uint32(Keys.ClipVision.BLOCK_COUNT, parts.depth)
        w.add_uint32(Keys.ClipVision.Attention.HEAD_COUNT, int(v.num_attention_heads))
        w.add_float32(Keys.ClipVision.Attention.LAYERNORM_EPS, float(v.layer_norm_eps))
        w.add_uint32(Keys.ClipVision.PROJECTION_DIM, parts.text_hidden)
        w.add_array(Keys.ClipVision.IMAGE_MEAN, [float(x) for x in mean])
        w.add_array(Keys.ClipVision.IMAGE_STD, [float(x) for x in std])
        w.add_array(Keys.ClipVision.FEATURE_LAYER, [parts.depth])

    if plans is None:
        plans = plan_mmproj_tensors(parts, spec)
    return write_gguf_file(path, CLIP_ARCH, metadata, plans, progress=progress, stage="mmproj")


def tokens_per_image(model: Any) -> int:
    v = vision_parts(model).vision_config
    return (v.image_size // v.patch_size) ** 2
