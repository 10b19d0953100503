"""`edge train default-bundle` end to end at toy scale: data, tokenizer, every stage,
export, evaluation with the runtime, the accuracy table, the bundle in the run folder, and
installing it only when asked."""

from __future__ import annotations

import dataclasses
import json

import pytest

from edge.recipes.default_bundle.config import (
    BASELINE_STAGES,
    BUNDLE_STAGES,
    DataPlan,
    DefaultBundleRun,
    HeldoutPlan,
)
from edge.recipes.default_bundle.run import regenerate

TINY = [f"stages.{s}.steps=2" for s in (*BUNDLE_STAGES, *BASELINE_STAGES)] + [
    "perception.vision=siglip-tiny", "perception.text=qwen3-tiny", "reasoner.text=qwen3-tiny", "threads=1",
]
RESULTS = ("default-bundle-accuracy.md", "default-bundle-accuracy.json", "default-bundle-accuracy.png")


@pytest.mark.slow
def test_regenerate_at_toy_scale(tmp_path):
    pytest.importorskip("llama_cpp")
    shipped, docs = tmp_path / "shipped", tmp_path / "docs-results"
    run = DefaultBundleRun(out=tmp_path / "run", install_bundle_to=shipped, install_results_to=docs,
                           overrides=tuple(TINY), data=DataPlan(train=12, val=0, test=4, test_iid=2),
                           heldout=HeldoutPlan(n=8, seed=5), tokenizer_vocab=400)
    report = regenerate(run)
    manifest = json.loads((run.bundle_dir / "manifest.json").read_text())
    assert set(manifest["models"]) == {"perception", "reasoner"}
    assert report["bundle"] == str(run.bundle_dir)
    for name in RESULTS:
        assert (run.results_dir / name).is_file()
    table = (run.results_dir / "default-bundle-accuracy.md").read_text()
    assert "Extract+Think" in table and "chance" in table
    scores = report["accuracy"]["splits"]
    assert set(scores) == {"test", "test_iid"}
    assert set(scores["test"]) == {"chance", "extract-think", "caption-think", "end-to-end"}
    held = report["accuracy"]["heldout"]
    assert set(held) == {"heldout-open", "heldout-mc"}
    assert held["heldout-open"]["systems"]["extract-think"]["overall"]["n"] == 8
    assert "held-out world, open answers" in table and "majority baseline" in table
    assert set(report["timings_s"]) >= {"data", "tokenizer", "stage vision", "stage reasoner", "export", "evaluate"}
    assert report["skipped"] == []
    # without --install nothing outside the run folder is written
    assert not shipped.exists() and not docs.exists() and "installed" not in report

    again = regenerate(run)  # everything is done: nothing is retrained, exported or evaluated again
    stages = [f"stage {s}" for s in (*BUNDLE_STAGES, *BASELINE_STAGES)]
    assert set(again["skipped"]) == {"data", "heldout data", "tokenizer", *stages, "export", "evaluate", "bundle"}

    installed = regenerate(dataclasses.replace(run, install=True))
    assert installed["installed"] == {"bundle": str(shipped), "results": str(docs)}
    assert json.loads((shipped / "manifest.json").read_text()) == manifest
    for name in RESULTS:
        assert (docs / name).read_bytes() == (run.results_dir / name).read_bytes()
