"""HF checkpoint -> ONNX graphs for the onnxruntime backend (see docs/onnx.md).

`export_onnx` writes, for one model role:
  decoder  `{role}-decoder-{quant}.onnx`   inputs_embeds + KV cache -> logits, present KV
  embed    `{role}-embed-{fp32|int8}.onnx` input_ids -> inputs_embeds
  vision   `{role}-vision-{fp32|int8}.onnx` pixel_values -> image_embeds (perception only)
Graphs are exported in float32 with torch.onnx (dynamo), then the decoder is quantized
for int8/int4, and the vision graph for `vision_quant="int8"` (checked against the float32
one before it is published: `export.onnx.vision_parity`; signed 7-bit weights first, uint8
when those are outside the bounds: `export.onnx.quantize`). Everything is staged in a
scratch folder inside `out_dir` and each finished file is checked, then renamed into place.
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
from export.onnx.quantize import VISION_LAYOUTS, quantize_decoder, quantize_vision
from export.onnx.verify import verify_onnx
from export.onnx.vision import export_vision
from export.onnx.vision_parity import (
    VISION_QUANTS,
    VisionGraphs,
    VisionParityError,
    check_vision_parity,
    compare_vision,
)
from runtime import prompts
from runtime.atomic import ensure_writable_dir
from runtime.errors import ConfigError
from runtime.tokenizer import BundleTokenizer, encode_segments

log = logging.getLogger(__name__)

__all__ = ["ONNX_QUANTS", "VISION_QUANTS", "export_onnx", "verify_onnx"]


def export_onnx(
    model: Any,
    tokenizer_dir: Path,
    out_dir: Path,
    *,
    role: str,
    quant: str,
    progress: Callable[[str, float], None] | None = None,
    vision_quant: str | None = None,
    report_to: dict[str, Any] | None = None,
) -> dict[str, str]:
    """Export `model` for `role` at `quant`; returns part -> file name in `out_dir`.

    Parts: "decoder", "embed" and, for perception, "vision"; an external-data file
    (only for graphs over ~2 GB) is returned as "<part>_data". `vision_quant` (perception):
    fp32 (None) or int8; an int8 vision graph must pass `compare_vision` against the float32
    one (its metrics go into `report_to[file name]`).
    """
    quant = check_quant(quant)
    vquant = vision_quant or "fp32"
    if vquant not in VISION_QUANTS:
        raise ConfigError(f"the ONNX vision graph can be {', '.join(VISION_QUANTS)}, not {vision_quant!r}")
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
        names["vision"] = f"{role}-vision-{vquant}.onnx"
    elif vquant != "fp32":
        raise ConfigError(f"--vision-quant {vquant}: the {role} model has no vision graph")

    files: dict[str, str] = {}
    with staging_dir(out_dir, role) as tmp:
        staged = _write_graphs(parts, tmp, names, quant, equant, progress, vquant)
        report(progress, "checking graphs", 0.9)
        for path in staged.values():
            check_file(path)
        if vquant != "fp32":
            report(progress, f"checking the {vquant} vision graph against float32", 0.92)
            metrics = _checked_vision(model, tokenizer_dir, tmp, staged, f"the {vquant} vision graph of the {role} model")
            if report_to is not None:
                report_to[names["vision"]] = dict(metrics)
        for part, path in staged.items():
            onnx_name, *data = publish(path, out_dir)
            files[part] = onnx_name
            for i, name in enumerate(data):
                files[f"{part}_data" if i == 0 else f"{part}_data{i}"] = name
    report(progress, "done", 1.0)
    log.info("onnx export of the %s (%s): %s", role, quant, ", ".join(files.values()))
    return files


def _write_graphs(parts: Any, tmp: Path, names: dict[str, str], quant: str, equant: str,
                  progress: Callable[[str, float], None] | None, vquant: str = "fp32") -> dict[str, Path]:
    """Export (and quantize) each graph into the scratch folder `tmp`; part -> path."""
    staged: dict[str, Path] = {}
    report(progress, "embedding table", 0.0)
    staged["embed"] = tmp / names["embed"]
    export_embed(parts.embed_tokens, staged["embed"], quant=equant)
    if "vision" in names:
        report(progress, "vision encoder", 0.1)
        staged["vision"] = tmp / names["vision"]
        if vquant == "fp32":
            export_vision(parts, staged["vision"])
        else:  # the float32 graph stays in the scratch folder for the parity check
            export_vision(parts, _vision_fp32(tmp))
            report(progress, f"quantizing the vision graph to {vquant}", 0.2)
            quantize_vision(_vision_fp32(tmp), staged["vision"])
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


def _checked_vision(model: Any, tokenizer_dir: Path, tmp: Path, staged: dict[str, Path], what: str) -> dict[str, Any]:
    """Check the staged int8 vision graph (the first layout of `VISION_LAYOUTS`) against
    float32; outside the bounds, quantize again with the next layout and check that. The
    metrics of the graph kept, with its `weights` layout; raises when none is within."""
    layouts = list(VISION_LAYOUTS)
    for i, layout in enumerate(layouts):
        if i > 0:
            quantize_vision(_vision_fp32(tmp), staged["vision"], layout)
        metrics = {**_vision_parity(model, tokenizer_dir, tmp, staged), "weights": layout}
        try:
            check_vision_parity(metrics, f"{what} ({layout} weights)")
            return metrics
        except VisionParityError as exc:
            if i == len(layouts) - 1:
                raise
            log.warning("%s; trying %s weights", exc, layouts[i + 1])
    raise AssertionError("VISION_LAYOUTS is empty")


def _vision_fp32(tmp: Path) -> Path:
    folder = tmp / "fp32-vision"
    folder.mkdir(exist_ok=True)
    return folder / "vision.onnx"


def _vision_parity(model: Any, tokenizer_dir: Path, tmp: Path, staged: dict[str, Path]) -> dict[str, Any]:
    """`compare_vision` of the staged int8 vision graph, with this export's decoder and the
    runtime's extraction prompt."""
    from export.checkpoint import (  # loads training
        image_preprocess,
        system_prompt,
        text_shape,
        vision_shape,
    )

    vcfg = model.config.vision_config
    vision = vision_shape(vcfg)
    tok = BundleTokenizer(tokenizer_dir / "tokenizer.json")
    segs = prompts.extraction_prompt(None, system=system_prompt(tokenizer_dir))
    prompt = encode_segments(tok, segs, image_tokens=vision.tokens_per_image)
    graphs = VisionGraphs(_vision_fp32(tmp), staged["vision"], staged["decoder"], staged["embed"])
    metrics = compare_vision(graphs, vision, image_preprocess(tokenizer_dir, vcfg.image_size),
                            text_shape(model.config.text_config), prompt)
    log.info("%s vs fp32: %s", staged["vision"].name,
             ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in metrics.items()))
    return metrics
