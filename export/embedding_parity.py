"""Image embeddings of a quantized vision tower against the full-precision one it replaces.

Shared by the GGUF mmproj (`export.gguf.mmproj_parity`: Q8_0 against F16) and the ONNX
vision graph (`export.onnx.vision_parity`: int8 against float32). The metrics say how far
the quantized embeddings are from the reference on the same pixels:
- `embed_max_rel_diff`: max |q - ref| / max |ref|;
- `embed_mean_rel_diff`: mean |q - ref| / mean |ref|;
- `embed_rel_l2`: ||q - ref|| / ||ref||;
- `embed_min_token_cosine`: the worst image token's cosine similarity.
Measured on a random SigLIP-so400m tower (26 layers), a Q8_0 mmproj is ~1.9% rel L2 off
F16 and Q4_0 ~22%: the bounds below accept the first and refuse the second.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from runtime.errors import EdgeError

# metric -> (limit, "max" = must stay at or below, "min" = must stay at or above)
EMBED_BOUNDS: dict[str, tuple[float, str]] = {
    "embed_mean_rel_diff": (0.05, "max"),
    "embed_rel_l2": (0.05, "max"),
    "embed_min_token_cosine": (0.99, "min"),
}


class EmbeddingParityError(EdgeError):
    """A quantized vision tower's embeddings are too far from the full-precision ones."""


def embedding_metrics(got: np.ndarray, ref: np.ndarray) -> dict[str, float]:
    """`got` [tokens, width] against `ref` (float64 sums: a so400m image is 729 x 1152+)."""
    got, ref = np.asarray(got, np.float64), np.asarray(ref, np.float64)
    d = np.abs(got - ref)
    cos = (got * ref).sum(1) / np.maximum(np.linalg.norm(got, axis=1) * np.linalg.norm(ref, axis=1), 1e-30)
    return {
        "embed_max_abs_diff": float(d.max()),
        "embed_max_rel_diff": float(d.max() / max(float(np.abs(ref).max()), 1e-30)),
        "embed_mean_rel_diff": float(d.mean() / max(float(np.abs(ref).mean()), 1e-30)),
        "embed_rel_l2": float(np.linalg.norm(got - ref) / max(float(np.linalg.norm(ref)), 1e-30)),
        "embed_min_token_cosine": float(cos.min()),
    }


def check_bounds(metrics: dict[str, Any], bounds: dict[str, tuple[float, str]], what: str, against: str,
                 error: type[EmbeddingParityError] = EmbeddingParityError) -> dict[str, bool]:
    """metric -> within its bound; raises `error` naming the first one outside."""
    checks = {}
    for key, (limit, kind) in bounds.items():
        value = metrics.get(key)
        checks[key] = value is not None and (value <= limit if kind == "max" else value >= limit)
    bad = [k for k, ok in checks.items() if not ok]
    if bad:
        k = bad[0]
        limit, kind = bounds[k]
        value = metrics.get(k)
        shown = "missing" if value is None else f"{value:.4g}"
        raise error(f"{what}: {k} {shown} is {'above' if kind == 'max' else 'below'} the bound {limit} "
                    f"against {against}")
    return checks


def probe_image(size: int, seed: int = 0) -> np.ndarray:
    """A deterministic RGB uint8 image: gradients plus noise (any resampling shows up)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size]
    base = np.stack([x * 255 // max(1, size - 1), y * 255 // max(1, size - 1),
                     (x + y) * 127 // max(1, size - 1)], -1)
    noise = rng.integers(-40, 41, size=base.shape)
    return np.clip(base + noise, 0, 255).astype(np.uint8)
