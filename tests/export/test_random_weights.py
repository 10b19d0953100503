"""export.gguf.random_weights: GGUFs in given shapes with random weights, as llama.cpp loads them."""

from __future__ import annotations

import stat

import numpy as np
import pytest
from gguf import GGMLQuantizationType, GGUFReader

from export.gguf.random_weights import (
    random_tensor,
    write_random_mmproj_gguf,
    write_random_text_gguf,
)
from runtime.atomic import published_mode
from runtime.backends.base import BackendOptions
from runtime.backends.llamacpp import load_gguf
from runtime.errors import ConfigError
from training.models.sizes import qwen3_tiny, siglip_tiny


def test_random_tensors_are_deterministic_and_shaped():
    a = random_tensor(0, "blk.0.attn_q.weight", (8, 4), "normal")
    assert a.shape == (8, 4) and a.dtype == np.float32
    assert np.array_equal(a, random_tensor(0, "blk.0.attn_q.weight", (8, 4), "normal"))
    assert not np.array_equal(a, random_tensor(1, "blk.0.attn_q.weight", (8, 4), "normal"))
    assert 0.005 < float(a.std()) < 0.05
    assert (random_tensor(0, "x", (3,), "ones") == 1).all() and (random_tensor(0, "x", (3,), "zeros") == 0).all()


@pytest.mark.parametrize("quant", ["q4_0", "q4_k_m"])  # gguf-package and llama.cpp quantizers
def test_text_model_and_mmproj_from_shapes_load_and_run(tmp_path, tiny_tokenizer_dir, quant):
    text, vision = qwen3_tiny(), siglip_tiny()
    model = write_random_text_gguf(tmp_path / "text.gguf", text, tiny_tokenizer_dir, seed=0, quant=quant)
    mmproj = write_random_mmproj_gguf(tmp_path / "mmproj.gguf", vision, text.hidden_size, seed=0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mmproj.gguf", "text.gguf"]  # no temporaries left
    for p in (model, mmproj):  # readable by other users (mkstemp's 0600 is not kept)
        assert stat.S_IMODE(p.stat().st_mode) == published_mode(0, is_dir=False)
    types = {t.name: GGMLQuantizationType(t.tensor_type).name for t in GGUFReader(model).tensors}
    assert types["token_embd.weight"] == "Q8_0" if quant == "q4_0" else types["token_embd.weight"] != "F32"
    assert types["blk.0.attn_norm.weight"] == "F32"
    lm, enc = load_gguf(model, mmproj, BackendOptions(threads=1, context_length=256))
    try:
        lm.reset()
        logits = lm.feed_tokens([1, 2, 3])
        assert logits.shape[-1] == text.vocab_size and np.isfinite(logits).all()
        emb = enc.encode(np.zeros((vision.image_size, vision.image_size, 3), np.uint8))
        assert emb.shape == (vision.tokens_per_image, text.hidden_size)
    finally:
        enc.close()
        lm.close()


def test_mmproj_types_are_f32_f16_or_q8_0(tmp_path):
    with pytest.raises(ConfigError, match="f32, f16, q8_0, not 'q4_0'"):
        write_random_mmproj_gguf(tmp_path / "m.gguf", siglip_tiny(), 64, seed=0, quant="q4_0")
