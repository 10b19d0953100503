"""`edge doctor`: device, backends, bundle and the choice it would make, as text and JSON."""

from __future__ import annotations

import json

import llama_cpp
import onnxruntime

from edge.commands.doctor import collect
from edge.device import choose_profile, detect
from edge.plan import make_plan, resolve_profile
from tests.edge.helpers import one_error_line, run_edge
from tests.edge.test_device import PI5_CPUINFO, _meminfo, make_root


def test_doctor_json_with_a_bundle(edge_bundle_dir):
    proc = run_edge("doctor", "--json", "--bundle", str(edge_bundle_dir))
    assert proc.returncode == 0, proc.stderr
    r = json.loads(proc.stdout)
    assert r["ok"] is True
    # the report says what the libraries say about this machine, whatever it is
    here = detect()
    d = r["device"]
    assert (d["logical_cores"], d["usable_cores"], d["arch"]) == (here.logical_cores, here.usable_cores, here.arch)
    assert d["is_jetson"] is here.is_jetson and d["cuda"]["available"] is here.cuda.available
    llama, ort = r["backends"]["llamacpp"], r["backends"]["onnx"]
    assert llama["installed"] and llama["version"] == llama_cpp.__version__
    assert llama["gpu"] is bool(llama_cpp.llama_supports_gpu_offload())
    assert ort["installed"] and ort["detail"] == "providers: " + ", ".join(onnxruntime.get_available_providers())
    assert r["bundle"]["present"] and r["bundle"]["formats"] == ["gguf", "onnx"]
    assert r["bundle"]["default"] is False
    choice = r["choice"]
    assert choice["profile"] == choose_profile(here).profile.name and choice["source"].startswith("detected")
    assert choice["plan"] == make_plan(edge_bundle_dir, resolve_profile(None, edge_bundle_dir, here), here).to_dict()
    assert 1 <= choice["plan"]["threads"] <= d["usable_cores"]


def test_doctor_on_a_raspberry_pi_5(edge_bundle_dir, tmp_path):
    """The choice doctor reports for injected facts: a Pi 5 with 8 GB and no CUDA."""
    root = make_root(tmp_path, {
        "proc/device-tree/model": b"Raspberry Pi 5 Model B Rev 1.0\x00",
        "proc/cpuinfo": PI5_CPUINFO,
        "proc/meminfo": _meminfo(8062, 7400),
    })
    r = collect(edge_bundle_dir, None, detect(root))
    assert r["ok"] is True and r["device"]["board_model"] == "Raspberry Pi 5 Model B Rev 1.0"
    choice = r["choice"]
    assert choice["profile"] == "raspberry-pi-5-8gb" and "Raspberry Pi 5" in choice["source"]
    plan = choice["plan"]
    assert plan["selection"]["backend"] == "llamacpp"
    assert plan["selection"]["quants"] == {"perception": "f32", "reasoner": "f32"}
    assert plan["threads"] == 4 and plan["gpu_layers"] == 0
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
    assert r["choice"]["profile"] == choose_profile(detect()).profile.name
    assert "no bundle to run" in r["choice"]["error"]


def test_doctor_unknown_profile(edge_bundle_dir):
    proc = run_edge("doctor", "--bundle", str(edge_bundle_dir), "--profile", "toaster")
    assert proc.returncode == 2
    assert "unknown profile 'toaster'; known profiles: jetson-orin-nano, laptop" in one_error_line(proc)
