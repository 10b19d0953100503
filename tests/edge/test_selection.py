"""Choosing backend, quantization and settings from a profile, a bundle and the machine."""

from __future__ import annotations

import dataclasses

import pytest

from edge.device import detect
from edge.plan import ProfileResolution, load_pipeline, make_plan, resolve_profile, stream_kwargs
from edge.profiles import load_profile
from edge.selection import select
from runtime.bundle import read_manifest
from runtime.errors import BackendUnavailableError
from runtime.manifest import Budgets


def test_preference_order_and_missing_libraries(edge_bundle_dir):
    m = read_manifest(edge_bundle_dir)
    laptop = load_profile("laptop")
    assert select(laptop, m).backend == "llamacpp"
    sel = select(laptop, m, installed={"onnx"})
    assert sel.backend == "onnx" and sel.quants == {"perception": "fp32", "reasoner": "fp32"}
    assert sel.passed_over == ("llamacpp: llama_cpp is not installed",)
    with pytest.raises(BackendUnavailableError) as info:
        select(laptop, m, installed=set())
    assert "pip install -e '.[llamacpp]' from the extract-think-edge checkout" in str(info.value)
    assert select(laptop, m, backend="onnx").format == "onnx"


def test_plan_caps_budgets_and_threads_by_bundle_and_machine(edge_bundle_dir):
    info = detect()
    bundle_budgets = read_manifest(edge_bundle_dir).budgets
    plan = make_plan(edge_bundle_dir, resolve_profile("laptop"), info)
    assert plan.budgets == bundle_budgets  # the tiny bundle's budgets are below the laptop's
    pi4 = dataclasses.replace(load_profile("raspberry-pi-4"),
                              budgets=Budgets(hint=2, extraction=100, thinking=3, answer=5, non_thinking_answer=7),
                              threads=64)
    plan = make_plan(edge_bundle_dir, ProfileResolution(pi4, "test"), info)
    assert (plan.budgets.hint, plan.budgets.thinking, plan.budgets.answer) == (2, 3, 5)
    assert plan.budgets.extraction == bundle_budgets.extraction  # min(100, bundle's 12)
    assert plan.threads == info.usable_cores  # 64 asked, the machine has fewer
    assert plan.max_memory_mb == min(2600, info.memory_total_mb) and plan.residency == "sequential"
    kwargs = stream_kwargs(plan)
    assert kwargs["thinking_budget"] == 3 and kwargs["answer_budget"] == 5 and kwargs["thinking"] is True


def test_the_pipeline_loads_the_way_the_profile_says(edge_bundle_dir, image_png):
    plan = make_plan(edge_bundle_dir, resolve_profile("raspberry-pi-5-4gb"), backend="onnx")
    et = load_pipeline(edge_bundle_dir, plan, verify="size")
    try:
        assert et.backends() == {"perception": "onnx onnx/fp32", "reasoner": "onnx onnx/fp32"}
        result = et.answer(str(image_png), "What is it?", **stream_kwargs(plan))
        assert result.budgets["thinking"] == plan.budgets.thinking
    finally:
        et.close()
