"""Image-token layout: LLaVA-OneVision pooling and any-resolution merge against torch.

The torch side is written here, step by step as the paper's fork does it
(`get_2dPool`, `prepare_inputs_labels_for_multimodal`'s anyres_max + spatial_unpad
branch), independently of `runtime.anyres`.
"""

from __future__ import annotations

import math
import platform

import numpy as np
import pytest

from runtime import anyres
from runtime.errors import InputError
from runtime.image_layout import (
    ImagePlan,
    LayoutSpec,
    encode_image,
    image_tokens_to_pool,
    plan_image,
)
from runtime.image_pool import pool_tokens
from tests.support.anyres_reference import torch_merge

torch = pytest.importorskip("torch")
F = torch.nn.functional
X86 = platform.machine().lower() in ("x86_64", "amd64")

PAPER_PINPOINTS = anyres.parse_pinpoints("(1x1),...,(6x6)", 384)
TINY_PINPOINTS = tuple((32 * i, 32 * j) for i in range(1, 7) for j in range(1, 7))


def torch_pool(emb: np.ndarray, stride: int) -> np.ndarray:
    n, c = emb.shape
    g = math.isqrt(n)
    x = torch.from_numpy(emb).view(1, g, g, c).permute(0, 3, 1, 2).contiguous()
    side = math.ceil(g / stride)
    x = F.interpolate(x, size=[side, side], mode="bilinear")
    return x.permute(0, 2, 3, 1).reshape(side * side, c).numpy()


@pytest.mark.parametrize("stride", [2, 3])
@pytest.mark.parametrize(("grid", "channels"), [(27, 64), (4, 16), (5, 8)])
def test_pool_equals_torch_interpolate(stride, grid, channels):
    rng = np.random.default_rng(grid * 10 + stride)
    emb = (rng.standard_normal((grid * grid, channels)) * 3).astype(np.float32)
    got, want = pool_tokens(emb, stride), torch_pool(emb, stride)
    assert got.shape == want.shape == (math.ceil(grid / stride) ** 2, channels)
    if X86:
        assert np.array_equal(got, want)  # torch's CPU float32 kernel, reproduced bit for bit
    else:
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)


def test_image_tokens_choose_the_stride():
    assert [image_tokens_to_pool(27, n) for n in (729, 196, 81)] == [1, 2, 3]
    assert [image_tokens_to_pool(4, n) for n in (16, 4)] == [1, 2]  # tiny grid: 3x3 also gives 2x2
    with pytest.raises(InputError, match="729, 196, 81"):
        image_tokens_to_pool(27, 200)


# ---- any resolution ------------------------------------------------------------------------------


@pytest.mark.parametrize(("size", "tokens"), [((384, 384), 1485), ((640, 480), 2929), ((480, 640), 2943),
                                              ((1920, 1080), 7269), ((300, 1200), 3753), ((32, 32), 1485),
                                              ((820, 369), 2349)])
def test_paper_scale_token_counts(size, tokens):
    assert anyres.plan_anyres(size, PAPER_PINPOINTS, tile=384, side=27, max_tiles=9).tokens == tokens
    bound = anyres.max_tokens(PAPER_PINPOINTS, tile=384, side=27, max_tiles=9)
    assert tokens <= bound


def test_pinpoint_forms_agree():
    listed = [[384 * i, 384 * j] for i in range(1, 7) for j in range(1, 7)]
    assert anyres.parse_pinpoints(listed, 384) == PAPER_PINPOINTS
    assert anyres.parse_pinpoints(repr(listed), 384) == PAPER_PINPOINTS
    with pytest.raises(ValueError, match="multiple of the 384"):
        anyres.parse_pinpoints([[400, 384]], 384)
    assert anyres.parse_max_tiles("anyres_max_9") == 9 and anyres.parse_max_tiles("anyres") is None


# square, wide 4:3 with a crop, tall, shrink with an odd crop, shrink, small, int() truncation
TINY_SIZES = [(32, 32), (53, 40), (40, 53), (25, 100), (160, 90), (200, 150), (4, 4), (110, 88)]


@pytest.mark.parametrize("size", TINY_SIZES)
@pytest.mark.parametrize("pool", [1, 2])
def test_merge_equals_torch_reimplementation(size, pool):
    """Every row: base view, unpad crop, shrink, newline after every row."""
    spec = LayoutSpec("anyres", pool, 32, 4, 16, TINY_PINPOINTS, 9)
    plan = plan_image(spec, size)
    rng = np.random.default_rng(sum(size) + pool)
    feats = rng.standard_normal((plan.views, 16, 16)).astype(np.float32)
    newline = rng.standard_normal(16).astype(np.float32)
    pooled = np.stack([pool_tokens(f, pool) for f in feats])
    got = anyres.merge(pooled[0], pooled[1:], plan.anyres, newline)
    pooled_t = torch.stack([torch.from_numpy(torch_pool(f, pool)) if pool > 1 else torch.from_numpy(f) for f in feats])
    want = torch_merge(pooled_t, size, TINY_PINPOINTS, 32, torch.from_numpy(newline)).numpy()
    assert got.shape == want.shape == (plan.tokens, 16)
    if plan.anyres.shrunk:
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)
    else:
        assert np.array_equal(got, want)
    s = spec.side
    nl_rows = [s * s + r * (plan.anyres.out_cols + 1) + plan.anyres.out_cols for r in range(plan.anyres.out_rows)]
    assert all(np.array_equal(got[i], newline) for i in nl_rows)


def test_unpad_uses_truncation_not_rounding():
    plan = anyres.plan_anyres((110, 88), TINY_PINPOINTS, tile=32, side=4, max_tiles=9)
    # 110 * (12 / 88) is 14.999999999999998 in floats: int() keeps 14 of 16 columns, as the fork (round: 16)
    assert (plan.cols, plan.rows) == (4, 3) and plan.crop_cols == (1, 15)


def test_token_cap_lowers_the_tile_count_before_encoding():
    full = anyres.plan_anyres((1920, 1080), PAPER_PINPOINTS, tile=384, side=27, max_tiles=9)
    capped = anyres.plan_with_cap((1920, 1080), PAPER_PINPOINTS, tile=384, side=27, max_tiles=9, max_tokens=4000)
    assert full.views == 16 and (capped.cols, capped.rows, capped.tokens) == (2, 2, 2379)
    spec = LayoutSpec("anyres", 1, 384, 27, 8, PAPER_PINPOINTS, 9, max_image_tokens=1000)
    assert plan_image(spec, (1920, 1080)) == ImagePlan(1, 729)  # not even one tile: the base view


class _Encoder:
    """A real function of the pixels (not a stand-in for a model): each view's mean colour
    spread over a 4 x 4 grid, so the test can see which view landed where."""

    def encode(self, view):
        base = view.reshape(4, 8, 4, 8, 3).mean(axis=(1, 3)).reshape(16, 3)
        return np.repeat(base, 6, axis=1)[:, :16].astype(np.float32)


def test_encode_image_pools_each_view_then_merges():
    spec = LayoutSpec("anyres", 2, 32, 4, 16, TINY_PINPOINTS, 9, newline=np.full(16, -1.0, np.float32))
    plan = plan_image(spec, (53, 40))
    views = np.random.default_rng(0).integers(0, 256, (plan.views, 32, 32, 3), dtype=np.uint8)
    got = encode_image(_Encoder(), views, plan, spec)
    feats = [pool_tokens(_Encoder().encode(v), 2) for v in views]
    assert np.array_equal(got, anyres.merge(feats[0], np.stack(feats[1:]), plan.anyres, spec.newline))
    assert got.shape == (plan.tokens, 16)
