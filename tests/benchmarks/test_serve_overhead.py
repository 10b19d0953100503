"""The server-overhead benchmark runs end to end on the shipped bundle (one measured request)."""

from __future__ import annotations

import pytest

pytest.importorskip("fastapi")

from benchmarks.serve_overhead import ServeBenchConfig, run_serve_overhead, to_markdown  # noqa: E402
from runtime.defaults import default_bundle_path  # noqa: E402


def test_serve_overhead_report():
    report = run_serve_overhead(ServeBenchConfig(bundle=str(default_bundle_path()), requests=2, warmup=1))
    assert report["seconds"]["http"]["n"] == 2 and report["seconds"]["api"]["n"] == 4
    for way in ("http", "sse"):
        assert report["ratio"][way] > 0 and report["ratio_per_request"][way]["n"] == 2
        assert report["cpu_seconds"][way]["median"] > 0
    # greedy decoding: the server answers what the Python API answers
    assert report["answers_agree"] == 2
    assert report["load_average"]["before"] is not None
    assert "| http |" in to_markdown(report)
