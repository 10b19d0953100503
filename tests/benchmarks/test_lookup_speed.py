"""`benchmarks.lookup_speed` on the shipped default bundle: acceptance and speed-up of
prompt-lookup decoding, lookup on against off in one process."""

from __future__ import annotations

import dataclasses

from benchmarks.inputs import TokenCounts
from benchmarks.lookup_speed import LookupBenchConfig, measure_lookup, trained_weights
from runtime.bundle import open_bundle
from runtime.defaults import default_bundle_path


def test_measure_lookup_on_the_default_bundle():
    bundle = open_bundle(default_bundle_path(), verify="size")
    assert trained_weights(bundle.manifest)
    counts = TokenCounts(hint=8, extraction=32, thinking=48, answer=8)
    out = measure_lookup(bundle, LookupBenchConfig(backend="llamacpp", lookup=4, repeat=1, warmup=0, counts=counts))
    assert out["identical"] is True and out["bundle"] == bundle.manifest.name
    assert 0 < out["accepted"] < out["drafted"] and out["acceptance"] == out["accepted"] / out["drafted"]
    assert out["reasoning_speedup"] > 0 and out["items"] == len(bundle.manifest.examples)
    assert out["tokens"] <= out["items"] * (48 + 8 + 16)  # thinking + answer (+ a forced answer line) per item
    onnx = measure_lookup(bundle, LookupBenchConfig(backend="onnx", lookup=4, repeat=1, warmup=0, counts=counts))
    assert onnx["drafted"] == 0 and onnx["acceptance"] is None  # int8 graphs: lookup stays off


def test_random_weight_bundles_are_not_trained():
    m = open_bundle(default_bundle_path(), verify="size").manifest
    models = {role: dataclasses.replace(e, source="random qwen3-1.7b (benchmarks.workloads)")
              for role, e in m.models.items()}
    assert not trained_weights(dataclasses.replace(m, models=models))
