"""The held-out world: shapes, renderer and questions. Every answer is re-derived here from
the picture by an independent reading of the question text."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image

from training.data.heldout import CATEGORIES, draw_item
from training.data.heldout.geometry import CONFUSABLE, SHAPE_NAMES, coverage
from training.data.heldout.palette import COLOR_NAMES, SHADES, distance
from training.data.heldout.render import encode, render

SEED = 11
N = 480  # 60 per question type: drawing without rendering is fast
COLOR_SET = set(COLOR_NAMES)
SHAPE_SET = set(SHAPE_NAMES)


@pytest.fixture(scope="module")
def drawn():
    return [draw_item(SEED, i) for i in range(N)]


# ---- an independent reading of the questions ---------------------------------------------

def _singular(word: str) -> str:
    if word in ("crosses", "ellipses"):
        return word[:-2] if word == "crosses" else word[:-1]
    return word[:-1] if word.endswith("s") and word[:-1] in SHAPE_SET else word


def _words(q: str) -> tuple[list[str], list[str]]:
    tokens = [_singular(t) for t in re.findall(r"[a-z]+", q.lower())]
    return [t for t in tokens if t in COLOR_SET], [t for t in tokens if t in SHAPE_SET]


def _matching(pic, color: str | None, shape: str | None):
    return [f for f in pic.figures if (color is None or f.color == color) and (shape is None or f.shape == shape)]


def _one(pic, color: str | None, shape: str | None):
    found = _matching(pic, color, shape) if (color or shape) else list(pic.figures)
    assert len(found) == 1, f"the referent ({color}, {shape}) picks {len(found)} shapes"
    return found[0]


def _phrases(q: str) -> list[tuple[str | None, str | None]]:
    colors, shapes = "|".join(COLOR_NAMES), "|".join(SHAPE_NAMES)
    out = []
    for m in re.finditer(rf"\bthe (?:({colors}) )?({shapes}|shape)\b", q.lower()):
        out.append((m.group(1), None if m.group(2) == "shape" else m.group(2)))
    return out


def _position(q: str, pic) -> str:
    ql = q.lower()
    horizontal = "left" in ql
    if any(k in ql for k in (" of the ", "relative to", "above or below", "higher or lower")):
        refs = _phrases(ql)
        assert len(refs) == 2, q
        if ql.startswith("relative to"):
            refs.reverse()
        a, b = (_one(pic, *r) for r in refs)
        delta = a.cx - b.cx if horizontal else a.cy - b.cy
        assert abs(delta) > a.radius + b.radius, "the two shapes are not clearly apart"
        if horizontal:
            return "left" if delta < 0 else "right"
        return "above" if delta < 0 else "below"
    refs = _phrases(ql)
    fig = _one(pic, *(refs[0] if refs else (None, None)))
    centre = fig.cx if horizontal else fig.cy
    assert min(centre, pic.size - centre) < 0.4 * pic.size, "the shape is not clearly in one half"
    if horizontal:
        return "left" if centre < pic.size / 2 else "right"
    return "top" if centre < pic.size / 2 else "bottom"


def derive(category: str, q: str, pic) -> str:
    colors, shapes = _words(q)
    color, shape = (colors[0] if colors else None), (shapes[0] if shapes else None)
    if category in ("exists", "negation"):
        found = bool(_matching(pic, color, shape))
        return "yes" if found == (category == "exists") else "no"
    if category == "count":
        return str(len(_matching(pic, color, shape)))
    if category == "color":
        return _one(pic, None, shape).color
    if category == "shape":
        return _one(pic, color, None).shape
    if category == "verify":
        if color and (shape is None or f"{color} shape" in q.lower()) and shape:
            return "yes" if _one(pic, color, None).shape == shape else "no"  # "is the red shape a star"
        if color:
            return "yes" if _one(pic, None, shape).color == color else "no"  # "is the star red"
        return "yes" if _one(pic, None, None).shape == shape else "no"  # "is this a star"
    if category == "position":
        return _position(q, pic)
    if category == "text":
        return pic.word
    raise AssertionError(category)


def test_every_gold_answer_follows_from_the_picture(drawn):
    for pic, asked in drawn:
        assert derive(asked.category, asked.question, pic) == asked.answer, (asked, pic)


def test_questions_never_give_their_answer_away(drawn):
    for _, asked in drawn:
        colors, shapes = _words(asked.question)
        if asked.category == "color":
            assert not colors, asked.question
        if asked.category == "shape":
            assert not shapes, asked.question
        if asked.category == "verify":
            assert len(colors) + len(shapes) <= 2 and len(colors) <= 1 and len(shapes) <= 1, asked.question


def test_no_shape_is_named_beside_one_it_could_be_taken_for(drawn):
    for pic, asked in drawn:
        _, shapes = _words(asked.question)
        present = {f.shape for f in pic.figures}
        for s in shapes:
            assert not (CONFUSABLE.get(s, frozenset()) & present), (asked.question, present)


def test_question_types_take_turns_and_yes_no_is_balanced(drawn):
    counts = Counter(a.category for _, a in drawn)
    assert set(counts) == set(CATEGORIES) and max(counts.values()) - min(counts.values()) <= 1
    yes_no = [a.answer for _, a in drawn if a.category in ("exists", "negation", "verify")]
    assert set(yes_no) == {"yes", "no"} and 0.35 < yes_no.count("yes") / len(yes_no) < 0.65


def test_the_wording_is_the_plain_kind(drawn):
    questions = [a.question for _, a in drawn]
    assert sum(q == q.lower() for q in questions) > 0.6 * len(questions)
    assert sum(not q.endswith("?") for q in questions) > 0.4 * len(questions)
    assert any(q.lower().startswith("is it true that there is no") for q in questions)
    assert any(q.lower().startswith("does the image contain") for q in questions)
    assert any(re.match(r"what is the \w+ shape", q.lower()) for q in questions)


def test_answers_are_in_the_form_asked(drawn):
    for _, a in drawn:
        if a.form == "yesno":
            assert a.answer in ("yes", "no")
        elif a.form == "number":
            assert a.answer.isdigit() and int(a.answer) <= 5
        elif a.form == "color":
            assert a.answer in COLOR_SET
        elif a.form == "shape":
            assert a.answer in SHAPE_SET
        elif a.form == "position":
            assert a.answer in ("left", "right", "top", "bottom", "above", "below")
        assert a.answer not in a.distractors and not set(a.aliases) & set(a.distractors)
        if a.form == "shape":
            assert not CONFUSABLE.get(a.answer, frozenset()) & set(a.distractors)


def test_same_seed_same_items_other_seed_other_items(drawn):
    again = [draw_item(SEED, i)[1] for i in range(40)]
    assert again == [a for _, a in drawn[:40]]
    other = [draw_item(SEED + 1, i)[1].question for i in range(40)]
    assert sum(o != a.question for o, (_, a) in zip(other, drawn[:40], strict=True)) > 30


# ---- drawing ------------------------------------------------------------------------------

def test_anti_aliased_edges_are_partial_and_hard_edges_are_not():
    box = (0, 0, 40, 40)
    soft = coverage("circle", 20.0, 20.0, 15.0, 0.0, box, samples=4)
    hard = coverage("circle", 20.0, 20.0, 15.0, 0.0, box, samples=1)
    assert set(np.unique(hard)) <= {0.0, 1.0}
    assert ((soft > 0) & (soft < 1)).sum() > 40
    assert abs(soft.sum() - np.pi * 15 ** 2) / (np.pi * 15 ** 2) < 0.02


def test_shapes_keep_their_proportions():
    box = (0, 0, 100, 100)

    def extent(shape: str) -> tuple[int, int]:
        m = coverage(shape, 50.0, 50.0, 40.0, 0.0, box, samples=1) > 0.5
        return int(m.any(axis=0).sum()), int(m.any(axis=1).sum())  # width, height

    w, h = extent("rectangle")
    assert 1.9 < w / h < 2.1  # never a square
    w, h = extent("ellipse")
    assert w / h > 1.8  # never a circle
    w, h = extent("square")
    assert w == h
    masks = {s: coverage(s, 50.0, 50.0, 40.0, 0.0, box, samples=1) > 0.5 for s in SHAPE_NAMES}
    for a in SHAPE_NAMES:
        for b in SHAPE_NAMES:
            if a < b:
                assert (masks[a] != masks[b]).sum() > 150, (a, b)


def test_rendered_pictures_show_their_figures_in_their_colours(drawn):
    sizes, kinds, styles = [], set(), set()
    for pic, _ in drawn[:64]:
        clean = replace(pic, noise=0.0)
        img = np.asarray(render(clean))
        assert img.shape == (pic.size, pic.size, 3)
        for f in pic.figures:
            px = img[int(f.cy), int(f.cx)]
            assert distance(tuple(int(v) for v in px), f.rgb) < 12, (f, px)
            assert f.rgb in SHADES[f.color]
        sizes.append(pic.size)
        kinds.add(pic.kind)
        styles.update({pic.background, pic.edges, "jpeg" if pic.jpeg_quality else "png"})
    assert kinds == {"single", "scene", "sign"}
    assert {"flat", "gradient", "blotchy", "anti-aliased", "hard", "jpeg", "png"} <= styles
    all_sizes = [pic.size for pic, _ in drawn]
    assert min(all_sizes) < 40 and max(all_sizes) > 440 and all(32 <= s <= 512 for s in all_sizes)


def test_encoded_files_decode_at_their_size(drawn, tmp_path):
    for pic, _ in drawn[:16]:
        data, ext = encode(pic)
        path = tmp_path / f"x.{ext}"
        path.write_bytes(data)
        with Image.open(path) as im:
            assert im.size == (pic.size, pic.size) and im.format == ("JPEG" if ext == "jpg" else "PNG")
        assert encode(pic) == (data, ext)  # the same bytes again
