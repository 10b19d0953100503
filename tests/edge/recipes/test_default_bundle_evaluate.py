"""Trained checkpoints export to bundles the runtime runs; scoring, chance and the table."""

from __future__ import annotations

import json

import pytest

from edge.recipes.default_bundle.bundles import export_system
from edge.recipes.default_bundle.evaluate import heldout_scores, run_system
from edge.recipes.default_bundle.heldout_report import heldout_markdown
from edge.recipes.default_bundle.report import plot_scores, table_markdown
from edge.recipes.default_bundle.scoring import (
    chance_of,
    is_correct,
    majority_answers,
    paired_difference,
    right_form,
    summarize,
    wording_key,
)
from tests.training.helpers import tiny_recipe_data
from training.config import recipe_from_data
from training.data.synth import SynthDataset
from training.loop import train_stage


def test_scoring_rules():
    mc = {"options": ["red", "blue", "green"], "answer": "B", "qtype": "attr"}
    assert is_correct(mc, "B") and is_correct(mc, "b ") and not is_correct(mc, "A") and not is_correct(mc, None)
    open_q = {"options": None, "answer": "three", "aliases": ["3"], "qtype": "count"}
    assert is_correct(open_q, "3") and is_correct(open_q, "Three.") and not is_correct(open_q, "4")
    # open answers: case, articles and plurals normalised, listed synonyms only, no substring credit
    shape_q = {"options": None, "answer": "ellipse", "aliases": ["oval"], "category": "shape"}
    assert is_correct(shape_q, "An Oval") and is_correct(shape_q, "ellipses") and not is_correct(shape_q, "circle")
    color_q = {"options": None, "answer": "red", "aliases": [], "category": "color"}
    assert not is_correct(color_q, "dark red") and not is_correct(color_q, "not red")
    assert is_correct(mc, "blue") and not is_correct(mc, "blue or red")
    yes_no = {"options": None, "answer": "yes", "category": "exists"}
    assert right_form(yes_no, "No") and not right_form(yes_no, "small black circle")
    train = [{"options": None, "answer": a, "qtype": "count"} for a in ("2", "2", "3")]
    majority = majority_answers(train)
    assert majority == {"count": "2"}
    assert chance_of(mc, majority) == pytest.approx(1 / 3)
    assert chance_of({"options": None, "answer": "2", "qtype": "count"}, majority) == 1.0
    assert chance_of(open_q, majority) == 0.0
    rows = [{"category": "math", "correct": True}, {"category": "math", "correct": False},
            {"category": "grounding", "correct": True}]
    s = summarize(rows, "correct")
    assert (s["math"]["accuracy"], s["math"]["n"]) == (50.0, 2) and s["overall"]["accuracy"] == pytest.approx(200 / 3)
    lo, hi = s["math"]["ci95"]
    assert 0 < lo < 50 < hi < 100


def test_paired_difference_separates_what_differs_and_not_what_does_not():
    a = [True] * 60 + [False] * 40
    same = paired_difference(a, list(a))
    assert same["diff"] == 0 and same["ci95"] == [0.0, 0.0] and same["discordant"] == 0
    better = paired_difference(a, [True] * 30 + [False] * 70)
    assert better["diff"] == pytest.approx(30.0) and better["ci95"][0] > 15 and better["discordant"] == 30
    with pytest.raises(ValueError):
        paired_difference(a, a[:10])


def test_heldout_scores_and_table():
    items = [{"id": f"h{i}", "answer": ans, "aliases": [], "options": None, "category": cat}
             for i, (cat, ans) in enumerate([("exists", "yes"), ("exists", "no"), ("color", "red"), ("color", "blue")])]
    reference = [{"id": "r0", "answer": "no", "category": "exists"}, {"id": "r1", "answer": "red", "category": "color"}]
    answers = {"extract-think": ["yes", "no", "red", "red"], "end-to-end": ["small circle", "no", "blue", "blue"]}
    rows = {m: [{"id": it["id"], "category": it["category"], "answer": a, "correct": is_correct(it, a),
                 "form_ok": right_form(it, a)} for it, a in zip(items, ans, strict=True)] for m, ans in answers.items()}
    h = heldout_scores(items, rows, reference)
    assert h["systems"]["extract-think"]["overall"]["accuracy"] == 0.75
    assert h["systems"]["end-to-end"]["categories"]["exists"]["form"]["accuracy"] == 0.5
    assert h["yesno_form"]["end-to-end"] == {"n": 2, "rate": 50.0}
    assert h["baseline"]["categories"]["color"]["answer"] == "red"
    assert h["paired"]["end-to-end"]["diff"] == pytest.approx(25.0)
    table = heldout_markdown({"heldout": {"heldout-open": h}})
    assert "| color | 2 | 50.0" in table and "majority baseline" in table and "answered `yes` or `no`" in table
    assert "training question" not in table


