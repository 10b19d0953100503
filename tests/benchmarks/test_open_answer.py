"""Open-answer scoring: normalising, synonyms only, the right form, the majority baseline."""

from __future__ import annotations

import pytest

from benchmarks.accuracy import EvalItem
from benchmarks.open_answer import (
    CATEGORY_FORMS,
    COLOR_WORDS,
    SHAPE_WORDS,
    answer_form,
    form_ok,
    majority_baseline,
    normalise,
    score,
    score_records,
    scores_markdown,
)
from benchmarks.stats import wilson_interval
from runtime.errors import ConfigError
from training.data.heldout import FORMS
from training.data.heldout.geometry import SHAPE_ALIASES, SHAPE_NAMES
from training.data.heldout.palette import COLOR_ALIASES, COLOR_NAMES


@pytest.mark.parametrize(("text", "expected"), [
    ("The Circles.", "circle"), ("an Orange star!", "orange star"), ("Two", "2"), ("crosses", "cross"),
    ("ellipses", "ellipse"), ("boxes", "box"), ("yes", "yes"), ("Yes.", "yes"), ("  NO ", "no"),
    ("this", "this"), ("grass", "grass"), ("berries", "berry"), ("3 squares", "3 square"), ("", ""),
])
def test_normalise(text, expected):
    assert normalise(text) == expected


def _open(answer, category, aliases=()):
    return EvalItem("q", "?", answer, None, category, None, tuple(aliases))


@pytest.mark.parametrize(("pred", "gold", "aliases", "right"), [
    ("red", "red", (), True), ("Red.", "red", (), True), ("the red", "red", (), True),
    ("not red", "red", (), False), ("red circle", "red", (), False), ("dark red", "red", (), False),
    ("gray", "grey", ("gray",), True), ("grey", "grey", (), True), ("gray", "grey", (), False),
    ("small black circle", "yes", (), False), ("yes, there is", "yes", (), False), ("YES", "yes", (), True),
    ("two", "2", ("two",), True), ("2", "2", (), True), ("three", "2", (), False), ("none", "0", ("none",), True),
    ("Circles", "circle", (), True), ("an oval", "ellipse", ("oval",), True), ("box", "square", (), False),
    ("", "yes", (), False), (None, "yes", (), False),
])
def test_score_accepts_the_gold_or_a_listed_synonym_only(pred, gold, aliases, right):
    assert score(pred, _open(gold, "x", aliases)) is right


def test_score_multiple_choice():
    item = EvalItem("q", "?", "B", ("red", "blue", "green"), "color")
    for pred in ("B", "b", "(B)", "B.", "blue", "The blue", "B. blue"):
        assert score(pred, item), pred
    for pred in ("A", "D", "red", "B. red", "blue or green", "", None):
        assert not score(pred, item), pred
    assert score("b", {"answer": "B", "options": ["red", "blue"], "category": "color"})


@pytest.mark.parametrize(("pred", "category", "ok"), [
    ("yes", "exists", True), ("No.", "negation", True), ("small black circle", "exists", False),
    ("0", "verify", False), ("red", "color", True), ("Light Blue", "color", True), ("no", "color", False),
    ("red circle", "color", False), ("hexagon", "shape", True), ("Ovals", "shape", True), ("red", "shape", False),
    ("3", "count", True), ("three", "count", True), ("many", "count", False), ("left", "position", True),
    ("purple square", "position", False), ("stop", "text", True), ("the word stop", "text", False),
    (None, "exists", False),
])
def test_form_ok(pred, category, ok):
    assert form_ok(pred, _open("whatever", category)) is ok


def test_answer_form_from_the_item():
    assert answer_form({"answer": "x", "form": "color", "category": "odd"}) == "color"
    assert answer_form(_open("yes", "other")) == "yesno"
    assert answer_form(_open("Two", "other")) == "number"
    assert answer_form(_open("blue", "other")) == "color"
    assert answer_form(_open("stop", "other")) == "text"
    mc = EvalItem("q", "?", "A", ("x", "y"), "exists")
    assert answer_form(mc) == "choice" and form_ok("A", mc) and not form_ok("C", mc) and not form_ok("yes", mc)


