"""Parity of a bundle's files against the source checkpoints its manifest records.

Each artifact is checked by its format's verifier (llama.cpp for GGUF, onnxruntime for
ONNX) with tolerances that depend on the quantization; see docs/bundle-format.md.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from runtime.bundle import open_bundle
from runtime.errors import BundleError

log = logging.getLogger(__name__)


def _verifier(fmt: str) -> Callable[..., dict]:
    if fmt == "gguf":
        from export.gguf import verify_gguf

        return verify_gguf
    from export.onnx import verify_onnx

    return verify_onnx


def verify_bundle(
    root: str | Path, *, roles: tuple[str, ...] | None = None,
    progress: Callable[[str, float], None] | None = None,
) -> dict[str, Any]:
    """Run every artifact's parity check; returns {"bundle", "passed", "artifacts": [...]}."""
    from export.bundle_writer import checkpoint_sha256, normalize_feature_layer
    from training.models.loading import load_perception, load_reasoner

    progress = progress or (lambda stage, frac: None)
    bundle = open_bundle(root, verify="full")
    results = []
    entries = [e for r, e in bundle.manifest.models.items() if roles is None or r in roles]
    total = sum(len(e.artifacts) for e in entries) or 1
    done = 0
    for entry in entries:
        if not entry.source:
            raise BundleError(f"the {entry.role} model records no source checkpoint to verify against")
        src = Path(entry.source)
        if not src.is_dir():
            raise BundleError(f"source checkpoint of the {entry.role} model is gone: {src}")
        if entry.source_sha256 and checkpoint_sha256(src) != entry.source_sha256:
            raise BundleError(f"source checkpoint {src} changed since the export (sha256 differs)")
        loader = load_perception if entry.role == "perception" else load_reasoner
        model = loader(src).float().eval()
        if entry.role == "perception":
            normalize_feature_layer(model)
        for art in entry.artifacts:
            progress(f"{entry.role} {art.format}/{art.quant}", done / total)
            metrics = _verifier(art.format)(bundle.root, dict(art.files), art.quant, model, src)
            results.append({"role": entry.role, "format": art.format, "quant": art.quant, **metrics})
            log.info("%s %s/%s: %s", entry.role, art.format, art.quant, "ok" if metrics.get("passed") else "FAILED")
            done += 1
        del model
    progress("done", 1.0)
    return {
        "bundle": str(bundle.root),
        "passed": all(r.get("passed") for r in results),
        "artifacts": results,
    }
