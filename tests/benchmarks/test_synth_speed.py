"""The synthetic-world speed benchmark runs and writes its JSON (no timing asserted)."""

from __future__ import annotations

import json

from benchmarks.synth_speed import main


def test_benchmark_writes_results(tmp_path, capsys):
    out = tmp_path / "speed.json"
    assert main(["--sizes", "64", "--images", "10", "--repeats", "2", "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    r = data["sizes"]["64"]
    assert set(r) == {"render", "full"} and r["render"]["median"] > 0 and r["full"]["min"] <= r["full"]["max"]
    assert "| 64 px |" in capsys.readouterr().out
