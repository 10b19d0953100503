"""A quantized mmproj against the F16 one it replaces: image embeddings on a probe image.

Both files run through the runtime's own llama.cpp vision path (`MtmdVisionEncoder`) on
the same pixels; the metrics say how far the quantized embeddings are from the F16 ones:
- `embed_max_rel_diff`: max |q - f16| / max |f16|;
- `embed_mean_rel_diff`: mean |q - f16| / mean |f16|;
- `embed_rel_l2`: ||q - f16|| / ||f16||;
- `embed_min_token_cosine`: the worst image token's cosine similarity.
Measured on a random SigLIP-so400m mmproj (26 layers), Q8_0 is ~1.9% rel L2 off F16 and
Q4_0 ~22%: the bounds below accept the first and refuse the second.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from runtime.backends.base import BackendOptions
from runtime.backends.llamacpp import load_gguf
from runtime.errors import EdgeError

# metric -> (limit, "max" = must stay at or below, "min" = must stay at or above)
MMPROJ_BOUNDS: dict[str, tuple[float, str]] = {
    "embed_mean_rel_diff": (0.05, "max"),
    "embed_rel_l2": (0.05, "max"),
    "embed_min_token_cosine": (0.99, "min"),
}


class MmprojParityError(EdgeError):
    """A quantized mmproj's embeddings are too far from the F16 ones."""


def embedding_metrics(got: np.ndarray, ref: np.ndarray) -> dict[str, float]:
    d = np.abs(got - ref)
    cos = (got * ref).sum(1) / np.maximum(np.linalg.norm(got, axis=1) * np.linalg.norm(ref, axis=1), 1e-30)
    return {
        "embed_max_abs_diff": float(d.max()),
        "embed_max_rel_diff": float(d.max() / max(float(np.abs(ref).max()), 1e-30)),
        "embed_mean_rel_diff": float(d.mean() / max(float(np.abs(ref).mean()), 1e-30)),
        "embed_rel_l2": float(np.linalg.norm(got - ref) / max(float(np.linalg.norm(ref)), 1e-30)),
        "embed_min_token_cosine": float(cos.min()),
    }


def check_bounds(metrics: dict[str, Any], what: str) -> dict[str, bool]:
    """metric -> within its bound; raises `MmprojParityError` naming the first one outside."""
    checks = {}
    for key, (limit, kind) in MMPROJ_BOUNDS.items():
        value = metrics.get(key)
        checks[key] = value is not None and (value <= limit if kind == "max" else value >= limit)
    bad = [k for k, ok in checks.items() if not ok]
    if bad:
        k = bad[0]
        limit, kind = MMPROJ_BOUNDS[k]
        raise MmprojParityError(f"{what}: {k} {metrics.get(k):.4g} is {'above' if kind == 'max' else 'below'} "
                                f"the bound {limit} against the F16 mmproj")
    return checks


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
