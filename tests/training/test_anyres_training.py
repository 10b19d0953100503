"""Training with any-resolution input: the collator cuts the runtime's views and gives each
prompt its image's own token count, the torch merge equals the runtime's numpy merge, and a
tiny anyres recipe trains, exports (image_layout anyres, the learned image_newline) and runs
in the runtime with the PyTorch model's perception logits on the same image."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from runtime import anyres
from runtime.image_layout import LayoutSpec, load_views, plan_image
from runtime.manifest import ImagePreprocess
from training.models.anyres import NEWLINE_FILE, merge_views, read_newline

PINS = anyres.parse_pinpoints("(1x1),...,(6x6)", 32)
# square, 4:3 (unpad crop), tall, a 5x3-tile grid shrunk past 9 tiles
SIZES = [(64, 64), (53, 40), (25, 100), (160, 90)]


def _image(size, seed):
    w, h = size
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8), "RGB")


@pytest.mark.parametrize("pool", [1, 2])
def test_torch_merge_equals_the_runtimes(pool):
    spec = LayoutSpec("anyres", pool, 32, 4, 8, PINS, 9)
    rng = np.random.default_rng(0)
    newline = rng.standard_normal(8).astype(np.float32)
    for size in SIZES:
        plan = plan_image(spec, size).anyres
        feats = rng.standard_normal((plan.views, spec.view_tokens, 8)).astype(np.float32)
        want = anyres.merge(feats[0], feats[1:], plan, newline)
        got = merge_views(torch.from_numpy(feats), plan, torch.from_numpy(newline)).numpy()
        assert got.shape == want.shape == (plan.tokens, 8), size
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6, err_msg=str(size))


def test_collator_cuts_the_runtimes_views_and_counts_tokens(tmp_path, synth_tokenizer_dir):
    from runtime.chat_format import Image as ImageSlot
    from runtime.chat_format import Text
    from runtime.tokenizer import BundleTokenizer
    from training.collate import Collator
    from training.examples import single_turn

    prep = ImagePreprocess(size=32, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    spec = LayoutSpec("anyres", 1, 32, 4, 64, PINS, 9)
    tok = BundleTokenizer(synth_tokenizer_dir / "tokenizer.json")
    image_id = tok.token_id("<|image_pad|>")
    col = Collator(tok, pad_id=0, max_length=512, image_tokens=16, image_token_id=image_id, image=prep,
                   layout=spec)
    examples = []
    for i, size in enumerate(SIZES[:2]):
        path = tmp_path / f"{i}.png"
        _image(size, i).save(path)
        examples.append(single_turn([ImageSlot(), Text("Describe.")], [Text("a shape")], str(path), f"e{i}"))
    tokenized = [col.tokenize(ex) for ex in examples]
    batch = col.collate(tokenized)
    plans = [plan_image(spec, size) for size in SIZES[:2]]
    assert [t.input_ids.count(image_id) for t in tokenized] == [p.tokens for p in plans] == [88, 70]
    assert batch["image_plans"] == tuple(p.anyres for p in plans)
    views = np.concatenate([load_views(tmp_path / f"{i}.png", spec, prep)[0] for i in range(2)])
    want = (views.astype(np.float32) / 255.0 - 0.5) / 0.5
    assert batch["pixel_values"].shape == (10, 3, 32, 32)
    np.testing.assert_allclose(batch["pixel_values"].numpy(), want.transpose(0, 3, 1, 2), atol=1e-6)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, synth_dir, synth_tokenizer_dir):
    """A tiny anyres recipe: align (projector + newline) 3 steps, then instruct 1 step from it."""
    from export.bundle_writer import ExportRequest, export_bundle
    from tests.training.helpers import tiny_recipe_data
    from training.config import recipe_from_data
    from training.loop import train_stage
    from training.runner import StageRunner

    root = tmp_path_factory.mktemp("anyres_train")
    data = tiny_recipe_data(root / "run", synth_dir, synth_tokenizer_dir,
                            {"align": {"steps": 3}, "instruct": {"steps": 1}}, micro_batch_size=2)
    data["perception"].update(input_mode="anyres", image_grid_pinpoints="(1x1),...,(6x6)", anyres_max_tiles=9)
    recipe = recipe_from_data(data)
    train_stage(recipe, "align", stop_at_step=2)  # a checkpoint mid-stage, then resumed from it
    (ckpt,) = (recipe.stage_dir("align") / "checkpoints").glob("step*")
    saved = read_newline(ckpt, 64)
    runner = StageRunner(recipe, "align")
    runner.setup()
    resumed = runner.accelerator.unwrap_model(runner.wrapper).image_newline.detach().numpy().copy()
    del runner
    results = {name: train_stage(recipe, name) for name in ("align", "instruct")}
    final = recipe.stage_dir("instruct") / "final"
    bundle = export_bundle(ExportRequest(out=root / "bundle", perception=final, formats=("gguf", "onnx"),
                                         quants=("f32",), verify=False))
    return {"recipe": recipe, "results": results, "final": final, "bundle": bundle,
            "checkpoint_newline": saved, "resumed_newline": resumed}


def test_anyres_stages_train_the_newline_and_record_the_layout(trained):
    recipe = trained["recipe"]
    align, extract = recipe.stage_dir("align") / "final", trained["final"]
    for name, res in trained["results"].items():
        assert np.isfinite(res.last_loss), name
    lay = json.loads((extract / "config.json").read_text())["image_layout"]
    assert lay["input_mode"] == "anyres" and lay["tile"] == 32 and lay["max_tiles"] == 9
    assert len(lay["pinpoints"]) == 36 and lay["newline"] == NEWLINE_FILE
    # align trains the projector and the newline (away from its seeded start); instruct
    # starts from align's and trains it further
    start = torch.randn(64, generator=torch.Generator().manual_seed(recipe.seed)) / 8
    after_align, after_extract = read_newline(align, 64), read_newline(extract, 64)
    assert not np.allclose(after_align, start.numpy()) and not np.allclose(after_extract, after_align)
    assert np.abs(after_extract - after_align).max() < 0.1  # continued, not re-initialised
    # a resumed stage continues with its checkpoint's newline
    assert np.array_equal(trained["resumed_newline"], trained["checkpoint_newline"])
    assert not np.allclose(trained["checkpoint_newline"], start.numpy())


def test_export_writes_the_layout_and_the_learned_newline(trained):
    from runtime.bundle import open_bundle

    b = open_bundle(trained["bundle"])
    lay = b.manifest.model("perception").image_layout
    assert (lay.input_mode, lay.max_tiles, len(lay.pinpoints)) == ("anyres", 9, 36)  # trained anyres: its default
    assert np.array_equal(np.frombuffer(b.path(lay.newline).read_bytes(), "<f4"), read_newline(trained["final"], 64))


def _torch_logits(model, newline, views, plan, image_id, before, after):
    from training.models.pooling import image_inputs

    x = torch.from_numpy(((views.astype(np.float32) / 255.0 - 0.5) / 0.5).transpose(0, 3, 1, 2).copy())
    ids = torch.tensor([before + [image_id] * plan.tokens + after])
    with torch.no_grad():
        kw = image_inputs(model, x, 1, [plan.anyres], newline)
        feats = kw["mm_encoder_outputs"]["image"].pooler_output[0]
        hidden = model.model(input_ids=ids, attention_mask=torch.ones_like(ids), use_cache=False, **kw)
        logits = model.lm_head(hidden.last_hidden_state)[0, -1]
    return feats.numpy(), logits.numpy()


@pytest.mark.parametrize("backend", ["onnx", "llamacpp"])
def test_runtime_perception_matches_the_training_model(trained, backend):
    """The exported bundle in the runtime (views, encoder per view, numpy merge, decoder) vs
    the PyTorch training model with the learned newline, on the same images: the image
    tokens and the logits after them, within the exporters' parity tolerances."""
    from runtime.backends import choose_artifact, load_model
    from runtime.backends.base import BackendOptions
    from runtime.bundle import open_bundle
    from runtime.image_layout import encode_image, resolve_layout
    from training.models.loading import load_perception

    b = open_bundle(trained["bundle"])
    entry = b.manifest.model("perception")
    spec = resolve_layout(b, entry)
    model = load_perception(trained["final"]).float().eval()
    newline = torch.from_numpy(read_newline(trained["final"], 64).copy())
    _, art = choose_artifact(b, "perception", backend, None)
    lm, vision = load_model(b, "perception", backend, art, BackendOptions(threads=1, kv_cache_type="f32"))
    before, after = [5, 6, 7], [8, 9, 10]
    try:
        for i, size in enumerate(SIZES[1:]):
            views, plan, _ = load_views(_image(size, 10 + i), spec, entry.image)
            want_emb, want = _torch_logits(model, newline, views, plan, model.config.image_token_id, before, after)
            got_emb = encode_image(vision, views, plan, spec)
            assert got_emb.shape == want_emb.shape == (plan.tokens, 64), size
            lm.reset()
            lm.feed_tokens(before)
            lm.feed_embeddings(got_emb)
            got = lm.feed_tokens(after)
            if backend == "onnx":  # export/onnx/verify.py: max abs 1e-3 on f32 logits
                assert np.abs(got_emb - want_emb).max() < 1e-4, size
                assert np.abs(got - want).max() < 1e-3, size
            else:  # export/gguf/verify.py: image embeddings within 1e-2, logit correlation >= 0.999
                assert np.abs(got_emb - want_emb).max() / np.abs(want_emb).max() < 1e-2, size
                assert np.corrcoef(got, want)[0, 1] >= 0.999, size
    finally:
        lm.close()
        vision.close()
