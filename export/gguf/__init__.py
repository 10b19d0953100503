"""HF checkpoints -> GGUF files for llama.cpp, and their parity check.

`export_gguf` writes the text decoder (architecture "qwen3", full tokenizer metadata and
the project's chat template) and, for the perception model, the vision tower + projector
as a `clip` mmproj. Every file is written under a temporary name and renamed when
complete. `verify_gguf` runs the written files through the project's llama.cpp backend
and compares them with the torch model. Layout, keys and quant table: docs/gguf.md.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gguf import GGMLQuantizationType, GGUFReader

from export.checkpoint import image_preprocess
from export.gguf.mmproj import MMPROJ_QUANTS, vision_parts, write_mmproj_parts
from export.gguf.mmproj_parity import check_bounds, compare_mmproj
from export.gguf.quantize import (
    QUANT_SPECS,
    QuantSpec,
    k_quant_fallbacks,
    llama_quantize,
    quant_spec,
)
from export.gguf.text import plan_text_tensors, text_parts, write_text_gguf
from export.gguf.verify import probe_image, verify
from export.gguf.writer import fsync_file, temp_path
from runtime.atomic import ensure_writable_dir
from runtime.errors import ConfigError
from runtime.manifest import GGUF_QUANTS

__all__ = ["GGUF_QUANTS", "export_gguf", "quantize_gguf_file", "verify_gguf"]

log = logging.getLogger(__name__)

ROLES = ("perception", "reasoner")


def _check_role(model: Any, role: str) -> None:
    if role not in ROLES:
        raise ConfigError(f"role must be one of {', '.join(ROLES)}, not {role!r}")
    mtype = getattr(getattr(model, "config", None), "model_type", None)
    want = "llava" if role == "perception" else "qwen3"
    if mtype != want:
        raise ConfigError(
            f"the {role} model must be {'LLaVA-style SigLIP + MLP + Qwen3' if want == 'llava' else 'Qwen3'} "
            f"(model_type {want!r}), got model_type {mtype!r}"
        )


def export_gguf(
    model: Any,
    tokenizer_dir: Path,
    out_dir: Path,
    *,
    role: str,
    quant: str,
    progress: Callable[[str, float], None] | None = None,
    mmproj_quant: str | None = None,
    report: dict[str, Any] | None = None,
) -> dict[str, str]:
    """Write `role`'s GGUF file(s) into `out_dir`; returns {"model": name[, "mmproj": name]}.

    `mmproj_quant` (perception): the vision tower's type, f32, f16 or q8_0 (None: f32 for an
    f32 export, else f16). A q8_0 mmproj is checked against an F16 one on a probe image
    (`export.gguf.mmproj_parity`; its metrics go into `report`) and refused outside the bounds."""
    spec = quant_spec(quant)
    _check_role(model, role)
    if mmproj_quant is not None and mmproj_quant not in MMPROJ_QUANTS:
        raise ConfigError(f"the mmproj can be {', '.join(MMPROJ_QUANTS)}, not {mmproj_quant!r}")
    parts = text_parts(model)  # validates the decoder config before anything is written
    if role == "perception":
        vision_parts(model)
    out_dir, tokenizer_dir = Path(out_dir), Path(tokenizer_dir)
    ensure_writable_dir(out_dir)
    if not (tokenizer_dir / "tokenizer.json").is_file():
        raise ConfigError(f"{tokenizer_dir}: no tokenizer.json")

    final = out_dir / f"{role}-{spec.name}.gguf"
    label = f"extract-think {role} ({spec.name})"
    files: dict[str, str] = {}
    if spec.tool == "gguf":
        write_text_gguf(model, tokenizer_dir, final, spec, name=label, progress=progress)
    else:
        shapes = {p.name: p.shape for p in plan_text_tensors(parts, QUANT_SPECS["f32"])}
        odd = k_quant_fallbacks(shapes)
        if odd:
            log.warning("%d tensors have rows that are not a multiple of 256 (e.g. %s); llama.cpp "
                        "stores them in a non-K fallback type", len(odd), odd[0])
        src = temp_path(final, "src.gguf")
        try:
            write_text_gguf(model, tokenizer_dir, src, QUANT_SPECS["f32"], name=label, progress=progress)
            if progress:
                progress("quantize", 0.0)
            quantize_gguf_file(src, final, spec)
            if progress:
                progress("quantize", 1.0)
        finally:
            src.unlink(missing_ok=True)
        log.info("%s tensor types: %s", final.name, _type_histogram(final))
    files["model"] = final.name

    if role == "perception":
        files["mmproj"] = _write_mmproj(model, tokenizer_dir, out_dir, role, final, mmproj_quant or (
            "f32" if spec.name == "f32" else "f16"), progress, report)
    return files


def _write_mmproj(model: Any, tokenizer_dir: Path, out_dir: Path, role: str, text_model: Path, quant: str,
                  progress: Callable[[str, float], None] | None, report: dict[str, Any] | None) -> str:
    """Write the mmproj in `quant`; a quantized one must pass the parity check against F16."""
    mm_spec = QUANT_SPECS[quant]
    mm_path = out_dir / f"{role}-mmproj-{mm_spec.name}.gguf"
    # the checkpoint folder's preprocessor_config.json, as the manifest records it
    size = int(model.config.vision_config.image_size)
    prep = image_preprocess(tokenizer_dir, size)

    def write(path: Path, s: QuantSpec) -> None:
        write_mmproj_parts(vision_parts(model), path, s, name=f"extract-think {role} vision ({s.name})",
                           mean=prep.mean, std=prep.std, progress=progress)

    write(mm_path, mm_spec)
    if mm_spec.weight_type in ("F32", "F16"):
        return mm_path.name
    reference = temp_path(mm_path, "f16.gguf")
    try:
        write(reference, QUANT_SPECS["f16"])
        metrics = compare_mmproj(text_model, reference, mm_path, probe_image(size))
    finally:
        reference.unlink(missing_ok=True)
    log.info("%s vs f16: %s", mm_path.name, ", ".join(f"{k}={v:.4g}" for k, v in metrics.items()))
    if report is not None:
        report[mm_path.name] = dict(metrics)
    try:
        check_bounds(metrics, f"the {mm_spec.name} mmproj of the {role} model")
    except BaseException:
        mm_path.unlink(missing_ok=True)
        raise
    return mm_path.name


def quantize_gguf_file(src: Path, dst: Path, quant: str | QuantSpec) -> Path:
    """A K-quant (or any llama.cpp type) copy of the full-precision GGUF `src` at `dst`,
    written under a temporary name and renamed when complete."""
    spec = quant if isinstance(quant, QuantSpec) else quant_spec(quant)
    dst = Path(dst)
    tmp = temp_path(dst, "tmp")
    try:
        llama_quantize(Path(src), tmp, spec)
        fsync_file(tmp)
        os.replace(tmp, dst)
    finally:
        tmp.unlink(missing_ok=True)
    return dst


def _type_histogram(path: Path) -> dict[str, int]:
    hist: dict[str, int] = {}
    for t in GGUFReader(path).tensors:
        name = GGMLQuantizationType(t.tensor_type).name
        hist[name] = hist.get(name, 0) + 1
    return hist


def verify_gguf(bundle_root: Path, files: dict[str, str], quant: str, model: Any,
                tokenizer_dir: Path) -> dict:
    """Parity of the written files against the torch model (see export.gguf.verify)."""
    return verify(Path(bundle_root), files, quant, model, Path(tokenizer_dir))
