"""Trained checkpoints export to bundles the runtime runs; scoring, chance and the table."""

from __future__ import annotations

import json

import pytest

from edge.recipes.default_bundle.bundles import export_system
from edge.recipes.default_bundle.evaluate import run_system
from edge.recipes.default_bundle.report import plot_scores, table_markdown
from edge.recipes.default_bundle.scoring import chance_of, is_correct, majority_answers, summarize
from tests.training.helpers import tiny_recipe_data
from training.config import recipe_from_data
from training.data.synth import SynthDataset
from training.loop import train_stage


def test_scoring_rules():
    mc = {"options": ["red", "blue", "green"], "answer": "B", "qtype": "attr"}
    assert is_correct(mc, "B") and is_correct(mc, "b ") and not is_correct(mc, "A") and not is_correct(mc, None)
    open_q = {"options": None, "answer": "three", "aliases": ["3"], "qtype": "count"}
    assert is_correct(open_q, "3") and is_correct(open_q, "Three.") and not is_correct(open_q, "4")
    train = [{"options": None, "answer": a, "qtype": "count"} for a in ("2", "2", "3")]
    majority = majority_answers(train)
    assert majority == {"count": "2"}
    assert chance_of(mc, majority) == pytest.approx(1 / 3)
    assert chance_of({"options": None, "answer": "2", "qtype": "count"}, majority) == 1.0
    assert chance_of(open_q, majority) == 0.0
    rows = [{"category": "math", "correct": True}, {"category": "math", "correct": False},
            {"category": "grounding", "correct": True}]
    s = summarize(rows, "correct")
    assert s["math"] == {"accuracy": 50.0, "n": 2} and s["overall"]["accuracy"] == pytest.approx(200 / 3)


def test_table_and_chart(tmp_path):
    cat = {"math": {"accuracy": 50.0, "n": 2}, "overall": {"accuracy": 50.0, "n": 2}}
    scores = {"splits": {"test": {m: cat for m in ("chance", "end-to-end", "caption-think", "extract-think")}}}
    table = table_markdown(scores)
    assert "| math | 2 | 50.0 | 50.0 | 50.0 | 50.0 |" in table and "Extract+Think" in table
    assert plot_scores(scores, tmp_path / "c.png").stat().st_size > 1000


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
