"""Every stage trains on tiny real models: loss falls, checkpoints reload, runs resume."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from runtime.errors import ConfigError
from tests.training.helpers import losses, tiny_recipe_data
from training.config import recipe_from_data
from training.loop import train_stage
from training.models.loading import load_perception, load_reasoner

KINDS = ("vision", "align", "instruct", "caption", "extract", "reasoner")


@pytest.fixture(scope="module")
def trained(tmp_path_factory, synth_dir, synth_tokenizer_dir):
    """Every stage of a tiny recipe, run once for the module (each from the one before)."""
    out = tmp_path_factory.mktemp("stages")
    recipe = recipe_from_data(tiny_recipe_data(out, synth_dir, synth_tokenizer_dir, save_every=4))
    results = {name: train_stage(recipe, name) for name in recipe.stages}
    return recipe, results


@pytest.mark.parametrize("kind", KINDS)
def test_stage_loss_falls_and_final_reloads(trained, kind, tmp_path):
    recipe, results = trained
    res = results[kind]
    curve = losses(recipe.stage_dir(kind))
    assert res.steps == 8 and len(curve) == 8
    assert sum(curve[-2:]) / 2 < sum(curve[:2]) / 2, curve
    final = recipe.stage_dir(kind) / "final"
    summary = json.loads((final / "training.json").read_text())
    assert summary["complete"] and summary["kind"] == kind and summary["step"] == 8
    assert (final / "tokenizer.json").is_file() and (recipe.stage_dir(kind) / "loss.png").is_file()
    model = (load_reasoner if kind == "reasoner" else load_perception)(final)
    model.save_pretrained(tmp_path)  # reload -> save is lossless
    saved, again = load_file(str(final / "model.safetensors")), load_file(str(tmp_path / "model.safetensors"))
    assert saved.keys() == again.keys()
    assert all(torch.equal(saved[k], again[k]) for k in saved)


def test_checkpoints_are_loadable_hf_folders(trained):
    recipe, _ = trained
    stage_dir = recipe.stage_dir("extract")
    latest = json.loads((stage_dir / "latest.json").read_text())
    assert latest["step"] == 4
    ckpt = stage_dir / latest["checkpoint"]
    for name in ("config.json", "model.safetensors", "optimizer.safetensors", "optimizer.json",
                 "rng-rank0.safetensors", "trainer_state.json", "tokenizer.json"):
        assert (ckpt / name).is_file(), name
    assert load_perception(ckpt) is not None
    assert not list(stage_dir.rglob("*.pt")) and not list(stage_dir.rglob("*.bin"))  # nothing pickled


def test_align_trains_only_the_projector(trained):
    recipe, _ = trained
    init = recipe.stage_dir("align") / "checkpoints" / "step-000004" / "model.safetensors"
    before, after = load_file(str(init)), load_file(str(recipe.stage_dir("align") / "final" / "model.safetensors"))
    changed = {k for k in after if not torch.equal(before[k], after[k])}
    assert changed and all("multi_modal_projector." in k for k in changed)


def test_vision_pretraining_trains_the_tower_only(trained):
    recipe, _ = trained
    stage_dir = recipe.stage_dir("vision")
    assert (stage_dir / "checkpoints" / "step-000004" / "cell_heads.safetensors").is_file()
    before = load_file(str(stage_dir / "checkpoints" / "step-000004" / "model.safetensors"))
    after = load_file(str(stage_dir / "final" / "model.safetensors"))
    assert before.keys() == after.keys()  # the heads stay out of the model
    changed = {k for k in after if not torch.equal(before[k], after[k])}
    assert changed and all("vision_tower." in k for k in changed)
    assert not any("post_layernorm" in k for k in changed)


def test_later_stages_start_from_earlier_ones(trained):
    recipe, _ = trained
    summary = json.loads((recipe.stage_dir("extract") / "final" / "training.json").read_text())
    assert summary["init"] == "stage:instruct"
    assert json.loads((recipe.stage_dir("instruct") / "final" / "training.json").read_text())["init"] == "stage:align"


def test_finished_stage_is_skipped(trained):
    recipe, _ = trained
    res = train_stage(recipe, "caption")
    assert res.skipped and res.steps == 8


@pytest.mark.parametrize("kind", ["vision", "extract", "reasoner"])
def test_resumed_run_matches_an_uninterrupted_one(tmp_path, synth_dir, synth_tokenizer_dir, kind):
    stages = {"align": {}, "instruct": {"steps": 2}, kind: {}} if kind == "extract" else {kind: {}}
    common = {"save_every": 3}
    whole = recipe_from_data(tiny_recipe_data(tmp_path / "a", synth_dir, synth_tokenizer_dir, stages, **common))
    split = recipe_from_data(tiny_recipe_data(tmp_path / "b", synth_dir, synth_tokenizer_dir, stages, **common))
    for name in list(stages)[:-1]:  # the same starting point for both
        train_stage(whole, name)
        train_stage(split, name)
    train_stage(whole, kind)
    first = train_stage(split, kind, stop_at_step=5)  # "killed" after step 5 ...
    assert first.steps == 5 and not (split.stage_dir(kind) / "final").exists()
    assert json.loads((split.stage_dir(kind) / "latest.json").read_text())["step"] == 5
    second = train_stage(split, kind)  # ... and resumed
    assert second.resumed_from == 5 and second.steps == 8
    assert losses(split.stage_dir(kind)) == pytest.approx(losses(whole.stage_dir(kind)), abs=1e-6)
    a = load_file(str(whole.stage_dir(kind) / "final" / "model.safetensors"))
    b = load_file(str(split.stage_dir(kind) / "final" / "model.safetensors"))
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


def test_interrupted_checkpoint_write_is_ignored(tmp_path, synth_dir, synth_tokenizer_dir):
    recipe = recipe_from_data(tiny_recipe_data(tmp_path, synth_dir, synth_tokenizer_dir,
                                               {"reasoner": {"steps": 4}}, save_every=2))
    train_stage(recipe, "reasoner", stop_at_step=2)
    stage_dir = recipe.stage_dir("reasoner")
    torn = stage_dir / "checkpoints" / ".step-000003.partial"  # a kill while writing step 3
    torn.mkdir()
    (torn / "model.safetensors").write_bytes(b"torn")
    res = train_stage(recipe, "reasoner")
    assert res.resumed_from == 2 and res.steps == 4
    assert not torn.exists()


def test_resume_refuses_another_global_batch(tmp_path, synth_dir, synth_tokenizer_dir):
    data = tiny_recipe_data(tmp_path, synth_dir, synth_tokenizer_dir, {"reasoner": {"steps": 4}})
    train_stage(recipe_from_data(data), "reasoner", stop_at_step=2)
    data["stages"]["reasoner"]["micro_batch_size"] = 2
    with pytest.raises(ConfigError, match="global batch"):
        train_stage(recipe_from_data(data), "reasoner")


def test_missing_earlier_stage_is_a_clear_error(tmp_path, synth_dir, synth_tokenizer_dir):
    recipe = recipe_from_data(tiny_recipe_data(tmp_path, synth_dir, synth_tokenizer_dir,
                                               {"align": {}, "extract": {"init": "stage:align"}}))
    with pytest.raises(ConfigError, match="has not finished"):
        train_stage(recipe, "extract")


def test_a_reasoner_can_start_from_a_perception_decoder(tiny_perception_dir):
    """`init: stage:<perception stage>` for a reasoner: the text model inside the VLM."""
    from training.model_init import reasoner_from_perception

    vlm = load_perception(tiny_perception_dir)
    reasoner = reasoner_from_perception(tiny_perception_dir)
    ids = torch.arange(3, 19).unsqueeze(0)
    with torch.no_grad():
        want = vlm(input_ids=ids).logits
        got = reasoner(input_ids=ids).logits
    torch.testing.assert_close(got, want)