def test_heldout_accuracy_is_split_by_whether_training_asked_it_that_way():
    questions = ["Is there a red star?", "any circles here", "what colour is the heart", "What color is it?"]
    items = [{"id": f"h{i}", "answer": ans, "aliases": [], "options": None, "category": cat, "question": q}
             for i, ((cat, ans), q) in enumerate(zip([("exists", "yes"), ("exists", "no"), ("color", "red"),
                                                      ("color", "blue")], questions, strict=True))]
    reference = [{"id": "r0", "answer": "no", "category": "exists"}, {"id": "r1", "answer": "red", "category": "color"}]
    rows = {"extract-think": [{"id": it["id"], "category": it["category"], "answer": a, "correct": is_correct(it, a),
                               "form_ok": right_form(it, a)} for it, a in zip(items, ["yes", "yes", "red", "red"],
                                                                              strict=True)]}
    assert wording_key("Is there a blue circle") == wording_key("is there an orange OVAL?") == "is there a X X"
    trained = {wording_key("Is there a blue hexagon?"), wording_key("What colour is the star?")}
    w = heldout_scores(items, rows, reference, trained)["wording"]["extract-think"]
    assert (w["seen"]["n"], w["seen"]["accuracy"]) == (2, 100.0)
    assert (w["unseen"]["n"], w["unseen"]["accuracy"]) == (2, 0.0)
    table = heldout_markdown({"heldout": {"heldout-open": heldout_scores(items, rows, reference, trained)}})
    assert "n = 2) / the rest (n = 2), accuracy %: Extract+Think 100.0 / 0.0" in table


def test_table_and_chart(tmp_path):
    cat = {"math": {"accuracy": 50.0, "n": 2}, "overall": {"accuracy": 50.0, "n": 2}}
    scores = {"splits": {"test": {m: cat for m in ("chance", "end-to-end", "caption-think", "extract-think")}}}
    table = table_markdown(scores)
    assert "| math | 2 | 50.0 | 50.0 | 50.0 | 50.0 |" in table and "Extract+Think" in table
    assert plot_scores(scores, tmp_path / "c.png").stat().st_size > 1000


def test_evaluation_rows_resume_after_an_interruption(tmp_path, synth_dir, synth_tokenizer_dir):
    """Rows are appended as they come: a second run answers only what is missing."""
    pytest.importorskip("llama_cpp")
    stages = {"align": {"steps": 1}, "instruct": {"steps": 1}}
    recipe = recipe_from_data(tiny_recipe_data(tmp_path / "run", synth_dir, synth_tokenizer_dir, stages))
    for name in stages:
        train_stage(recipe, name)
    e2e = export_system(recipe, "instruct", None, tmp_path / "e2e", quants=("f32",), verify=False)
    records = list(SynthDataset(synth_dir).records("test"))[:3]
    out = tmp_path / "rows.jsonl"
    first = run_system(e2e, "end-to-end", records[:2], synth_dir, out=out)
    out.write_text(out.read_text() + '{"id": "torn')  # a kill mid-write
    again = run_system(e2e, "end-to-end", records, synth_dir, out=out)
    assert [r["id"] for r in again] == [r["id"] for r in records]
    assert again[:2] == first and len(out.read_text().splitlines()) == 3


def test_exported_checkpoints_run_in_the_runtime(tmp_path, synth_dir, synth_tokenizer_dir):
    pytest.importorskip("llama_cpp")
    stages = {"align": {"steps": 2}, "instruct": {"steps": 2}, "extract": {"steps": 2}, "reasoner": {"steps": 2}}
    recipe = recipe_from_data(tiny_recipe_data(tmp_path / "run", synth_dir, synth_tokenizer_dir, stages))
    for name in stages:
        train_stage(recipe, name)
    bundle = export_system(recipe, "extract", "reasoner", tmp_path / "b", quants=("f32",))
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert set(manifest["models"]) == {"perception", "reasoner"}
    records = list(SynthDataset(synth_dir).records("test"))[:2]
    rows = run_system(bundle, "extract-think", records, synth_dir)
    assert [r["id"] for r in rows] == [r["id"] for r in records]
    for rec, row in zip(records, rows, strict=True):
        # each row is scored against its own record's gold answer (and carries its category)
        assert row["correct"] is is_correct(rec, row["answer"])
        assert (row["category"], row["qtype"]) == (rec["category"], rec["qtype"])
        # every Extract+Think stage ran (an untrained model's hint may be unusable, so the
        # stages are read from their token counts)
        assert all(row["tokens"][stage] > 0 for stage in ("hint", "extraction", "thinking")), row["tokens"]
        assert row["extraction"] is not None and row["thinking"] is not None
    e2e = export_system(recipe, "instruct", None, tmp_path / "e2e", quants=("f32",))
    rows = run_system(e2e, "end-to-end", records, synth_dir)
    assert len(rows) == 2
    for rec, row in zip(records, rows, strict=True):
        assert row["correct"] is is_correct(rec, row["answer"])
        assert row["extraction"] is None and "extraction" not in row["tokens"]
