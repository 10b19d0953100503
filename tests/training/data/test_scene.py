"""The scene generator and renderer: determinism, fidelity to the graph, validation."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from runtime.errors import ConfigError
from training.data.render import bar_rect, render, render_png, shape_center
from training.data.sampling import sample_scene
from training.data.scene import Scene, SceneConfig, shape_rgb
from training.data.vocabulary import COLORS


@pytest.mark.parametrize("size", [64, 128, 384])
def test_same_seed_same_bytes(size):
    cfg = SceneConfig(image_size=size)
    for seed in (0, 1, 12345):
        a = render_png(sample_scene(seed, cfg), size)
        b = render_png(sample_scene(seed, cfg), size)
        assert a == b
    assert render_png(sample_scene(1, cfg), size) != render_png(sample_scene(2, cfg), size)


def test_scene_graph_round_trips_through_json():
    import json

    for seed in range(50):
        scene = sample_scene(seed, SceneConfig(chart_prob=0.3))
        again = Scene.from_dict(json.loads(json.dumps(scene.to_dict())))
        assert again == scene
        assert render_png(again, 64) == render_png(scene, 64)


@pytest.mark.parametrize("size", [64, 128])
def test_each_shape_is_drawn_in_its_colour_where_the_graph_puts_it(size):
    checked = 0
    for seed in range(300):
        scene = sample_scene(seed, SceneConfig(image_size=size, chart_prob=0.0, noise_prob=0.0))
        img = render(scene, size)
        for s in scene.shapes:
            x, y = shape_center(s, size, scene.grid)
            assert img.getpixel((int(x), int(y))) == shape_rgb(s), (seed, s)
            checked += 1
    assert checked > 1000


def test_bars_are_drawn_with_heights_in_value_order():
    for seed in range(200):
        scene = sample_scene(seed, SceneConfig(image_size=128, chart_prob=1.0))
        assert scene.kind == "chart"
        img = render(scene, 128)
        heights = []
        for i, b in enumerate(scene.bars):
            x0, y0, x1, y1 = (v / 2 for v in bar_rect(i, b.value, len(scene.bars), 256))
            mid = (int((x0 + x1) / 2), int((y0 + y1) / 2))
            assert img.getpixel(mid) == COLORS[b.color]
            heights.append((y1 - y0, b.value))
        assert [v for _, v in sorted(heights)] == sorted(b.value for b in scene.bars)


def test_objects_per_scene_follow_the_config():
    cfg = SceneConfig(min_objects=4, max_objects=8, chart_prob=0.0, free_prob=0.0)
    counts = set()
    for seed in range(300):
        scene = sample_scene(seed, cfg)
        n = len(scene.shapes) + len(scene.texts)
        assert 4 <= n <= 8
        counts.add(n)
        cells = [(o.row, o.col) for o in (*scene.shapes, *scene.texts)]
        assert len(set(cells)) == len(cells)
    assert counts == set(range(4, 9))


def test_png_is_a_valid_image_of_the_requested_size():
    data = render_png(sample_scene(3), 96)
    with Image.open(io.BytesIO(data)) as img:
        assert img.size == (96, 96) and img.mode == "RGB"


@pytest.mark.parametrize("patch", [
    {"background": "magenta"},
    {"pattern": "plaid"},
    {"shapes": [{"shape": "blob", "color": "red", "size": "small", "row": 0, "col": 0}]},
    {"shapes": [{"shape": "star", "color": "red", "size": "small", "row": 0, "col": 0},
                {"shape": "star", "color": "blue", "size": "small", "row": 0, "col": 0}]},
    {"shapes": [{"shape": "star", "color": "red", "size": "small", "row": 5, "col": 0}]},
    {"bars": [{"color": "red", "value": 3}]},
    {"size": 3},
])
def test_bad_scene_graphs_are_refused(patch):
    base = {"kind": "shapes", "background": "white", "pattern": "plain"}
    with pytest.raises(ConfigError):
        Scene.from_dict({**base, **patch})


@pytest.mark.parametrize("kw", [
    {"image_size": 8}, {"min_objects": 5, "max_objects": 4}, {"max_objects": 10}, {"chart_prob": 1.5},
    {"supersample": 7}, {"min_bars": 1},
])
def test_bad_scene_configs_are_refused(kw):
    with pytest.raises(ConfigError):
        SceneConfig(**kw)
