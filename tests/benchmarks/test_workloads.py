"""Random-weight workload bundles: the files llama.cpp loads, shapes the manifest states,
and a whole request through the pipeline. Built here with tiny shapes (the paper-scale
ones are the same code with bigger numbers; `edge bench --workload` builds those)."""

from __future__ import annotations

import shutil
from dataclasses import replace

import numpy as np
import pytest

from benchmarks import workloads
from training.models import sizes


@pytest.fixture()
def tiny_workload(monkeypatch, tmp_path, qwen3_tokenizer_dir):
    text = replace(sizes.qwen3_tiny(), vocab_size=151_936, max_position_embeddings=4096)
    monkeypatch.setitem(sizes.TEXT_SIZES, "qwen3-bench-tiny", lambda: text)
    monkeypatch.setitem(sizes.VISION_SIZES, "siglip-bench-tiny", sizes.siglip_tiny)
    monkeypatch.setitem(workloads.WORKLOADS, "tiny", workloads.Workload(
        "tiny", "qwen3-bench-tiny", "siglip-bench-tiny", "qwen3-bench-tiny", quants=("q8_0", "q4_0")))
    root = tmp_path / "bench"
    shutil.copytree(qwen3_tokenizer_dir, root / "qwen3-tokenizer")  # the real Qwen3 tokenizer
    return workloads.WorkloadBuilder(root)


def test_workload_bundle_loads_and_answers(tiny_workload):
    from runtime.bundle import open_bundle
    from runtime.pipeline import ExtractThink

    root = tiny_workload.bundle("tiny")
    assert root == tiny_workload.root / "workloads" / "tiny"
    assert not list(tiny_workload.models.glob(f"*{workloads.SOURCE_SUFFIX}"))  # sources dropped
    b = open_bundle(root, verify="full")
    assert [a.quant for a in b.model("reasoner").artifacts] == ["q8_0", "q4_0"]
    assert b.model("perception").vision.tokens_per_image == 16
    for quant in ("q8_0", "q4_0"):
        # the backend checks every loaded shape against the manifest
        with ExtractThink.load(b, backend="llamacpp", quant=quant, threads=1) as et:
            img = np.zeros((32, 32, 3), np.uint8)
            r = et.answer(img, "Which colour?", ["red", "blue"], hint_budget=3, extraction_budget=5,
                          thinking_budget=5, answer_budget=3, sampling="greedy")
            assert r.answer in ("A", "B")
            assert r.stages["thinking"].tokens <= 5 and r.stages["vision"].tokens == 16
    # a second call reuses the cached bundle and model files
    mtime = (root / "manifest.json").stat().st_mtime_ns
    assert tiny_workload.bundle("tiny") == root and (root / "manifest.json").stat().st_mtime_ns == mtime


def test_bench_input_modes_gives_a_workload_the_papers_layout(tiny_workload, tmp_path, capsys):
    """`edge bench --workload W --input-modes single,anyres`: the workload bundle gets an
    any-resolution variant beside it (random newline, pinpoints 1x1..6x6, max 9 tiles)."""
    import json

    from edge.cli import main
    from runtime.bundle import open_bundle

    rc = main(["-q", "bench", "--workload", "tiny", "--artifacts", str(tiny_workload.root), "--input-modes",
               "single,anyres", "--image-sizes", "40x40", "--repeat", "1", "--warmup", "0", "--threads", "1",
               "--tokens", "extraction=2", "--quant", "q8_0", "--out", str(tmp_path / "out"), "--json"])
    assert rc == 0
    rows = json.loads(capsys.readouterr().out)["input_modes"]["rows"]
    assert [(r["mode"], r["views"], r["image_tokens"]) for r in rows] == [("single", 1, 16), ("anyres", 5, 88)]
    variant = open_bundle(tiny_workload.root / "workloads" / "tiny-anyres", verify="full")
    lay = variant.manifest.model("perception").image_layout
    assert (lay.input_mode, lay.max_tiles, len(lay.pinpoints)) == ("anyres", 9, 36)


def test_unknown_workload_is_a_clear_error():
    from runtime.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown workload"):
        workloads.workload("paper-70b")


@pytest.mark.slow
def test_onnx_workload_exports_through_edge_export(monkeypatch, tmp_path, tiny_tokenizer_dir):
    """The ONNX workload is a random torch checkpoint exported by export_bundle (int8 here)."""
    from runtime.bundle import open_bundle

    monkeypatch.setitem(workloads.WORKLOADS, "tiny-onnx", workloads.Workload(
        "tiny-onnx", "qwen3-tiny", "siglip-tiny", None, quants=("int8",), format="onnx"))
    root = tmp_path / "bench"
    shutil.copytree(tiny_tokenizer_dir, root / "qwen3-tokenizer")
    b = open_bundle(workloads.WorkloadBuilder(root).bundle("tiny-onnx"))
    assert list(b.manifest.models) == ["perception"]
    assert [(a.format, a.quant) for a in b.model("perception").artifacts] == [("onnx", "int8")]
    assert (root / "checkpoints" / "siglip-tiny+qwen3-tiny" / "config.json").is_file()
    assert workloads.hf_source("tiny-onnx", root / "qwen3-tokenizer") is None  # the bundle names its source
