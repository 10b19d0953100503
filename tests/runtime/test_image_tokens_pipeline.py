"""LLaVA-OneVision pooling in the pipeline: recorded in the manifest or set at load time,
on both backends (the tiny model's 4 x 4 grid pools to ceil(4/2)^2 = 4 tokens)."""

from __future__ import annotations

import numpy as np
import pytest

from runtime.bundle import open_bundle
from runtime.deadline import DeadlinePlanner, Throughput
from runtime.errors import BundleError, InputError
from runtime.image_pool import pool_tokens
from runtime.pipeline import ExtractThink
from tests.support.bundles import copy_bundle, edit_manifest

QUESTION = "What colour is the square?"


@pytest.fixture(scope="module")
def image():
    return (np.random.default_rng(7).random((40, 56, 3)) * 255).astype(np.uint8)


@pytest.fixture(scope="module")
def pooled_bundle(rt_bundle_dir, tmp_path_factory):
    """The tiny bundle with `image_layout.pool = 2` in a version-2 manifest."""
    out = copy_bundle(rt_bundle_dir, tmp_path_factory.mktemp("pooled") / "bundle")

    def edit(m):
        m["format_version"] = 2
        m["models"]["perception"]["image_layout"] = {"input_mode": "single", "pool": 2}

    edit_manifest(out, edit)
    return out


def _e2e(et, image):
    return et.answer(image, QUESTION, ["red", "blue"], mode="end-to-end", sampling="greedy", answer_budget=3)


@pytest.mark.parametrize("backend", ["llamacpp", "onnx"])
def test_pooled_bundle_runs_with_pooled_tokens(backend, rt_bundle_dir, pooled_bundle, image):
    with ExtractThink.load(rt_bundle_dir, backend=backend, threads=1, speed_cache=False) as plain:
        full = _e2e(plain, image)
    with ExtractThink.load(pooled_bundle, backend=backend, threads=1, speed_cache=False) as et:
        assert et.image_layout.pool == 2 and et.image_layout.view_tokens == 4
        pooled = _e2e(et, image)
    assert full.stages["vision"].tokens == 16 and pooled.stages["vision"].tokens == 4
    # the prompt holds 4 image tokens instead of 16: everything else is the same prompt
    assert full.stages["answer"].prompt_tokens - pooled.stages["answer"].prompt_tokens == 12


@pytest.mark.parametrize("backend", ["llamacpp", "onnx"])
def test_load_time_override_pools_the_encoder_output(backend, rt_bundle, image):
    with ExtractThink.load(rt_bundle, backend=backend, threads=1, speed_cache=False, image_tokens=4) as et:
        result = _e2e(et, image)
        assert et.memory_plan is not None and result.stages["vision"].tokens == 4


def test_both_backends_pool_to_the_same_embeddings(rt_bundle, image):
    """llama.cpp's mtmd and the ONNX vision graph, pooled by the runtime: the same numbers."""
    from runtime.image_layout import encode_image, load_views

    got = {}
    for backend in ("llamacpp", "onnx"):
        with ExtractThink.load(rt_bundle, backend=backend, threads=1, speed_cache=False, image_tokens=4) as et:
            spec = et.image_layout
            views, plan, _ = load_views(image, spec, et._slots["perception"].entry.image)
            et._slots.acquire(et._slots["perception"])
            vision = et._slots["perception"].vision
            got[backend] = encode_image(vision, views, plan, spec)
            assert np.array_equal(got[backend], pool_tokens(np.asarray(vision.encode(views[0]), np.float32), 2))
    assert got["llamacpp"].shape == (4, 64)
    np.testing.assert_allclose(got["llamacpp"], got["onnx"], atol=1e-3, rtol=1e-3)


def test_bad_image_token_options_are_refused(rt_bundle, rt_bundle_dir, tmp_path):
    with pytest.raises(InputError, match="16, 4"):
        ExtractThink.load(rt_bundle, threads=1, image_tokens=9)
    with pytest.raises(InputError, match="any-resolution layout"):
        ExtractThink.load(rt_bundle, threads=1, input_mode="anyres")
    bad = copy_bundle(rt_bundle_dir, tmp_path / "v1")
    edit_manifest(bad, lambda m: m.update(format_version=1) or m["models"]["perception"].update(
        image_layout={"pool": 2}))
    with pytest.raises(BundleError, match="needs format_version 2"):
        open_bundle(bad)
    edit_manifest(bad, lambda m: m.update(format_version=2) or m["models"]["perception"].update(
        image_layout={"pool": 5}))
    with pytest.raises(BundleError, match="pool 5 is outside 1..3"):
        open_bundle(bad)


def test_deadline_plan_counts_views():
    planner = DeadlinePlanner(10.0, prior={"perception": Throughput(100.0, 10.0, 1.0)}, clock=lambda: 0.0)
    from runtime.deadline import StageSpec

    one = planner.plan([StageSpec("x", "perception", 100, 100, vision=True)])["x"]
    five = planner.plan([StageSpec("x", "perception", 100, 100, vision=True, views=5)])["x"]
    assert one == 70 and five == 30  # (9 s - 1 s prefill - 1 or 5 s vision) at 10 tok/s


def test_perception_context_is_sized_for_the_layouts_tokens(rt_bundle):
    """The memory planner's KV comes from the context: anyres at paper scale needs up to
    8,830 image tokens (`LayoutSpec.max_tokens`), pooled single views 196."""
    from dataclasses import replace

    from runtime import anyres
    from runtime.image_layout import LayoutSpec
    from runtime.manifest import Budgets
    from runtime.model_slot import default_context

    entry = rt_bundle.manifest.model("perception")
    entry = replace(entry, text=replace(entry.text, context_length=40_960))
    pins = anyres.parse_pinpoints("(1x1),...,(6x6)", 384)
    paper = LayoutSpec("anyres", 1, 384, 27, 1024, pins, 9)
    assert paper.max_tokens() == 8830
    assert default_context("perception", entry, Budgets(), paper.max_tokens()) == 10240
    assert LayoutSpec("anyres", 1, 384, 27, 1024, pins, 9, max_image_tokens=3000).max_tokens() == 3000
    pooled = LayoutSpec("single", 2, 384, 27, 1024)
    assert pooled.max_tokens() == 196 and default_context("perception", entry, Budgets(), 196) == 4096
