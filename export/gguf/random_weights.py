"""GGUF files with random weights in given shapes, written without building a torch model.

Speed depends on shapes and storage types, not on the weights' values, so benchmarks
measure paper-scale models with files written here (a 4B model in fp32 torch would need
16 GB). The layout, metadata and tensor types are the exporter's own: `qwen3_metadata`
and `choose_type` for the text model, `write_mmproj_parts` for the vision tower +
projector; one random tensor is in memory at a time (export.gguf.writer).

    write_random_text_gguf(path, text_size, tokenizer_dir, seed=0, quant="q4_k_m")
    write_random_mmproj_gguf(path, vision_size, text_hidden=1024, seed=0)

`text_size` / `vision_size` are training.models.sizes.TextSize / VisionSize (or anything
with their field names).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from export.gguf import quantize_gguf_file
from export.gguf.mmproj import MMPROJ_QUANTS, VisionParts, mmproj_type, write_mmproj_parts
from export.gguf.quantize import QUANT_SPECS, QuantSpec, choose_type, quant_spec
from export.gguf.text import qwen3_metadata
from export.gguf.vocab import read_vocab
from export.gguf.writer import TensorPlan, temp_path, write_gguf_file
from runtime.errors import ConfigError
from runtime.image import SIGLIP_MEAN, SIGLIP_STD

WEIGHT_STD = 0.02  # the initializer_range of Qwen3 and SigLIP configs


def random_tensor(seed: int, name: str, shape: tuple[int, ...], kind: str = "normal") -> np.ndarray:
    """Deterministic values per (seed, tensor name): N(0, 0.02) weights, ones for norm
    scales, zeros for biases (what a freshly initialised model holds)."""
    if kind == "ones":
        return np.ones(shape, dtype=np.float32)
    if kind == "zeros":
        return np.zeros(shape, dtype=np.float32)
    digest = np.frombuffer(name.encode(), dtype=np.uint8).astype(np.uint64).sum()
    rng = np.random.default_rng([seed, int(digest), len(name)])
    out = rng.standard_normal(shape, dtype=np.float32)
    out *= WEIGHT_STD
    return out


def text_tensor_plan(size: Any, seed: int, spec: QuantSpec) -> list[TensorPlan]:
    """Tensor plans of a Qwen3 decoder with the GGUF names llama.cpp's qwen3 graph reads."""
    h, hd, inter = size.hidden_size, size.head_dim, size.intermediate_size
    q, kv = size.num_attention_heads * hd, size.num_key_value_heads * hd
    plans = []

    def add(name: str, shape: tuple[int, ...], kind: str = "normal", embed_like: bool = False) -> None:
        plans.append(TensorPlan(name, shape, choose_type(spec, name, shape, embed_like=embed_like),
                                lambda n=name, s=shape, k=kind: random_tensor(seed, n, s, k)))

    add("token_embd.weight", (size.vocab_size, h), embed_like=True)
    for i in range(size.num_hidden_layers):
        b = f"blk.{i}."
        add(b + "attn_norm.weight", (h,), "ones")
        add(b + "attn_q.weight", (q, h))
        add(b + "attn_k.weight", (kv, h))
        add(b + "attn_v.weight", (kv, h))
        add(b + "attn_output.weight", (h, q))
        add(b + "attn_q_norm.weight", (hd,), "ones")
        add(b + "attn_k_norm.weight", (hd,), "ones")
        add(b + "ffn_norm.weight", (h,), "ones")
        add(b + "ffn_gate.weight", (inter, h))
        add(b + "ffn_up.weight", (inter, h))
        add(b + "ffn_down.weight", (h, inter))
    add("output_norm.weight", (h,), "ones")
    if not size.tie_word_embeddings:
        add("output.weight", (size.vocab_size, h), embed_like=True)
    return plans


def write_random_text_gguf(path: Path, size: Any, tokenizer_dir: Path, *, seed: int, quant: str = "f16",
                           name: str | None = None) -> Path:
    """A Qwen3 GGUF with random weights at `quant` (any GGUF quant: the Python-quantized
    ones directly, llama.cpp's K-quants from an F16 temporary source)."""
    spec = quant_spec(quant)
    path = Path(path)
    name = name or f"random qwen3 {size.hidden_size}x{size.num_hidden_layers} ({spec.name})"
    if spec.tool != "gguf":
        src = temp_path(path, "f16-src.gguf")
        try:
            write_random_text_gguf(src, size, tokenizer_dir, seed=seed, quant="f16", name=name)
            return quantize_gguf_file(src, path, spec)
        finally:
            src.unlink(missing_ok=True)
    vocab = read_vocab(Path(tokenizer_dir), size.vocab_size)
    metadata = qwen3_metadata(size, vocab, spec, name=name, n_rows=size.vocab_size)
    return write_gguf_file(path, "qwen3", metadata, text_tensor_plan(size, seed, spec), stage=name)


def mmproj_tensor_plan(vision: Any, text_hidden: int, seed: int, spec: QuantSpec) -> list[TensorPlan]:
    """SigLIP tower + 2-layer MLP projector with the names of export.gguf.mmproj."""
    h, inter, p = vision.hidden_size, vision.intermediate_size, vision.patch_size
    plans = []

    def add(name: str, shape: tuple[int, ...], kind: str = "normal") -> None:
        plans.append(TensorPlan(name, shape, mmproj_type(spec, name, shape),
                                lambda n=name, s=shape, k=kind: random_tensor(seed, n, s, k)))

    add("v.patch_embd.weight", (h, 3, p, p))
    add("v.patch_embd.bias", (h,), "zeros")
    add("v.position_embd.weight", ((vision.image_size // p) ** 2, h))
    for i in range(vision.num_hidden_layers):
        b = f"v.blk.{i}."
        for short, shape in (("attn_q", (h, h)), ("attn_k", (h, h)), ("attn_v", (h, h)), ("attn_out", (h, h)),
                             ("ffn_up", (inter, h)), ("ffn_down", (h, inter))):
            add(b + short + ".weight", shape)
            add(b + short + ".bias", (shape[0],), "zeros")
        for ln in ("ln1", "ln2"):
            add(b + ln + ".weight", (h,), "ones")
            add(b + ln + ".bias", (h,), "zeros")
    add("mm.0.weight", (text_hidden, h))
    add("mm.0.bias", (text_hidden,), "zeros")
    add("mm.2.weight", (text_hidden, text_hidden))
    add("mm.2.bias", (text_hidden,), "zeros")
    return plans


def write_random_mmproj_gguf(path: Path, vision: Any, text_hidden: int, *, seed: int, quant: str = "f16",
                             name: str | None = None) -> Path:
    """A SigLIP + MLP projector mmproj with random weights (f16, as `edge export` writes
    beside quantized text models by default, f32 or q8_0)."""
    spec = QUANT_SPECS.get(quant)
    if spec is None or quant not in MMPROJ_QUANTS:
        raise ConfigError(f"the mmproj is written in {', '.join(MMPROJ_QUANTS)}, not {quant!r}")
    parts = VisionParts(vision, None, None, vision.num_hidden_layers, int(text_hidden))
    return write_mmproj_parts(parts, Path(path), spec, name=name or f"random siglip mmproj -> {text_hidden}",
                              mean=SIGLIP_MEAN, std=SIGLIP_STD,
                              plans=mmproj_tensor_plan(vision, text_hidden, seed, spec))
