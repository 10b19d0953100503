"""LLaVA-OneVision's token pooling (`get_2dPool`, "bilinear" mode) in numpy.

After the projector, a view's g x g grid of image embeddings (27 x 27 = 729 for
SigLIP-so400m at 384 px) is resized to ceil(g / stride) a side with torch's
`F.interpolate(mode="bilinear", align_corners=False)`: stride 2 -> 14 x 14 = 196 tokens,
stride 3 -> 9 x 9 = 81. Stride 3 at 27 happens to be a pure pick of each 3 x 3 block's
centre token (all weights 0 or 1); stride 2 really blends neighbouring rows.

`bilinear_resize` is the same kernel for any output size (the any-resolution merge
shrinks its grid with it). It reproduces torch 2.13's CPU float32 kernel bit for bit
(checked in tests for channel counts that are multiples of 8): the source index is one
fused multiply-add, the four tap weights are float32 products, and the taps are summed
in torch's fma order. float64 products of float32 values are exact, so one rounding of
`x * w + acc` in float64 stands for a float32 fma.
"""

from __future__ import annotations

import math

import numpy as np

POOL_STRIDES = (1, 2, 3)  # 729, 196 and 81 tokens per 384 px view


def pooled_side(side: int, stride: int) -> int:
    """Side of the grid after pooling a `side` x `side` grid with `stride` (ceil, as LLaVA-OV)."""
    return math.ceil(side / stride)


def _axis(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    scale = np.float32(n_in / n_out)
    dst = np.arange(n_out, dtype=np.float64)
    src = (np.float64(scale) * (dst + 0.5) - 0.5).astype(np.float32)  # one rounding, as an fma
    src = np.maximum(src, np.float32(0.0))
    i0 = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
    i1 = np.minimum(i0 + 1, n_in - 1)
    w1 = (src - i0.astype(np.float32)).astype(np.float32)
    w0 = (np.float32(1.0) - w1).astype(np.float32)
    return i0, i1, w0, w1


def _fma(x: np.ndarray, w: np.ndarray, acc: np.ndarray) -> np.ndarray:
    return (x.astype(np.float64) * w.astype(np.float64) + acc).astype(np.float32)


def bilinear_resize(grid: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """[H, W, C] float32 -> [out_h, out_w, C], as torch's bilinear interpolate (no antialias)."""
    h, w, _ = grid.shape
    x = np.asarray(grid, dtype=np.float32)
    hi0, hi1, hw0, hw1 = _axis(h, out_h)
    wi0, wi1, ww0, ww1 = _axis(w, out_w)
    rows0, rows1 = x[hi0], x[hi1]
    x00, x01, x10, x11 = rows0[:, wi0], rows0[:, wi1], rows1[:, wi0], rows1[:, wi1]
    h0, h1 = hw0[:, None, None], hw1[:, None, None]
    w0, w1 = ww0[None, :, None], ww1[None, :, None]
    acc = x10 * (h1 * w0).astype(np.float32)
    acc = _fma(x11, (h1 * w1).astype(np.float32), acc)
    acc = _fma(x01, (h0 * w1).astype(np.float32), acc)
    return np.ascontiguousarray(_fma(x00, (h0 * w0).astype(np.float32), acc))


def pool_tokens(emb: np.ndarray, stride: int) -> np.ndarray:
    """[g*g, C] image embeddings (row-major grid) -> [ceil(g/stride)^2, C]; stride 1 is a no-op."""
    if stride == 1:
        return emb
    n, c = emb.shape
    g = math.isqrt(n)
    if g * g != n:
        raise ValueError(f"{n} image tokens are not a square grid")
    side = pooled_side(g, stride)
    out = bilinear_resize(np.asarray(emb, dtype=np.float32).reshape(g, g, c), side, side)
    return out.reshape(side * side, c)
