"""Training honours LLaVA-OneVision pooling: the loss sees the pooled image features, the
same numbers the runtime computes in numpy, and the checkpoint records the stride."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from runtime.errors import ConfigError
from runtime.image_pool import pool_tokens
from training.examples import IGNORE
from training.losses import TargetLoss
from training.models.pooling import check_pool, image_tokens, pool_features


def test_pool_features_equal_the_runtimes_numpy_pool():
    feat = torch.randn(729, 64)
    for stride, n in ((1, 729), (2, 196), (3, 81)):
        got = pool_features(feat, stride)
        assert got.shape == (n, 64)
        np.testing.assert_allclose(got.numpy(), pool_tokens(feat.numpy(), stride), rtol=1e-6, atol=1e-7)
    with pytest.raises(ConfigError, match="image_pool must be one of 1, 2, 3"):
        check_pool(4)


def test_pooled_loss_is_the_loss_of_the_pooled_sequence(tiny_perception_dir):
    """TargetLoss(image_pool=2) == the model run on embeddings with pooled features spliced in."""
    from training.models.loading import load_perception

    model = load_perception(tiny_perception_dir).eval()
    cfg = model.config
    n = image_tokens(cfg.vision_config, 2)
    assert n == 4  # the tiny tower's 4 x 4 grid -> 2 x 2
    ids = torch.tensor([[1, 2] + [cfg.image_token_id] * n + [3, 4, 5]])
    labels = torch.full_like(ids, IGNORE)
    labels[0, -3:] = ids[0, -3:]
    pixels = torch.randn(1, 3, cfg.vision_config.image_size, cfg.vision_config.image_size)
    with torch.no_grad():
        loss, count = TargetLoss(model, image_pool=2)(ids, torch.ones_like(ids), labels, pixels)
        hs = model.model.vision_tower(pixels, output_hidden_states=True).hidden_states[-1]
        feats = pool_features(model.model.multi_modal_projector(hs)[0], 2)
        emb = model.model.get_input_embeddings()(ids).clone()
        emb[0, 2:2 + n] = feats
        logits = model.lm_head(model.model.language_model(inputs_embeds=emb).last_hidden_state)
        want = torch.nn.functional.cross_entropy(logits[0, -4:-1], ids[0, -3:], reduction="sum")
    assert count.item() == 3
    torch.testing.assert_close(loss, want, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError):  # an unpooled prompt does not fit pooled features
        bad = torch.tensor([[1, 2] + [cfg.image_token_id] * 16 + [3]])
        TargetLoss(model, image_pool=2)(bad, torch.ones_like(bad), torch.full_like(bad, IGNORE), pixels)


def test_a_pooled_stage_trains_records_the_stride_and_exports_it(tmp_path, synth_dir, synth_tokenizer_dir):
    """`perception.image_pool: 2` in a recipe: the align stage trains on pooled prompts, its
    checkpoint says image_pool 2, and `edge export` writes it into the bundle's image_layout."""
    from export.bundle_writer import ExportRequest, export_bundle
    from runtime.bundle import open_bundle
    from tests.training.helpers import tiny_recipe_data
    from training.config import recipe_from_data
    from training.loop import train_stage

    data = tiny_recipe_data(tmp_path / "run", synth_dir, synth_tokenizer_dir, {"align": {"steps": 2}})
    data["perception"]["image_pool"] = 2
    recipe = recipe_from_data(data)
    res = train_stage(recipe, "align")
    final = recipe.stage_dir("align") / "final"
    assert res.steps == 2 and np.isfinite(res.last_loss)
    assert json.loads((final / "config.json").read_text())["image_pool"] == 2
    out = export_bundle(ExportRequest(out=tmp_path / "bundle", perception=final, quants=("f32",), verify=False))
    assert open_bundle(out).manifest.model("perception").image_layout.pool == 2
