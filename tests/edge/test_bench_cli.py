"""`edge bench` on a tiny bundle: JSON, markdown table and plots; clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.benchmarks.bundle import tiny_bundle


@pytest.fixture(scope="module")
def bundle_dir(request) -> Path:
    return tiny_bundle(request)


def test_bench_writes_json_table_and_plots(bundle_dir, tmp_path, capsys):
    from edge.cli import main

    out = tmp_path / "bench"
    rc = main(["-q", "bench", "--bundle", str(bundle_dir), "--repeat", "1", "--warmup", "0", "--threads", "1",
               "--tokens", "hint=3,extraction=4,thinking=4,answer=2", "--backend", "onnx", "--out", str(out),
               "--json"])
    assert rc == 0
    report = json.loads(capsys.readouterr().out)
    assert report["settings"]["tokens"] == {"hint": 3, "extraction": 4, "thinking": 4, "answer": 2}
    assert {r["backend"] for r in report["loops"]} == {"onnx"}
    assert {r["engine"] for r in report["loops"]} == {"runtime", "raw-onnxruntime", "transformers"}
    assert {p["residency"] for p in report["pipeline"]} == {"resident", "sequential"}
    for name in ("bench.json", "bench.md", "stage_breakdown.png", "tokens_per_s.png", "memory.png"):
        assert (out / name).stat().st_size > 0
    md = (out / "bench.md").read_text()
    assert "| onnx fp32+fp32 resident |" in md and "runtime/raw" in md


def test_bench_prints_the_table_by_default(bundle_dir, tmp_path, capsys):
    from edge.cli import main

    rc = main(["-q", "bench", "--bundle", str(bundle_dir), "--repeat", "1", "--warmup", "0", "--threads", "1",
               "--tokens", "hint=2,extraction=2,thinking=2,answer=2", "--backend", "llamacpp", "--no-loops",
               "--residency", "resident", "--no-plots", "--out", str(tmp_path / "b")])
    assert rc == 0
    out = capsys.readouterr().out
    assert out.startswith("# Extract+Think benchmark") and "llamacpp f32+f32 resident" in out
    assert not (tmp_path / "b" / "memory.png").exists()


@pytest.mark.parametrize("argv, code, words", [
    (["bench", "build"], 2, "--workload"),
    (["bench", "--repeat", "0"], 2, "--repeat"),
    (["bench", "--bundle", "/nonexistent/bundle"], 3, "nonexistent"),
])
def test_bench_errors(argv, code, words, capsys):
    from edge.cli import main

    assert main(argv) == code
    errors = [ln for ln in capsys.readouterr().err.splitlines() if "error:" in ln]
    assert len(errors) == 1 and words in errors[0]
