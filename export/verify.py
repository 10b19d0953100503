"""Parity of a bundle's files against the source checkpoints its manifest records.

Each artifact is checked by its format's verifier (llama.cpp for GGUF, onnxruntime for
ONNX) with tolerances that depend on the quantization; see docs/bundle-format.md.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from export.checkpoint import load_for_export
from export.gguf import verify_gguf
from export.onnx import verify_onnx
from export.sources import open_source
from runtime.bundle import open_bundle
from runtime.errors import BundleError, ConfigError
from runtime.manifest import ModelEntry

log = logging.getLogger(__name__)

VERIFIERS: dict[str, Callable[..., dict]] = {"gguf": verify_gguf, "onnx": verify_onnx}


def verify_bundle(
    root: str | Path, *, roles: tuple[str, ...] | None = None,
    progress: Callable[[str, float], None] | None = None, folders: Mapping[str, Path] | None = None,
) -> dict[str, Any]:
    """Run every artifact's parity check; returns {"bundle", "passed", "artifacts": [...]}.

    `folders` (role -> checkpoint folder) is what the exporter just exported from; without
    it the sources the manifest records are opened again."""
    progress = progress or (lambda stage, frac: None)
    bundle = open_bundle(root, verify="full")
    results = []
    entries = [e for r, e in bundle.manifest.models.items() if roles is None or r in roles]
    total = sum(len(e.artifacts) for e in entries) or 1
    done = 0
    for entry in entries:
        with contextlib.ExitStack() as stack:
            src = (folders or {}).get(entry.role) or _source(stack, bundle.path(entry.tokenizer), entry)
            _verify_entry(bundle.root, entry, src, results, progress, (done, total))
        done += len(entry.artifacts)
    progress("done", 1.0)
    return {
        "bundle": str(bundle.root),
        "passed": all(r.get("passed") for r in results),
        "artifacts": results,
    }


def _source(stack: contextlib.ExitStack, tokenizer: Path, entry: ModelEntry) -> Path:
    """The source checkpoint folder again (a hub id at the recorded commit; a paper
    checkpoint converted again), checked against the recorded hash."""
    if not entry.source or entry.source_layout == "gguf":
        raise BundleError(f"the {entry.role} model records no source checkpoint to verify against")
    spec = f"{entry.source}@{entry.source_revision}" if entry.source_revision else entry.source
    if entry.source_revision is None and not Path(entry.source).is_dir():
        raise BundleError(f"source checkpoint of the {entry.role} model is gone: {entry.source}")
    try:
        heads = entry.vision.num_heads if entry.vision is not None else None  # for a paper tower
        src = stack.enter_context(open_source(spec, entry.role, tokenizer=tokenizer, vision_heads=heads))
    except ConfigError as exc:
        raise BundleError(f"source checkpoint of the {entry.role} model: {exc}") from None
    if entry.source_sha256 and src.source_sha256 != entry.source_sha256:
        raise BundleError(f"source checkpoint {entry.source} changed since the export (sha256 differs)")
    return src.folder


def _verify_entry(root: Path, entry: ModelEntry, src: Path, results: list[dict], progress: Callable[[str, float], None],
                  step: tuple[int, int]) -> None:
    done, total = step
    model = load_for_export(entry.role, src)
    for art in entry.artifacts:
        progress(f"{entry.role} {art.format}/{art.quant}", done / total)
        metrics = VERIFIERS[art.format](root, dict(art.files), art.quant, model, src)
        results.append({"role": entry.role, "format": art.format, "quant": art.quant, **metrics})
        log.info("%s %s/%s: %s", entry.role, art.format, art.quant, "ok" if metrics.get("passed") else "FAILED")
        done += 1


def _fmt(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def failure_summary(report: dict[str, Any]) -> str:
    """"" when every artifact passed, else which ones failed and on which metric:
    "perception onnx/int8: logits_rel_rms 0.107 (limit 0.1)"."""
    parts = []
    for r in report["artifacts"]:
        if r.get("passed"):
            continue
        metrics, limits = r.get("metrics", {}), r.get("tolerances", {})
        bad = [f"{k} {_fmt(metrics.get(k))} (limit {_fmt(limits.get(k))})"
               for k, ok in r.get("checks", {}).items() if not ok]
        parts.append(f"{r['role']} {r['format']}/{r['quant']}: {', '.join(bad) or 'failed'}")
    return "; ".join(parts)
