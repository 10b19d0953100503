"""`edge doctor`: device, backends, bundle and the choice it would make, as text and JSON."""

from __future__ import annotations

import json

from tests.edge.helpers import one_error_line, run_edge


def test_doctor_json_with_a_bundle(edge_bundle_dir):
    proc = run_edge("doctor", "--json", "--bundle", str(edge_bundle_dir))
    assert proc.returncode == 0, proc.stderr
    r = json.loads(proc.stdout)
    assert r["ok"] is True
    d = r["device"]
    assert d["logical_cores"] >= 1 and d["memory_total_mb"] > 0 and d["arch"]
    assert d["is_jetson"] is False and d["cuda"]["available"] in (True, False)
    llama, ort = r["backends"]["llamacpp"], r["backends"]["onnx"]
    assert llama["installed"] and llama["version"] and llama["gpu"] in (True, False)
    assert ort["installed"] and "CPUExecutionProvider" in ort["detail"]
    assert r["bundle"]["present"] and r["bundle"]["formats"] == ["gguf", "onnx"]
    assert r["bundle"]["default"] is False
    choice = r["choice"]
    assert choice["profile"] == "laptop" and choice["source"].startswith("detected")
    plan = choice["plan"]
    assert plan["selection"]["backend"] == "llamacpp"
    assert plan["selection"]["quants"] == {"perception": "f32", "reasoner": "f32"}
    assert 1 <= plan["threads"] <= d["usable_cores"]
    # the profile caps the bundle's budgets, never raises them
    assert plan["budgets"]["thinking"] == 12


def test_doctor_text_with_a_named_profile(edge_bundle_dir):
    proc = run_edge("doctor", "--bundle", str(edge_bundle_dir), "--profile", "raspberry-pi-4")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    for heading in ("Device", "Backends", "Bundle", "Choice"):
        assert heading in out
    assert "raspberry-pi-4" in out and "would run  llamacpp (gguf: perception f32, reasoner f32)" in out
    assert "memory cap 2600 MB" in out and "residency sequential" in out


def test_doctor_without_a_usable_bundle_says_so(tmp_path):
    proc = run_edge("doctor", "--json", "--bundle", str(tmp_path))
    assert proc.returncode == 1
    r = json.loads(proc.stdout)
    assert r["ok"] is False and r["bundle"]["present"] is False and "no manifest.json" in r["bundle"]["error"]
    assert r["choice"]["profile"] == "laptop" and "no bundle to run" in r["choice"]["error"]


def test_doctor_unknown_profile(edge_bundle_dir):
    proc = run_edge("doctor", "--bundle", str(edge_bundle_dir), "--profile", "toaster")
    assert proc.returncode == 2
    assert "unknown profile 'toaster'; known profiles: jetson-orin-nano, laptop" in one_error_line(proc)
