"""The shipped default bundle: small, verified, and `edge run` answers its examples correctly.

Regenerate it with `edge train default-bundle` (docs/training.md)."""

from __future__ import annotations

import json

import pytest

from edge.cli import main
from runtime.bundle import open_bundle
from runtime.defaults import default_bundle_path


@pytest.fixture(scope="module")
def bundle():
    return open_bundle(default_bundle_path(), verify="full")


def test_default_bundle_is_small_and_complete(bundle):
    m = bundle.manifest
    assert set(m.models) == {"perception", "reasoner"}
    assert m.formats() == {"gguf", "onnx"}
    total = sum(f.size for f in m.files.values())
    assert total < 40 * 2**20, f"{total / 2**20:.1f} MiB"
    assert len(m.examples) >= 2
    for ex in m.examples:
        assert bundle.path(ex["image"]).is_file() and ex["question"] and ex["answer"]


def _run(capsys, *args: str) -> dict:
    assert main(["-q", "run", "--json", "--threads", "1", *args]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("backend", ["llamacpp", "onnx"])
def test_edge_run_answers_the_examples(bundle, capsys, backend):
    pytest.importorskip("llama_cpp" if backend == "llamacpp" else "onnxruntime")
    for ex in bundle.manifest.examples:
        args = ["--backend", backend, "--image", str(bundle.path(ex["image"])), "--question", ex["question"]]
        options = [o for o in ex.get("options", "").split("\n") if o]
        if options:
            args += ["--options", *options]
        out = _run(capsys, *args)
        assert out["answer"] == ex["answer"], (ex, out["extraction"], out["thinking"], out["answer_text"])
        assert out["extraction"] and out["thinking"]


def test_edge_run_without_arguments_runs_the_first_example(bundle, capsys):
    pytest.importorskip("llama_cpp")
    out = _run(capsys)
    assert out["answer"] == bundle.manifest.examples[0]["answer"]
