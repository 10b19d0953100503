"""Wider turns and varied outlines (SceneConfig.max_turn, shape_variety): pictures change,
the scene's words do not."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from runtime.errors import ConfigError
from training.data.render import render
from training.data.sampling import TURNABLE, sample_scene
from training.data.scene import Scene, SceneConfig

BASE = SceneConfig(image_size=96, min_size=96, max_size=96, chart_prob=0.0, free_prob=1.0,
                   few_weight=0.0, sign_weight=0.0)
VARIED = replace(BASE, max_turn=30.0, shape_variety=1.0)


def _without_angles(scene: Scene) -> dict:
    data = scene.to_dict()
    for s in data["shapes"]:
        s.pop("angle")
    return data


def test_variety_changes_outlines_and_turns_but_not_the_scene_graph():
    changed = 0
    for seed in range(40):
        plain, varied = sample_scene(seed, BASE), sample_scene(seed, VARIED)
        assert _without_angles(plain) == {k: v for k, v in _without_angles(varied).items() if k != "variety"}
        assert varied.variety == 1.0 and "variety" not in plain.to_dict()
        changed += not np.array_equal(np.asarray(render(plain, 96)), np.asarray(render(varied, 96)))
    assert changed >= 30  # circles and ellipses at the same angle may come out the same


def test_varied_outlines_are_deterministic_and_round_trip():
    scene = sample_scene(3, VARIED)
    again = Scene.from_dict(scene.to_dict())
    assert again == scene
    assert np.array_equal(np.asarray(render(scene, 96)), np.asarray(render(again, 96)))


def _off_axis(angle: float) -> float:
    """Degrees away from the nearest multiple of 90 (arrows point along one; rectangles and
    ellipses lie flat or stand up)."""
    return min(angle % 90.0, 90.0 - angle % 90.0)


def test_only_turnable_shapes_turn_past_max_rotation():
    shapes = [sample_scene(seed, VARIED).shapes[0] for seed in range(600)]
    assert max(abs(s.angle) for s in shapes if s.shape in TURNABLE) > 20.0
    kept = [s for s in shapes if s.shape in ("square", "diamond", "rectangle", "ellipse", "arrow")]
    assert kept and max(_off_axis(s.angle) for s in kept) <= VARIED.max_rotation + 1e-6


@pytest.mark.parametrize("field, value", [("max_turn", -1.0), ("max_turn", 200.0), ("shape_variety", 1.5)])
def test_out_of_range_settings_are_refused(field, value):
    with pytest.raises(ConfigError, match=field):
        replace(BASE, **{field: value})
