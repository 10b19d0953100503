"""An int8 vision graph against the float32 one it replaces, before it is published.

Two checks on a probe image (`export.embedding_parity.probe_image`), both graphs run the
way the runtime runs them (`OnnxVisionEncoder`, one thread):
- the image embeddings: `embed_*` metrics and bounds of `export.embedding_parity` (the same
  as a Q8_0 mmproj's against F16);
- downstream, the extraction: the exported perception decoder greedily writes
  `EXTRACTION_TOKENS` tokens of the extraction prompt after the float32 embeddings; then,
  after the int8 embeddings and fed the same tokens (teacher forcing), its top-1 choice is
  compared at each of them. `extraction_top1_agreement` is the fraction that agree (gated),
  `extraction_identical_prefix` how many tokens a free greedy run after the int8
  embeddings reproduces before its first different one (reported).
A graph outside any bound raises `VisionParityError` and is not published.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from export.embedding_parity import (
    EMBED_BOUNDS,
    EmbeddingParityError,
    check_bounds,
    embedding_metrics,
    probe_image,
)
from runtime.backends.base import BackendOptions
from runtime.backends.onnx import (
    OnnxLanguageModel,
    OnnxVisionEncoder,
    open_session,
    providers_for,
    session_options,
)
from runtime.generation import Session
from runtime.manifest import ONNX_VISION_QUANTS, ImagePreprocess, TextShape, VisionShape

log = logging.getLogger(__name__)

VISION_QUANTS = ONNX_VISION_QUANTS
EXTRACTION_TOKENS = 32
# metric -> (limit, "max" | "min"): the embedding bounds, and the extraction's choices. A
# trained model keeps nearly every choice (its margins are wide); 0.9 leaves room for a
# near-tie or two and refuses an encoder whose noise moves the description.
VISION_BOUNDS: dict[str, tuple[float, str]] = {**EMBED_BOUNDS, "extraction_top1_agreement": (0.9, "min")}


class VisionParityError(EmbeddingParityError):
    """An int8 vision graph is too far from the float32 one."""


@dataclass(frozen=True)
class VisionGraphs:
    """The staged files the check reads."""

    reference: Path  # float32 vision graph
    candidate: Path  # int8 vision graph
    decoder: Path
    embed: Path


def compare_vision(graphs: VisionGraphs, vision: VisionShape, image: ImagePreprocess, text: TextShape,
                  prompt: list[int | None]) -> dict[str, Any]:
    """Metrics of `graphs.candidate` against `graphs.reference` (module docstring); the
    extraction prompt `prompt` has `vision.tokens_per_image` image positions (None)."""
    import onnxruntime as ort  # the onnx extra: the exporter has it

    opts = BackendOptions(threads=1)
    so, providers = session_options(ort, opts), providers_for(ort, opts)
    pixels = probe_image(image.size)
    embeds = []
    for path in (graphs.reference, graphs.candidate):
        encoder = OnnxVisionEncoder(open_session(ort, path, so, providers), vision, image)
        embeds.append(encoder.encode(pixels))
        encoder.close()
    ref, got = embeds
    metrics: dict[str, Any] = embedding_metrics(got, ref)
    lm = OnnxLanguageModel(ort, open_session(ort, graphs.decoder, so, providers),
                           open_session(ort, graphs.embed, so, providers), text,
                           n_ctx=len(prompt) + EXTRACTION_TOKENS + 1)
    try:
        metrics.update(_extraction_agreement(Session(lm), prompt, ref, got))
    finally:
        lm.close()
    return metrics


def check_vision_parity(metrics: dict[str, Any], what: str) -> dict[str, bool]:
    """metric -> within its bound; raises `VisionParityError` naming the first one outside."""
    return check_bounds(metrics, VISION_BOUNDS, what, "the float32 vision graph", VisionParityError)


def _extraction_agreement(session: Session, prompt: list[int | None], ref: np.ndarray, got: np.ndarray,
                          ) -> dict[str, Any]:
    logits, _ = session.prefill(prompt, ref)
    tokens = []
    for _ in range(EXTRACTION_TOKENS):
        tokens.append(int(np.argmax(logits)))
        logits = session.feed(tokens[-1])
    session.reset()
    logits, _ = session.prefill(prompt, got)
    same = []
    for t in tokens:
        same.append(int(np.argmax(logits)) == t)
        logits = session.feed(t)
    first_diff = same.index(False) if False in same else len(same)
    return {"extraction_top1_agreement": float(np.mean(same)), "extraction_identical_prefix": first_diff,
            "extraction_tokens": len(tokens)}
