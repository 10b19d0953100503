"""The widened training world: everyday layouts, shades, backgrounds, picture sizes and
artefacts, and plainly worded questions answered in the form they ask for."""

from __future__ import annotations

import io
import math
import re
from collections import Counter

import pytest
from PIL import Image

from benchmarks.open_answer import form_ok
from training.data.render import render, render_bytes, shape_geometry
from training.data.sampling import MIN_CONTRAST, sample_scene
from training.data.scene import SceneConfig, background_rgbs, cell_of, shape_rgb
from training.data.vocabulary import COLORS, CONFUSABLE_SHAPES, SHAPES, WORDS

WIDE = SceneConfig(image_size=96, min_size=32, max_size=512, chart_prob=0.0, free_prob=0.6)
EVERYDAY_FORMS = {"is_there": "yesno", "absent": "yesno", "verify": "yesno", "name_color": "color",
                  "name_shape": "shape", "how_many": "number", "side": "position", "relative": "position",
                  "what_word": "text"}


@pytest.fixture(scope="module")
def scenes():
    return [sample_scene(seed, WIDE) for seed in range(600)]


def test_every_layout_is_drawn_and_placed_consistently(scenes):
    layouts = Counter(s.layout for s in scenes)
    assert set(layouts) == {"grid", "single", "few", "sign"}
    for scene in scenes:
        if scene.layout == "grid":
            continue
        if scene.layout == "single":
            assert len(scene.shapes) == 1 and scene.shapes[0].r >= 0.15 and not scene.texts
        if scene.layout == "few":
            assert 2 <= len(scene.shapes) <= 5 and not scene.texts
            for i, a in enumerate(scene.shapes):  # placed freely, never overlapping
                for b in scene.shapes[i + 1:]:
                    assert math.dist((a.x, a.y), (b.x, b.y)) > a.r + b.r
        if scene.layout == "sign":
            (t,) = scene.texts
            assert t.h > 0 and t.text.lower() in WORDS
        for s in scene.shapes:
            assert s.r <= s.x <= 1 - s.r and s.r <= s.y <= 1 - s.r  # inside the picture
            assert cell_of(s.x, s.y) == (s.row, s.col)


def test_shapes_stand_out_from_their_background(scenes):
    for scene in scenes:
        for s in scene.shapes:
            for tint in background_rgbs(scene):
                assert math.dist(shape_rgb(s), tint) >= MIN_CONTRAST - 1, (scene.background, s)


def test_every_colour_and_shape_name_is_used_in_shades(scenes):
    shapes = [s for scene in scenes for s in scene.shapes]
    assert {s.color for s in shapes} == set(COLORS)
    assert {s.shape for s in shapes} == set(SHAPES)
    shades = {s.rgb for s in shapes if s.color == "red"}
    assert len(shades) > 20  # pure, muted, lighter, darker, each jittered


def test_pictures_come_in_many_sizes_with_enough_pixels_per_shape(scenes):
    sizes = [s.size for s in scenes]
    assert min(sizes) < 48 and max(sizes) > 400
    for scene in scenes:
        for s in scene.shapes:
            if s.r > 0:
                assert s.r * scene.size >= 7.9, (scene.size, s)


def test_free_shapes_are_drawn_in_their_shade_where_the_graph_puts_them(scenes):
    checked = 0
    for scene in scenes[:250]:
        if scene.layout == "grid" or scene.noise:
            continue
        img = render(scene, 96)
        for s in scene.shapes:
            x, y, _ = shape_geometry(s, img.size[0])
            assert img.getpixel((int(x), int(y))) == shape_rgb(s), s
            checked += 1
    assert checked > 50


def test_jpeg_pictures_are_written_as_jpeg_of_their_size(scenes):
    jpeg = [s for s in scenes if s.jpeg][:10]
    assert jpeg
    for scene in jpeg:
        data, ext = render_bytes(scene, 96)
        assert ext == "jpg"
        with Image.open(io.BytesIO(data)) as img:
            assert img.format == "JPEG" and img.size == (scene.size, scene.size)


@pytest.fixture(scope="module")
def everyday_records(all_records):
    return [r for r in all_records if r["qtype"] in EVERYDAY_FORMS]


def test_everyday_questions_are_answered_in_the_form_they_ask_for(everyday_records):
    assert len(everyday_records) > 800
    assert {r["qtype"] for r in everyday_records} == set(EVERYDAY_FORMS)
    for rec in everyday_records:
        item = {**rec, "options": None, "answer": rec["answer_text"], "form": EVERYDAY_FORMS[rec["qtype"]]}
        assert form_ok(rec["answer_text"], item), (rec["qtype"], rec["question"], rec["answer_text"])


def test_questions_are_typed_as_people_type_them(all_records):
    texts = [r["question"] for r in all_records]
    lower = sum(1 for t in texts if t[0].islower()) / len(texts)
    no_mark = sum(1 for t in texts if not t.endswith(("?", "."))) / len(texts)
    assert 0.4 < lower < 0.6 and 0.15 < no_mark < 0.35
    assert any(re.search(r"\bgray\b", t) for t in texts) and any(re.search(r"\boval\b", t) for t in texts)


def test_synonyms_are_accepted_answers(all_records):
    for rec in all_records:
        if rec["qtype"] in ("name_color", "name_shape") and rec["answer_text"] in ("grey", "ellipse", "diamond"):
            assert {"grey": "gray", "ellipse": "oval", "diamond": "rhombus"}[rec["answer_text"]] in rec["aliases"]


def test_look_alike_shapes_are_never_the_wrong_answer(all_records, scene_json):
    """A square is a rectangle to a strict reader: no question makes one the wrong answer
    for the other, and none asks about one when its look-alike is in the picture and absent."""
    for rec in all_records:
        q = rec["query"]
        if q["type"] == "verify" and q["attr"] == "shape" and rec["answer_text"] == "no":
            actual = [s for s in scene_json[rec["scene_id"]]["shapes"] if all(s[k] == v for k, v in q["target"].items())]
            assert (actual[0]["shape"], q["value"]) not in CONFUSABLE_SHAPES
        if rec["qtype"] in ("is_there", "absent") and "shape" in q["filter"]:
            shapes = {s["shape"] for s in scene_json[rec["scene_id"]]["shapes"]}
            if q["filter"]["shape"] not in shapes:
                assert not any((q["filter"]["shape"], s) in CONFUSABLE_SHAPES for s in shapes), rec["question"]


def test_a_lone_shape_is_asked_about_without_naming_it(everyday_records):
    """"what colour is it": the focus is the object's colour, not a written number's."""
    alone = [r for r in everyday_records if r["qtype"] == "name_color" and not r["query"]["target"]]
    unnamed = [r for r in alone if re.search(r"\b(it|this|shown|drawn|see|here)\b", r["question"], re.I)]
    assert unnamed and len(unnamed) < len(alone)
    assert {r["focus"] for r in unnamed} == {"the colour of the object"}


def test_negations_come_in_many_wordings_and_keep_their_answer(everyday_records):
    absent = [r for r in everyday_records if r["qtype"] == "absent"]
    frames = {r["question"].lower().split(" that ")[0] for r in absent if " that " in r["question"]}
    assert len(frames) >= 6
    for r in absent:  # "no" exactly when the asked thing is there
        assert (r["answer_text"] == "no") == ("So there is" in r["thinking"]), r["question"]


def test_plural_synonyms_are_spelled_right(all_records):
    texts = " ".join(r["question"] for r in all_records)
    assert "rhombuss" not in texts and "ovalss" not in texts