def test_the_form_vocabulary_covers_the_held_out_world():
    assert CATEGORY_FORMS == FORMS
    assert set(COLOR_NAMES) | {a for v in COLOR_ALIASES.values() for a in v} <= COLOR_WORDS
    assert set(SHAPE_NAMES) | {a for v in SHAPE_ALIASES.values() for a in v} <= SHAPE_WORDS


def _items(golds):
    return [_open(g, cat) for cat, g in golds]


def test_majority_baseline_is_counted_on_the_reference_not_the_items():
    reference = _items([("exists", "no")] * 6 + [("exists", "yes")] * 4 + [("count", "1")] * 3 + [("count", "2")])
    items = _items([("exists", "yes")] * 7 + [("exists", "no")] * 3 + [("count", "2")] * 4 + [("count", "1")])
    b = majority_baseline(items, reference=reference)
    assert b["categories"]["exists"]["answer"] == "no"  # the items' own majority would be "yes"
    assert b["categories"]["exists"]["correct"] == 3 and b["categories"]["exists"]["n"] == 10
    assert b["categories"]["count"]["answer"] == "1" and b["categories"]["count"]["correct"] == 1
    assert b["overall"]["correct"] == 4 and b["overall"]["n"] == 15
    assert b["overall"]["ci95"] == list(wilson_interval(4, 15))
    assert b["reference_n"] == 14


def test_majority_baseline_multiple_choice_picks_the_option_reading_as_the_majority():
    reference = [EvalItem(f"r{i}", "?", "A", ("red", "blue"), "color") for i in range(3)] + \
        [EvalItem("r9", "?", "B", ("red", "blue"), "color")]
    items = [EvalItem("a", "?", "B", ("blue", "red"), "color"), EvalItem("b", "?", "A", ("blue", "red"), "color"),
             EvalItem("c", "?", "A", ("green", "pink"), "color")]
    b = majority_baseline(items, reference=reference)
    # majority text "red": item a -> B (right), b -> B (wrong); c has no "red": the reference's letter A (right)
    assert b["categories"]["color"]["correct"] == 2


def test_score_records_per_type_with_intervals_and_the_baseline():
    items = [_open("yes", "exists"), _open("red", "color"), _open("2", "count")]
    items = [EvalItem(f"i{k}", it.question, it.answer, None, it.category) for k, it in enumerate(items)]
    records = [{"id": "i0", "prediction": "small black circle"}, {"id": "i1", "prediction": "Red"},
               {"id": "i2", "prediction": None}, {"id": "other", "prediction": "x"}]
    s = score_records(items, records, reference=items)
    assert s["categories"]["exists"]["correct"] == 0 and s["categories"]["exists"]["form"]["correct"] == 0
    assert s["categories"]["color"]["correct"] == 1 and s["categories"]["color"]["form"]["correct"] == 1
    assert s["overall"]["correct"] == 1 and s["overall"]["n"] == 3
    assert s["overall"]["form"]["ci95"] == list(wilson_interval(1, 3))
    assert s["baseline"]["overall"]["correct"] == 3
    table = scores_markdown(s, "t")
    assert "| color | 1 | 100.0" in table and "**overall**" in table
    assert s["overall"]["chance"] is None and "chance" not in table
    with pytest.raises(ConfigError, match="cover 2 of 3"):
        score_records(items, records[:2])


def test_score_records_multiple_choice_reports_chance():
    items = [EvalItem("a", "?", "A", ("yes", "no"), "exists"), EvalItem("b", "?", "C", ("1", "2", "3", "4"), "count")]
    s = score_records(items, [{"id": "a", "prediction": "A"}, {"id": "b", "prediction": "yes"}])
    assert s["categories"]["exists"]["chance"] == 0.5 and s["categories"]["count"]["chance"] == 0.25
    assert s["overall"]["chance"] == 0.375 and s["overall"]["correct"] == 1 and s["overall"]["form"]["correct"] == 1
    assert "| **overall** | 2 | 50.0 (9.5–90.5) | 50.0 (9.5–90.5) | – | 37.5 |" in scores_markdown(s)
