"""Recipes load strictly; overrides and variables; schedules and batch geometry."""

from __future__ import annotations

from pathlib import Path

import pytest

from runtime.errors import ConfigError
from training.config import apply_overrides, load_recipe, recipe_from_data
from training.schedule import batch_geometry, lr_at

RECIPES = sorted((Path(__file__).resolve().parents[2] / "training" / "recipes").glob("*.yaml"))


def _minimal(**stage) -> dict:
    st = {"kind": "align", "data": [{"kind": "synthetic", "path": "d", "style": "caption"}], "steps": 2}
    st.update(stage)
    return {"name": "t", "output_dir": "o", "stages": {"align": st}}


def test_recipes_exist_and_open_with_their_command():
    assert {p.name for p in RECIPES} >= {"default-bundle.yaml", "synthetic-cpu.yaml", "paper-0.6b.yaml",
                                         "paper-1.7b.yaml"}
    for path in RECIPES:
        first = path.read_text().splitlines()[0]
        assert first.startswith("# ") and ("edge train" in first or "accelerate launch" in first), path
        recipe = load_recipe(path)
        assert recipe.stages, path


def test_paper_recipes_use_the_hub_models():
    for name, text in (("paper-0.6b.yaml", "Qwen/Qwen3-0.6B"), ("paper-1.7b.yaml", "Qwen/Qwen3-1.7B")):
        r = load_recipe(next(p for p in RECIPES if p.name == name))
        assert r.perception.vision_init == "google/siglip-so400m-patch14-384"
        assert r.perception.text_init == text
        assert [s.kind for s in r.stages.values()][:2] == ["align", "instruct"]
        assert {s.kind for s in r.stages.values()} >= {"align", "instruct", "caption", "extract"}
        assert all(s.precision in ("auto", "bf16") for s in r.stages.values())


def test_unknown_key_and_wrong_type_name_the_field():
    with pytest.raises(ConfigError, match=r"stages\.align: unknown key\(s\) stepz"):
        recipe_from_data(_minimal(stepz=3))
    with pytest.raises(ConfigError, match=r"stages\.align\.steps: expected an integer"):
        recipe_from_data(_minimal(steps="three"))
    with pytest.raises(ConfigError, match=r"kind"):
        recipe_from_data(_minimal(kind="pretrain"))
    with pytest.raises(ConfigError, match="steps > 0 or epochs > 0"):
        recipe_from_data(_minimal(steps=0))


def test_overrides_are_checked_like_the_file():
    data = apply_overrides(_minimal(), ["stages.align.steps=7", "stages.align.optim.lr=0.5",
                                        "stages.align.data.0.weight=2"])
    r = recipe_from_data(data)
    assert r.stages["align"].steps == 7 and r.stages["align"].optim.lr == 0.5
    assert r.stages["align"].data[0].weight == 2.0
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        apply_overrides(_minimal(), ["stages.align.steps"])
    with pytest.raises(ConfigError, match="unknown key"):
        recipe_from_data(apply_overrides(_minimal(), ["stages.align.nope=1"]))


def test_vars_substitute_everywhere():
    data = _minimal()
    data["vars"] = {"work": "/scratch/w"}
    data["output_dir"] = "${work}/stages"
    data["stages"]["align"]["data"][0]["path"] = "${work}/data"
    r = recipe_from_data(data)
    assert r.output_dir == "/scratch/w/stages" and r.stages["align"].data[0].path == "/scratch/w/data"
    data["output_dir"] = "${nope}/x"
    with pytest.raises(ConfigError, match=r"\$\{nope\} is not defined"):
        recipe_from_data(data)


def test_stage_init_must_name_an_earlier_stage_and_never_a_reasoner_for_perception():
    data = _minimal(init="stage:later")
    with pytest.raises(ConfigError, match="earlier stage"):
        recipe_from_data(data)
    # a reasoner may start from a perception stage's language model, never the reverse
    data = _minimal()
    data["stages"] = {"r": {"kind": "reasoner", "steps": 1,
                            "data": [{"kind": "synthetic", "path": "d", "style": "trace"}]},
                      **data["stages"]}
    data["stages"]["late"] = {"kind": "instruct", "init": "stage:r", "steps": 1,
                              "data": [{"kind": "synthetic", "path": "d", "style": "direct"}]}
    with pytest.raises(ConfigError, match="perception stage cannot start from it"):
        recipe_from_data(data)


def test_lr_schedule():
    from training.config import OptimConfig

    opt = OptimConfig(lr=1.0, warmup_steps=10, min_lr_ratio=0.1)
    assert lr_at(0, 100, opt) == pytest.approx(0.1)
    assert lr_at(9, 100, opt) == pytest.approx(1.0)
    assert lr_at(10, 100, opt) == pytest.approx(1.0)
    assert lr_at(99, 100, opt) == pytest.approx(0.1, abs=1e-3)
    assert all(lr_at(s, 100, opt) >= lr_at(s + 1, 100, opt) for s in range(10, 99))
    lin = OptimConfig(lr=1.0, schedule="linear")
    assert lr_at(50, 100, lin) == pytest.approx(0.5)
    assert lr_at(50, 100, OptimConfig(schedule="constant")) == 1.0


def test_batch_geometry():
    from training.config import StageConfig

    st = recipe_from_data(_minimal(micro_batch_size=4, global_batch_size=32)).stages["align"]
    assert batch_geometry(st, 1) == (4, 8, 32)
    assert batch_geometry(st, 2) == (4, 4, 32)
    with pytest.raises(ConfigError, match="not a multiple"):
        batch_geometry(st, 3)
    plain = StageConfig(kind="align", data=st.data, steps=1, micro_batch_size=2, grad_accum=3)
    assert batch_geometry(plain, 2) == (2, 3, 12)
