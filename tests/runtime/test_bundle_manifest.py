"""Bundle checks: hostile or damaged manifests and files give one clear BundleError."""

from __future__ import annotations

import json

import pytest

from runtime.bundle import open_bundle, read_manifest, sha256_file
from runtime.errors import BundleError


def _write_bundle(root, *, files=None, manifest_edit=None):
    root.mkdir(parents=True, exist_ok=True)
    (root / "tokenizer.json").write_text("{}")
    (root / "m.gguf").write_bytes(b"GGUF" + b"\0" * 60)
    listed = files or ["tokenizer.json", "m.gguf"]
    shape = dict(hidden_size=64, num_layers=2, num_heads=4, num_kv_heads=2, head_dim=32,
                 intermediate_size=128, vocab_size=1280, context_length=2048, rope_theta=1e6,
                 rms_norm_eps=1e-6, tie_word_embeddings=True)
    manifest = {
        "format": "extract-think-bundle",
        "format_version": 1,
        "name": "t",
        "models": {"reasoner": {
            "role": "reasoner", "architecture": "qwen3", "text": shape, "tokenizer": "tokenizer.json",
            "special_tokens": {"im_start": 1, "im_end": 2, "end_of_text": 0},
            "artifacts": [{"format": "gguf", "quant": "f32", "files": {"model": "m.gguf"}}],
        }},
        "files": {f: {"size": (root / f).stat().st_size, "sha256": sha256_file(root / f)} for f in listed},
        "provenance": {"tool": "test", "tool_version": "0", "created": "2026-01-01T00:00:00+00:00"},
    }
    if manifest_edit:
        manifest_edit(manifest)
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root


def test_valid_bundle_opens(tmp_path):
    b = open_bundle(_write_bundle(tmp_path / "b"))
    assert b.artifact("reasoner", "gguf").files["model"] == "m.gguf"
    with pytest.raises(BundleError, match="no onnx artifact"):
        b.artifact("reasoner", "onnx")
    with pytest.raises(BundleError, match="no perception model"):
        b.model("perception")


def test_wrong_hash(tmp_path):
    root = _write_bundle(tmp_path / "b")
    (root / "m.gguf").write_bytes(b"GGUF" + b"\1" * 60)  # same size, other bytes
    with pytest.raises(BundleError, match="wrong sha256"):
        open_bundle(root)
    open_bundle(root, verify="size")  # size-only checks do not hash


def test_wrong_size_and_missing_file(tmp_path):
    root = _write_bundle(tmp_path / "b")
    (root / "m.gguf").write_bytes(b"GGUF")
    with pytest.raises(BundleError, match="bytes, manifest says"):
        open_bundle(root, verify="size")
    (root / "m.gguf").unlink()
    with pytest.raises(BundleError, match="missing file m.gguf"):
        open_bundle(root)


@pytest.mark.parametrize("bad", ["../etc/passwd", "/abs/path", "a/../../b", "a\\b"])
def test_path_traversal_refused(tmp_path, bad):
    def edit(m):
        m["files"][bad] = {"size": 1, "sha256": "0" * 64}

    with pytest.raises(BundleError, match="unsafe path"):
        read_manifest(_write_bundle(tmp_path / "b", manifest_edit=edit))


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda m: m.update(format_version=99), "format_version 99"),
        (lambda m: m.update(format="other"), "not an extract-think-bundle"),
        (lambda m: m["models"]["reasoner"].update(tokenizer="nope.json"), "not in files"),
        (lambda m: m["models"]["reasoner"]["artifacts"][0]["files"].update(model="x.gguf"), "not in files"),
        (lambda m: m["models"]["reasoner"]["text"].update(hidden_size="64"), "hidden_size"),
        (lambda m: m["models"]["reasoner"].update(surprise=1), "unknown key"),
        (lambda m: m["models"]["reasoner"].update(role="perception"), "says its role"),
    ],
)
def test_bad_manifests(tmp_path, edit, message):
    with pytest.raises(BundleError, match=message):
        read_manifest(_write_bundle(tmp_path / "b", manifest_edit=edit))


def test_not_a_bundle(tmp_path):
    with pytest.raises(BundleError, match="no manifest.json"):
        open_bundle(tmp_path)
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(BundleError, match="not valid JSON"):
        open_bundle(tmp_path)
