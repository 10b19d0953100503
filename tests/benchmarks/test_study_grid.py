"""The study's grid, recipes, job plan and presets."""

from __future__ import annotations

import pytest

from benchmarks.study.grid import SYSTEMS, Cell, cells, stage_recipes
from benchmarks.study.jobs import estimate, plan, recipes
from benchmarks.study.presets import PRESETS, get_preset
from runtime.errors import ConfigError
from training.config import DataSource, recipe_from_data
from training.models.sizes import HUB_IDS, text_size


def test_every_cell_once_at_the_largest_n_any_finding_asks_for():
    preset = get_preset("laptop")
    cs = cells(preset)
    names = [c.name for c in cs]
    assert len(names) == len(set(names))
    by = {c.name: c for c in cs}
    # et-MM on HC serves (b) 300, (c) 1500 and (d) 600 items: evaluated once, at 1500
    assert by["et-MM.hc"].n == max(preset.items.b["hc"], preset.items.c["hc"], preset.items.d["hc"])
    assert by["et-MM.nothink.hw"].n == preset.items.d["hw"]
    assert by["e2e-M.blank.id"].blank and not by["e2e-M.id"].blank
    assert {c.system for c in cs} == set(SYSTEMS)
    assert Cell("e2e-M", "id", 5, thinking=False).name == "e2e-M.id"  # end to end never thinks


def test_the_three_perception_post_trainings_have_equal_compute(tmp_path):
    for name in PRESETS:
        rs = stage_recipes(get_preset(name), tmp_path)
        for size in ("S", "M"):
            st = rs[size]["stages"]
            trio = [st[f"{k}-{size}"] for k in ("e2e", "caption", "extract")]
            for s in trio:
                assert s["init"] == f"stage:instruct-{size}"
                assert (s["steps"], s["micro_batch_size"], s["optim"]) == \
                       (trio[0]["steps"], trio[0]["micro_batch_size"], trio[0]["optim"])


def test_recipes_load_and_the_reasoner_trains_both_ways(tmp_path):
    rs = recipes(get_preset("laptop"), tmp_path)
    assert set(rs) == {"vision", "S", "M"}
    assert rs["M"].perception.vision_init == str(tmp_path / "tower")  # both sizes share the trained tower
    trace: DataSource = rs["M"].stages["reasoner-M"].data[0]
    assert (trace.style, trace.thinking_share, trace.caption_share) == ("trace", 0.5, 0.5)
    assert rs["S"].perception.text != rs["M"].perception.text
    assert text_size(rs["M"].perception.text).hidden_size > text_size(rs["S"].perception.text).hidden_size
    stage_dirs = {r.stage_dir(n) for r in rs.values() for n in r.stages}
    assert len(stage_dirs) == sum(len(r.stages) for r in rs.values())  # no two stages share a folder


def test_gpu_preset_starts_from_the_hub_checkpoints(tmp_path):
    rs = stage_recipes(get_preset("gpu"), tmp_path)
    assert "vision" not in rs
    assert rs["S"]["perception"]["text_init"] == HUB_IDS["qwen3-0.6b"]
    assert rs["M"]["reasoner"]["init"] == HUB_IDS["qwen3-4b"]
    assert rs["S"]["stages"]["align-S"]["trainable"] == ["projector"]
    recipe_from_data(rs["M"], where="gpu M")


def test_plan_trains_only_what_the_cells_need_after_what_it_starts_from(tmp_path):
    jobs = {j.name: j for j in plan(get_preset("smoke"), tmp_path)}
    assert "train:caption-S" not in jobs  # no cell uses Caption+Think at size S
    assert jobs["train:extract-S"].deps == ("train:instruct-S",)
    assert "train:vision" in jobs["train:align-M"].deps
    assert set(jobs["export:et-SM"].deps) == {"train:extract-S", "train:reasoner-M"}
    assert set(jobs["eval:et-MM.hw"].deps) == {"export:et-MM", "heldout-mc"}
    assert set(jobs["eval:ct-MM.hw-open"].deps) == {"export:ct-MM", "heldout-open"}


def test_estimates(tmp_path):
    laptop = estimate(get_preset("laptop"), tmp_path)
    assert laptop["measured"] and laptop["workers"] == 2
    assert laptop["wall_seconds"] < 60 * 60
    assert laptop["wall_seconds"] < laptop["process_seconds"]
    assert not estimate(get_preset("gpu"), tmp_path)["measured"]


def test_unknown_preset_is_a_clear_error():
    with pytest.raises(ConfigError, match="unknown preset 'huge'"):
        get_preset("huge")


def test_thinking_share_out_of_range_is_refused(tmp_path):
    data = stage_recipes(get_preset("smoke"), tmp_path)["S"]
    data["stages"]["reasoner-S"]["data"][0]["thinking_share"] = 1.5
    with pytest.raises(ConfigError, match="thinking_share must be in"):
        recipe_from_data(data)
