"""`edge train default-bundle` end to end at toy scale: data, tokenizer, every stage,
export, evaluation with the runtime, the accuracy table, and the installed bundle."""

from __future__ import annotations

import json

import pytest

from edge.recipes.default_bundle.run import DataPlan, DefaultBundleRun, regenerate

TINY = [f"stages.{s}.steps=2" for s in ("vision", "align", "instruct", "extract", "reasoner", "caption", "e2e")] + [
    "perception.vision=siglip-tiny", "perception.text=qwen3-tiny", "reasoner.text=qwen3-tiny", "threads=1",
]


@pytest.mark.slow
def test_regenerate_at_toy_scale(tmp_path):
    pytest.importorskip("llama_cpp")
    run = DefaultBundleRun(work=tmp_path / "work", out=tmp_path / "bundle", results=tmp_path / "results",
                           overrides=tuple(TINY), data=DataPlan(train=12, val=0, test=4, test_iid=2),
                           tokenizer_vocab=400)
    report = regenerate(run)
    assert (tmp_path / "bundle" / "manifest.json").is_file()
    manifest = json.loads((tmp_path / "bundle" / "manifest.json").read_text())
    assert set(manifest["models"]) == {"perception", "reasoner"}
    for name in ("default-bundle-accuracy.md", "default-bundle-accuracy.json", "default-bundle-accuracy.png"):
        assert (tmp_path / "results" / name).is_file()
    table = (tmp_path / "results" / "default-bundle-accuracy.md").read_text()
    assert "Extract+Think" in table and "chance" in table
    scores = report["accuracy"]["splits"]
    assert set(scores) == {"test", "test_iid"}
    assert set(scores["test"]) == {"chance", "extract-think", "caption-think", "end-to-end"}
    assert set(report["timings_s"]) >= {"data", "tokenizer", "stage vision", "stage reasoner", "export", "evaluate"}
    again = regenerate(run)  # everything is done: nothing is retrained
    assert all(v < 60 for k, v in again["timings_s"].items() if k.startswith("stage"))
