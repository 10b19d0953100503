"""GGUF quantization types: which tensors get which ggml type, and the two quantizers.

Legacy block types (F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1) are produced in Python by
`gguf.quants`, whose output is byte-identical to llama.cpp's (tests check it). K-quants
have no Python quantizer, so they go through llama.cpp's own `llama_model_quantize`
in-process, from a full-precision GGUF written first.

Policy for the gguf-package path, per tensor:
- 1-D tensors (norms, biases) stay F32: llama.cpp expects that and they are tiny;
- 2-D weights take the quant's type when their rows (the input dimension) are a
  multiple of the type's block size, else F16 (logged): nothing crashes on odd shapes;
- for 4/5-bit types the token embedding and output matrices use Q8_0 instead, because
  with tied embeddings (every small Qwen3) that one matrix is also the output layer,
  which llama.cpp's own recipes keep at high precision (it uses Q6_K there).
"""

from __future__ import annotations

import ctypes
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType, quants

from runtime.backends.llamacpp import llama_lib
from runtime.errors import BackendUnavailableError, ConfigError, install_hint
from runtime.manifest import GGUF_QUANTS

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class QuantSpec:
    name: str
    tool: str  # "gguf" (Python, gguf.quants) or "llamacpp" (llama_model_quantize)
    weight_type: str  # ggml type name for 2-D weights ("" for llama.cpp-chosen mixes)
    file_type: int  # llama_ftype written as general.file_type
    embed_type: str = ""  # type for token_embd/output when different from weight_type
    bits: float = 32.0  # nominal bits per weight, for docs and size estimates


# One spec per name in runtime.manifest.GGUF_QUANTS (a test checks they match).
# llama_ftype values (llama.h): ALL_F32=0, MOSTLY_F16=1, Q4_0=2, Q4_1=3, Q8_0=7,
# Q5_0=8, Q5_1=9, Q4_K_M=15, Q5_K_M=17, Q6_K=18, BF16=32.
QUANT_SPECS: dict[str, QuantSpec] = {
    "f32": QuantSpec("f32", "gguf", "F32", 0, bits=32),
    "f16": QuantSpec("f16", "gguf", "F16", 1, bits=16),
    "bf16": QuantSpec("bf16", "gguf", "BF16", 32, bits=16),
    "q8_0": QuantSpec("q8_0", "gguf", "Q8_0", 7, bits=8.5),
    "q4_0": QuantSpec("q4_0", "gguf", "Q4_0", 2, embed_type="Q8_0", bits=4.5),
    "q4_1": QuantSpec("q4_1", "gguf", "Q4_1", 3, embed_type="Q8_0", bits=5.0),
    "q5_0": QuantSpec("q5_0", "gguf", "Q5_0", 8, embed_type="Q8_0", bits=5.5),
    "q5_1": QuantSpec("q5_1", "gguf", "Q5_1", 9, embed_type="Q8_0", bits=6.0),
    "q4_k_m": QuantSpec("q4_k_m", "llamacpp", "", 15, bits=4.8),
    "q5_k_m": QuantSpec("q5_k_m", "llamacpp", "", 17, bits=5.7),
    "q6_k": QuantSpec("q6_k", "llamacpp", "", 18, bits=6.6),
}

# K-quant super-blocks are 256 values long; rows that are not a multiple of this make
# llama.cpp fall back to another type for that tensor.
K_QUANT_BLOCK = 256


def quant_spec(quant: str) -> QuantSpec:
    try:
        return QUANT_SPECS[quant.lower()]
    except (KeyError, AttributeError):
        raise ConfigError(
            f"unsupported GGUF quantization {quant!r} (supported: {', '.join(GGUF_QUANTS)})"
        ) from None


def ggml_type(name: str) -> GGMLQuantizationType:
    return GGMLQuantizationType[name]


def block_size(type_name: str) -> int:
    return GGML_QUANT_SIZES[ggml_type(type_name)][0]


def nbytes(shape: tuple[int, ...], type_name: str) -> int:
    """Bytes a tensor of this (row-major, numpy-order) shape takes in `type_name`."""
    blk, size = GGML_QUANT_SIZES[ggml_type(type_name)]
    n = 1
    for d in shape:
        n *= int(d)
    return n // blk * size


def choose_type(spec: QuantSpec, name: str, shape: tuple[int, ...], *, embed_like: bool) -> str:
    """The ggml type one tensor is stored in (see the module docstring for the policy)."""
    if len(shape) < 2 or spec.weight_type == "F32":
        return "F32"
    want = spec.embed_type if (embed_like and spec.embed_type) else spec.weight_type
    if shape[-1] % block_size(want) != 0:
        fallback = "F16"
        log.warning("%s: rows of %d are not a multiple of %d, storing it as %s instead of %s",
                    name, shape[-1], block_size(want), fallback, want)
        return fallback
    return want


def encode(array: np.ndarray, type_name: str) -> np.ndarray:
    """float32 array -> the bytes (uint8 array, or f32/f16 array) gguf stores for it."""
    array = np.ascontiguousarray(array, dtype=np.float32)
    if type_name == "F32":
        return array
    if type_name == "F16":
        return array.astype(np.float16)
    return quants.quantize(array, ggml_type(type_name))


def llama_quantize(src: Path, dst: Path, spec: QuantSpec, *, threads: int | None = None) -> None:
    """Quantize a full-precision GGUF into `dst` with llama.cpp's own quantizer."""
    try:
        llama_cpp, _ = llama_lib()  # also routes llama.cpp's log lines to logging
    except BackendUnavailableError:
        raise ConfigError(
            f"{spec.name} needs llama.cpp's quantizer: {install_hint('llamacpp')}"
        ) from None
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = spec.file_type
    params.nthread = threads or os.cpu_count() or 1
    rc = llama_cpp.llama_model_quantize(
        str(src).encode("utf-8"), str(dst).encode("utf-8"), ctypes.byref(params)
    )
    if rc != 0:
        raise ConfigError(f"llama.cpp failed to quantize {src.name} to {spec.name} (code {rc})")


def k_quant_fallbacks(shapes: dict[str, tuple[int, ...]]) -> list[str]:
    """2-D tensors whose rows llama.cpp cannot store in a K-quant (it picks another type)."""
    return [n for n, s in shapes.items() if len(s) >= 2 and s[-1] % K_QUANT_BLOCK != 0]
