"""Bundles whose hashes match but whose weights make NaN / infinity: a BundleError naming
the model, never a traceback from the sampler or silent garbage from greedy decoding."""

from __future__ import annotations

import numpy as np
import pytest

from runtime.errors import BundleError
from runtime.pipeline import ExtractThink
from tests.support.bundles import copy_bundle, fill_gguf_tensor, fill_onnx_initializer

OPTIONS = ["one", "two", "three"]
SMALL = dict(extraction_budget=6, thinking_budget=6, answer_budget=6, hint_budget=4)


@pytest.fixture(scope="module")
def image():
    return (np.random.default_rng(9).random((40, 40, 3)) * 255).astype(np.uint8)


@pytest.fixture(scope="module")
def damaged_reasoner(rt_bundle_dir, tmp_path_factory):
    """The tiny bundle with the reasoner's first norm set to NaN (GGUF) / infinity (ONNX)."""
    bundle = copy_bundle(rt_bundle_dir, tmp_path_factory.mktemp("damaged") / "bundle")
    fill_gguf_tensor(bundle, "reasoner-f32.gguf", "blk.0.attn_norm.weight", np.nan)
    fill_onnx_initializer(bundle, "reasoner-decoder-fp32.onnx", "layers.0.input_layernorm.weight", np.inf)
    return bundle


@pytest.mark.parametrize("backend", ["llamacpp", "onnx"])
@pytest.mark.parametrize("sampling", ["greedy", "paper"])
def test_damaged_reasoner_is_named(damaged_reasoner, image, backend, sampling):
    with ExtractThink.load(damaged_reasoner, backend=backend, threads=1) as et:  # hashes match: it loads
        with pytest.raises(BundleError, match=r"the reasoner model \(.*\) produced NaN or infinite logits"):
            et.answer(image, "How many shapes?", OPTIONS, sampling=sampling, **SMALL)
        # The perception model is fine: a mode without the reasoner still runs.
        result = et.answer(image, "How many shapes?", OPTIONS, mode="end-to-end", answer_budget=4)
        assert result.stages["answer"].tokens >= 1


def test_damaged_vision_encoder_is_named(rt_bundle_dir, tmp_path, image):
    bundle = copy_bundle(rt_bundle_dir, tmp_path / "bundle")
    fill_gguf_tensor(bundle, "perception-mmproj-f32.gguf", "mm.2.bias", np.nan)
    with ExtractThink.load(bundle, backend="llamacpp", threads=1) as et, \
            pytest.raises(BundleError, match=r"vision encoder \(llamacpp gguf/f32\) produced NaN"):
        et.answer(image, "How many shapes?", OPTIONS, hint=False, **SMALL)
