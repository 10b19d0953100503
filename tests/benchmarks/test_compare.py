"""`edge bench --compare` on the tiny bundle: the comparison object scripts read, the
Q8_0 mmproj variant, and the second question served by the image-prefix cache."""

from __future__ import annotations

import json

from gguf import GGMLQuantizationType, GGUFReader

from benchmarks.compare import CompareConfig, has_onnx_vision, mmproj_variant, run_compare
from benchmarks.inputs import TokenCounts
from runtime.bundle import open_bundle

COUNTS = "hint=2,extraction=3,thinking=3,answer=2"


def test_mmproj_variant_is_a_checked_bundle_with_a_q8_0_mmproj(bench_bundle_dir, tmp_path):
    bundle = open_bundle(bench_bundle_dir)
    root = mmproj_variant(bundle, "q8_0", tmp_path / "v")
    variant = open_bundle(root, verify="full")
    art = variant.artifact("perception", "gguf")
    assert art.files["mmproj"] == "perception-mmproj-q8_0.gguf"
    types = {t.name: GGMLQuantizationType(t.tensor_type).name for t in GGUFReader(root / art.files["mmproj"]).tensors}
    assert types["v.blk.0.attn_q.weight"] == "Q8_0" and types["v.patch_embd.weight"] == "F16"
    assert not list(root.glob("perception-mmproj-f32*"))  # the replaced mmproj is not carried along
    assert mmproj_variant(bundle, "q8_0", tmp_path / "v") == root  # reused, not rebuilt


def test_compare_reports_plain_fast_and_second_question(bench_bundle_dir, tmp_path):
    cfg = CompareConfig(threads=1, counts=TokenCounts.parse(COUNTS), repeat=1, warmup=0)
    c = run_compare(open_bundle(bench_bundle_dir), tmp_path / "v", cfg)
    for key in ("plain", "fast"):
        assert {"request_s", "image_side_s", "sequential_peak_rss_mb"} <= set(c[key])
        assert c[key]["request_s"] > 0 and c[key]["image_side_s"] > 0 and c[key]["sequential_peak_rss_mb"] > 0
    second = c["fast_second_question"]
    assert second["prefix_hits"] == 1 and second["n"] == 1  # served by the saved image prefix
    assert set(c["ratios"]) >= {"request", "image_side", "second_question_request", "second_question_image_side"}
    assert all(v is not None and v > 0 for v in c["ratios"].values())
    assert c["ratios"]["request"] == c["fast"]["request_s"] / c["plain"]["request_s"]
    assert c["runs"]["plain"][0]["prefix_hit"] is None and c["runs"]["fast"][0]["prefix_hit"] is False
    mm = c["mmproj"]
    assert (mm["plain"], mm["fast"]) == ("f32", "q8_0") and mm["file_mb"]["fast"] < mm["file_mb"]["plain"]
    assert 0 < mm["parity_vs_plain"]["embed_rel_l2"] < 0.05
    assert c["settings"]["residency"] == "sequential" and c["settings"]["tokens"]["extraction"] == 3
    assert c["settings"]["fast"]["vision"] == ("onnx graph (onnxruntime)" if has_onnx_vision(open_bundle(
        bench_bundle_dir)) else "mmproj (llama.cpp clip)")
    lookup = c["lookup"]  # the tiny bundle's models are not random-weight workloads
    assert {"acceptance", "reasoning_speedup", "bundle"} <= set(lookup) and lookup["identical"] is True
    assert lookup["bundle"] == c["settings"]["bundle"] and lookup["reasoning_speedup"] > 0


def test_compare_cli_prints_one_json_object(bench_bundle_dir, tmp_path, capsys):
    from edge.cli import main

    rc = main(["-q", "bench", "--compare", "--bundle", str(bench_bundle_dir), "--repeat", "1", "--warmup", "0",
               "--threads", "1", "--tokens", COUNTS, "--artifacts", str(tmp_path / "a"), "--out", str(tmp_path / "o"),
               "--json"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) == {"comparison"} and out["comparison"]["fast_second_question"]["prefix_hits"] == 1
    assert (tmp_path / "o" / "compare.json").is_file() and "| plain |" in (tmp_path / "o" / "compare.md").read_text()


def test_a_vision_graph_joins_the_fast_variant_and_runs_beside_llamacpp(bench_bundle_dir, tmp_path):
    """`vision_graph` (what `--workload` builds for its GGUF-only bundles) becomes a
    vision-only ONNX artifact of the variant; the fast pipeline's vision runs on it."""
    from runtime.pipeline import ExtractThink

    bundle = open_bundle(bench_bundle_dir)
    onnx = next((a for a in bundle.model("perception").artifacts if a.format == "onnx" and "vision" in a.files), None)
    if onnx is None:
        import pytest

        pytest.skip("the tiny bundle has no ONNX vision graph to reuse")
    root = mmproj_variant(bundle, "q8_0", tmp_path / "v", vision_graph=bundle.path(onnx.files["vision"]))
    variant = open_bundle(root, verify="full")
    graph = [a for a in variant.model("perception").artifacts if a.files == {"vision": "perception-vision-int8.onnx"}]
    assert len(graph) == 1 and graph[0].vision_quant == "int8"
    et = ExtractThink.load(variant, backend="llamacpp", threads=1, vision_backend="onnx")
    try:
        r = et.answer(bench_image_for(variant), "What is it?", hint_budget=2, extraction_budget=3,
                      thinking_budget=3, answer_budget=2, sampling="greedy")
        assert r.stages["vision"].tokens > 0
    finally:
        et.close()


def bench_image_for(bundle):
    from benchmarks.inputs import bench_image

    return bench_image(bundle.model("perception").image.size, seed=1)


def test_fast_sizes_each_context_and_keeps_prompt_starts_for_the_next_run(bench_bundle_dir, tmp_path):
    cfg = CompareConfig(threads=1, counts=TokenCounts.parse(COUNTS), repeat=1, warmup=0)
    first = run_compare(open_bundle(bench_bundle_dir), tmp_path / "v", cfg)
    ctx = first["settings"]["fast"]["context_length"]
    assert set(ctx) == {"perception", "reasoner"} and all(n % 256 == 0 and n < 4096 for n in ctx.values())
    assert first["settings"]["fast"]["prompt_cache_primed"] is False
    assert len(list((tmp_path / "v-prompt-cache").glob("*.npz"))) == 2  # the hint's and the reasoning prompt's starts
    again = run_compare(open_bundle(bench_bundle_dir), tmp_path / "v", cfg)
    assert again["settings"]["fast"]["prompt_cache_primed"] is True
    assert again["runs"]["fast"][0]["reasoner_prefix_hit"] is True
    assert first["runs"]["fast"][0]["reasoner_prefix_hit"] is False and first["runs"]["plain"][0]["reasoner_prefix_hit"] is None
