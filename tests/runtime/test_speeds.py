"""Deadline mode's first speeds: probed and estimated, then remembered per machine and model."""

from __future__ import annotations

import json

import numpy as np
import pytest

from runtime.deadline import Throughput
from runtime.defaults import default_bundle_path
from runtime.manifest import example_options
from runtime.pipeline import ExtractThink
from runtime.speeds import SpeedStore, cache_dir, machine_id

OPTIONS = ["one", "two", "three"]


@pytest.fixture(autouse=True)
def private_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache" / "extract-think-edge" / "speeds.json"


@pytest.fixture(scope="module")
def example():
    root = default_bundle_path()
    ex = json.loads((root / "manifest.json").read_text())["examples"][0]
    return str(root / ex["image"]), ex["question"], list(example_options(ex)) or None


@pytest.mark.parametrize("backend", ["llamacpp", "onnx"])
def test_first_deadline_run_on_the_default_bundle_keeps_every_budget(example, backend, private_cache):
    image, question, options = example
    with ExtractThink.load(None, backend=backend) as et:
        assert et.speeds() == {}  # nothing measured, remembered or given
        budgets = et.bundle.manifest.budgets
        result = et.answer(image, question, options, deadline_s=10)
        assert result.hint is not None and "hint" in result.stages
        assert result.budgets == {"hint": budgets.hint, "extraction": budgets.extraction,
                                  "thinking": budgets.thinking, "answer": budgets.answer}
        assert result.answer_found
        # An impossible deadline: every stage at its floor, and still an answer line.
        rushed = et.answer(image, question, options, deadline_s=1e-3)
        assert "hint" not in rushed.stages and rushed.budgets["thinking"] == 0
        assert rushed.answer_found and "answer:" in rushed.answer_text.lower()
    # What the runs measured is remembered for the next process on this machine.
    assert private_cache.parent == cache_dir() and private_cache.is_file()
    remembered = json.loads(private_cache.read_text())["speeds"]
    assert {k.split("|")[0] for k in remembered} == {machine_id().split("|")[0]} and len(remembered) == 2
    with ExtractThink.load(None, backend=backend) as again:
        assert set(again.speeds()) == {"perception", "reasoner"}
        assert all(t.decode_tps > 8.0 for t in again.speeds().values())  # not the pessimistic default


def test_sequential_residency_estimates_the_unloaded_model(rt_bundle, tmp_path):
    image = (np.random.default_rng(2).random((40, 40, 3)) * 255).astype(np.uint8)
    with ExtractThink.load(rt_bundle, backend="onnx", threads=1, residency="sequential", speed_cache=False) as et:
        assert et.loaded_roles() == ("reasoner",)
        result = et.answer(image, "Which shape?", OPTIONS, deadline_s=30)
        first_plan = next(e for e in result.budget_events if e.kind == "deadline_plan")
        defaults = et.bundle.manifest.budgets
        assert first_plan.detail.endswith(f"hint {defaults.hint}, extraction {defaults.extraction}, "
                                          f"thinking {defaults.thinking}, answer {defaults.answer}")
    assert not (tmp_path / "cache").exists()  # speed_cache=False writes nothing


def test_a_given_prior_and_a_private_store(rt_bundle, tmp_path):
    slow = {"reasoner": Throughput(50.0, 5.0), "perception": Throughput(50.0, 5.0, 1.0)}
    path = tmp_path / "speeds.json"
    with ExtractThink.load(rt_bundle, backend="onnx", threads=1, prior=slow, speed_cache=path) as et:
        assert et.speeds() == slow  # nothing remembered yet: the prior
        et.answer(None, "Which shape?", OPTIONS, mode="blind", thinking_budget=8, answer_budget=4)
    with ExtractThink.load(rt_bundle, backend="onnx", threads=1, prior=slow, speed_cache=path) as et:
        assert et.speeds()["reasoner"] != slow["reasoner"]  # the remembered measurement wins
        assert et.speeds()["perception"] == slow["perception"]  # never measured


@pytest.mark.parametrize("content", ["{not json", '{"version": 99, "speeds": {}}', '{"version": 1, "speeds": 3}',
                                     '{"version": 1, "speeds": {"x": {"prefill_tps": -1}}}'])
def test_unreadable_remembered_speeds_are_ignored(tmp_path, content):
    path = tmp_path / "speeds.json"
    path.write_text(content)
    store = SpeedStore(path)
    assert store.get("x") is None
    store.put({"y": Throughput(10.0, 2.0, 0.5)})
    assert store.get("y") == Throughput(10.0, 2.0, 0.5)
