"""HF checkpoint -> ONNX graphs for the onnxruntime backend (see docs/onnx.md).

`export_onnx` writes, for one model role:
  decoder  `{role}-decoder-{quant}.onnx`   inputs_embeds + KV cache -> logits, present KV
  embed    `{role}-embed-{fp32|int8}.onnx` input_ids -> inputs_embeds
  vision   `{role}-vision-fp32.onnx`       pixel_values -> image_embeds (perception only)
Graphs are exported in float32 with torch.onnx (dynamo), then the decoder is quantized
for int8/int4. Everything is staged in a scratch folder inside `out_dir` and each
finished file is checked, then renamed into place.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from export.onnx.common import (
    ONNX_QUANTS,
    check_file,
    check_quant,
    model_parts,
    publish,
    report,
    staging_dir,
)
from export.onnx.decoder import export_decoder
from export.onnx.embed import embed_quant_for, export_embed
from export.onnx.quantize import quantize_decoder
from export.onnx.verify import verify_onnx
from export.onnx.vision import export_vision
from runtime.atomic import ensure_writable_dir
from runtime.errors import ConfigError

log = logging.getLogger(__name__)

__all__ = ["ONNX_QUANTS", "export_onnx", "verify_onnx"]


def export_onnx(
    model: Any,
    tokenizer_dir: Path,
    out_dir: Path,
    *,
    role: str,
    quant: str,
    progress: Callable[[str, float], None] | None = None,
) -> dict[str, str]:
    """Export `model` for `role` at `quant`; returns part -> file name in `out_dir`.

    Parts: "decoder", "embed" and, for perception, "vision"; an external-data file
    (only for graphs over ~2 GB) is returned as "<part>_data".
    """
    quant = check_quant(quant)
    parts = model_parts(model, role)
    tokenizer_dir = Path(tokenizer_dir)
    if not (tokenizer_dir / "tokenizer.json").is_file():
        # The graphs do not need it, but a bundle without a matching tokenizer is useless;
        # fail before minutes of export rather than after.
        raise ConfigError(f"{tokenizer_dir}: no tokenizer.json")
    out_dir = Path(out_dir)
    ensure_writable_dir(out_dir)
    equant = embed_quant_for(quant)
    names = {
        "decoder": f"{role}-decoder-{quant}.onnx",
        "embed": f"{role}-embed-{equant}.onnx",
    }
    if parts.vision_tower is not None:
        names["vision"] = f"{role}-vision-fp32.onnx"

    files: dict[str, str] = {}
    with staging_dir(out_dir, role) as tmp:
        staged = _write_graphs(parts, tmp, names, quant, equant, progress)
        report(progress, "checking graphs", 0.9)
        for path in staged.values():
            check_file(path)
        for part, path in staged.items():
            onnx_name, *data = publish(path, out_dir)
            files[part] = onnx_name
            for i, name in enumerate(data):
                files[f"{part}_data" if i == 0 else f"{part}_data{i}"] = name
    report(progress, "done", 1.0)
    log.info("onnx export of the %s (%s): %s", role, quant, ", ".join(files.values()))
    return files


def _write_graphs(parts: Any, tmp: Path, names: dict[str, str], quant: str, equant: str,
                  progress: Callable[[str, float], None] | None) -> dict[str, Path]:
    """Export (and quantize) each graph into the scratch folder `tmp`; part -> path."""
    staged: dict[str, Path] = {}
    report(progress, "embedding table", 0.0)
    staged["embed"] = tmp / names["embed"]
    export_embed(parts.embed_tokens, staged["embed"], quant=equant)
    if "vision" in names:
        report(progress, "vision encoder", 0.1)
        staged["vision"] = tmp / names["vision"]
        export_vision(parts, staged["vision"])
    report(progress, "decoder", 0.25)
    staged["decoder"] = tmp / names["decoder"]
    if quant == "fp32":
        export_decoder(parts, staged["decoder"])
    else:
        fp32_dir = tmp / "fp32"
        fp32_dir.mkdir()
        export_decoder(parts, fp32_dir / "decoder.onnx")
        report(progress, f"quantizing the decoder to {quant}", 0.6)
        quantize_decoder(fp32_dir / "decoder.onnx", staged["decoder"], quant)
    return staged
