"""An exported mmproj GGUF rewritten in another type (F16 -> Q8_0), without its checkpoint.

The shapes and settings come from the file's own `clip.*` keys and the weights from its
tensors (dequantized to float32), then the project's mmproj writer stores them with the
tensor policy of `export.gguf.mmproj.mmproj_type`. `edge bench --compare` uses it to
measure an F16 and a Q8_0 vision tower of the same bundle side by side.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
from gguf import GGMLQuantizationType, GGUFReader, quants

from export.gguf.mmproj import MMPROJ_QUANTS, VisionParts, mmproj_type, write_mmproj_parts
from export.gguf.quantize import QUANT_SPECS
from export.gguf.writer import TensorPlan
from runtime.errors import BundleError, ConfigError
from runtime.gguf_constants import Keys


def _value(reader: GGUFReader, key: str) -> Any:
    field = reader.fields.get(key)
    if field is None:
        raise BundleError(f"the mmproj has no {key} key")
    values = [field.parts[i] for i in field.data]
    if field.types and field.types[0].name == "STRING":
        return bytes(values[0]).decode("utf-8")
    if len(values) == 1 and field.types[0].name != "ARRAY":
        return values[0][0].item()
    return [v[0].item() for v in values]


def _weights(tensor: Any) -> np.ndarray:
    """One tensor as float32 in its numpy shape (the reverse of GGUF's ne order)."""
    shape = tuple(int(n) for n in reversed(tensor.shape))
    kind = GGMLQuantizationType(tensor.tensor_type)
    if kind in (GGMLQuantizationType.F32, GGMLQuantizationType.F16):
        return np.asarray(tensor.data, dtype=np.float32).reshape(shape)
    return quants.dequantize(tensor.data, kind).astype(np.float32).reshape(shape)


def file_quant(path: Path) -> str:
    """The quant name of a GGUF file from its general.file_type (f16 when absent)."""
    field = GGUFReader(path).fields.get("general.file_type")
    if field is None:
        return "f16"
    ftype = int(field.parts[field.data[0]][0])
    return next((s.name for s in QUANT_SPECS.values() if s.file_type == ftype and s.tool == "gguf"), str(ftype))


def requantize_mmproj(src: Path, dst: Path, quant: str) -> Path:
    """Write `src` (an mmproj of this project's layout) to `dst` in `quant` (f32, f16, q8_0)."""
    if quant not in MMPROJ_QUANTS:
        raise ConfigError(f"the mmproj can be {', '.join(MMPROJ_QUANTS)}, not {quant!r}")
    reader = GGUFReader(src)
    k, v = Keys.ClipVision, Keys.ClipVision.Attention
    cfg = SimpleNamespace(
        image_size=_value(reader, k.IMAGE_SIZE), patch_size=_value(reader, k.PATCH_SIZE),
        hidden_size=_value(reader, k.EMBEDDING_LENGTH), intermediate_size=_value(reader, k.FEED_FORWARD_LENGTH),
        num_attention_heads=_value(reader, v.HEAD_COUNT), layer_norm_eps=_value(reader, v.LAYERNORM_EPS),
    )
    parts = VisionParts(cfg, None, None, int(_value(reader, k.BLOCK_COUNT)), int(_value(reader, k.PROJECTION_DIM)))
    spec = QUANT_SPECS[quant]
    plans = []
    for t in reader.tensors:
        shape = tuple(int(n) for n in reversed(t.shape))
        plans.append(TensorPlan(t.name, shape, mmproj_type(spec, t.name, shape), lambda t=t: _weights(t)))
    name = f"{_value(reader, 'general.name')} ({quant})"
    mean = tuple(float(x) for x in _value(reader, k.IMAGE_MEAN))
    std = tuple(float(x) for x in _value(reader, k.IMAGE_STD))
    return write_mmproj_parts(parts, Path(dst), spec, name=name, mean=mean, std=std, plans=plans)
