"""A quantized mmproj against the F16 one it replaces: image embeddings on a probe image.

Both files run through the runtime's own llama.cpp vision path (`MtmdVisionEncoder`) on
the same pixels; the metrics and their bounds are `export.embedding_parity`'s.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from export.embedding_parity import EMBED_BOUNDS, EmbeddingParityError, embedding_metrics
from export.embedding_parity import check_bounds as check_embedding_bounds
from runtime.backends.base import BackendOptions
from runtime.backends.llamacpp import load_gguf

MMPROJ_BOUNDS = EMBED_BOUNDS
__all__ = ["MMPROJ_BOUNDS", "MmprojParityError", "check_bounds", "compare_mmproj", "embedding_metrics"]


class MmprojParityError(EmbeddingParityError):
    """A quantized mmproj's embeddings are too far from the F16 ones."""


def check_bounds(metrics: dict[str, Any], what: str) -> dict[str, bool]:
    """metric -> within its bound; raises `MmprojParityError` naming the first one outside."""
    return check_embedding_bounds(metrics, MMPROJ_BOUNDS, what, "the F16 mmproj", MmprojParityError)


def compare_mmproj(text_model: Path, reference: Path, candidate: Path, image: np.ndarray) -> dict[str, float]:
    """Embeddings of `image` through `candidate` vs `reference` (both with `text_model`)."""
    opts = BackendOptions(threads=1, context_length=64)  # one thread: see export.gguf.verify
    embeds = []
    for mmproj in (reference, candidate):
        lm, vision = load_gguf(text_model, mmproj, opts)
        try:
            embeds.append(np.asarray(vision.encode(image), dtype=np.float32))
        finally:
            vision.close()
            lm.close()
    return embedding_metrics(embeds[1], embeds[0])
