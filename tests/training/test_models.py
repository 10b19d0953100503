"""Named builders reproduce the published architectures; checkpoints round-trip."""

from __future__ import annotations

import pytest
import torch

from training.models import sizes
from training.models.builders import perception_config, qwen3_config, siglip_config


@pytest.mark.parametrize(
    ("name", "params"),
    [("qwen3-0.6b", 596_049_920), ("qwen3-4b", 4_022_468_096), ("qwen3-8b", 8_190_735_360)],
)
def test_published_qwen3_sizes(name, params):
    from transformers import Qwen3ForCausalLM

    with torch.device("meta"):
        model = Qwen3ForCausalLM(qwen3_config(sizes.text_size(name)))
    assert sum(p.numel() for p in model.parameters()) == params


def test_siglip_so400m_shape():
    from transformers import SiglipVisionModel

    size = sizes.siglip_so400m_patch14_384(layers_used=27)
    with torch.device("meta"):
        model = SiglipVisionModel(siglip_config(size))
    # published so400m vision tower (27 layers) without the attention-pooling head
    assert sum(p.numel() for p in model.parameters()) == 412_987_248
    assert sizes.siglip_so400m_patch14_384().tokens_per_image == 729


def test_unknown_size_is_a_clear_error():
    from runtime.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown text size"):
        sizes.text_size("qwen3-3b")


def test_perception_roundtrip_and_features(tmp_path, tiny_perception_dir):
    from training.models.loading import load_perception

    model = load_perception(tiny_perception_dir)
    cfg = model.config
    assert cfg.vision_feature_select_strategy == "full" and cfg.vision_feature_layer == -1
    assert not hasattr(model.model.vision_tower, "head")
    n_img = (cfg.vision_config.image_size // cfg.vision_config.patch_size) ** 2
    ids = torch.tensor([[1, 2] + [cfg.image_token_id] * n_img + [3, 4]])
    pixels = torch.randn(1, 3, cfg.vision_config.image_size, cfg.vision_config.image_size)
    with torch.no_grad():
        logits = model(input_ids=ids, pixel_values=pixels).logits
        feats = model.model.get_image_features(pixel_values=pixels)
        feats = feats.pooler_output if hasattr(feats, "pooler_output") else feats
    assert logits.shape == (1, ids.shape[1], cfg.text_config.vocab_size)
    # features: the last kept layer's hidden states, before post_layernorm, projected
    with torch.no_grad():
        hs = model.model.vision_tower(pixels, output_hidden_states=True).hidden_states[-1]
        expect = model.model.multi_modal_projector(hs)
    got = feats[0] if isinstance(feats, (list, tuple)) else feats
    torch.testing.assert_close(got.reshape(expect.shape), expect)


def test_loading_refuses_pickles_and_wrong_types(tmp_path, tiny_reasoner_dir, tiny_perception_dir):
    import shutil

    from runtime.errors import ConfigError
    from training.models.loading import load_perception, load_reasoner

    bad = tmp_path / "pickled"
    bad.mkdir()
    shutil.copy(tiny_reasoner_dir / "config.json", bad / "config.json")
    (bad / "pytorch_model.bin").write_bytes(b"not really")
    with pytest.raises(ConfigError, match="safetensors"):
        load_reasoner(bad)
    with pytest.raises(ConfigError, match="not a llava"):
        load_perception(tiny_reasoner_dir)
    with pytest.raises(ConfigError, match="not qwen3"):
        load_reasoner(tiny_perception_dir)


def test_hub_id_path_is_the_real_code_path():
    from runtime.errors import ConfigError
    from training.models.loading import load_reasoner

    # Offline: the hub path is tried for real and fails with one clear error.
    with pytest.raises(ConfigError, match="Qwen/Qwen3-0.6B"):
        load_reasoner("Qwen/Qwen3-0.6B")


def test_perception_config_uses_given_image_token():
    cfg = perception_config(sizes.siglip_tiny(), sizes.qwen3_tiny(), image_token_id=7)
    assert cfg.image_token_id == 7 and cfg.image_seq_length == 16
