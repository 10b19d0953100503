"""Bundle checks: hostile or damaged manifests and files give one clear BundleError."""

from __future__ import annotations

import json
import os
from pathlib import Path

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
        (lambda m: m["models"]["reasoner"]["artifacts"][0].update(format="onnx", files={"vision": "m.gguf"}),
         "no artifact with a text model"),
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


def _with_perception(m, *, image=None, vision=None):
    """Add a perception entry (read_manifest never opens model files, so m.gguf stands in)."""
    entry = dict(m["models"]["reasoner"], role="perception", architecture="llava-qwen3")
    entry["artifacts"] = [{"format": "gguf", "quant": "f32", "files": {"model": "m.gguf", "mmproj": "m.gguf"}}]
    entry["vision"] = {"image_size": 384, "patch_size": 14, "hidden_size": 64, "num_layers": 2, "num_heads": 2,
                       "intermediate_size": 128, "tokens_per_image": 729, **(vision or {})}
    entry["image"] = {"size": 384, "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5], **(image or {})}
    m["models"]["perception"] = entry


def test_image_preprocessing_that_agrees_with_the_encoder_opens(tmp_path):
    m = read_manifest(_write_bundle(tmp_path / "b", manifest_edit=_with_perception))
    assert m.models["perception"].image.size == 384 and m.models["perception"].vision.tokens_per_image == 729


@pytest.mark.parametrize(
    ("image", "vision", "message"),
    [
        # 10^6 made the llama.cpp path resize to 10^6 x 10^6 (22 GB) before anything said no
        ({"size": 10**6}, {"image_size": 10**6, "tokens_per_image": (10**6 // 14) ** 2},
         r"models\.perception\.vision\.image_size 1000000 is outside 1\.\.2048"),
        ({"size": 10**6}, {}, r"models\.perception\.image\.size 1000000 is outside 1\.\.2048"),
        ({"size": 0}, {}, r"models\.perception\.image\.size 0 is outside"),  # was a traceback
        ({"size": 224}, {}, r"image\.size 224 differs from vision\.image_size 384"),
        ({"std": [0.5, 0.0, 0.5]}, {}, r"image\.std\[1\] 0\.0 is outside"),  # inf pixels on ONNX
        ({"std": [0.5, -0.5, 0.5]}, {}, r"image\.std\[1\] -0\.5"),
        ({"mean": [0.5, 0.5, 3.0]}, {}, r"image\.mean\[2\] 3\.0 is outside 0\.0\.\.1\.0"),
        ({}, {"tokens_per_image": 730}, r"vision\.tokens_per_image 730 does not match .* \(27x27 = 729\)"),
        ({}, {"patch_size": 0}, r"vision\.patch_size 0 is outside"),
    ],
)
def test_image_preprocessing_is_checked_against_the_encoder(tmp_path, image, vision, message):
    root = _write_bundle(tmp_path / "b", manifest_edit=lambda m: _with_perception(m, image=image, vision=vision))
    with pytest.raises(BundleError, match=message) as err:
        read_manifest(root)
    assert "manifest.json" in str(err.value)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda m: m["models"]["reasoner"]["text"].update(num_layers=0), r"text\.num_layers 0 is outside"),
        (lambda m: m["models"]["reasoner"]["text"].update(vocab_size=10**30), r"text\.vocab_size"),
        (lambda m: m["models"]["reasoner"]["text"].update(num_kv_heads=3), "not a multiple of num_kv_heads"),
        (lambda m: m["models"]["reasoner"]["special_tokens"].update(im_end=5000), "outside the vocabulary"),
        (lambda m: m.update(budgets={"thinking": -1}), r"budgets\.thinking -1"),
        (lambda m: m["files"]["m.gguf"].update(sha256="XYZ"), "64 lowercase hex"),
        (lambda m: m["files"]["m.gguf"].update(size=-1), "not a plausible file size"),
        (lambda m: m.update(examples=[{"image": "../x.png", "question": "q"}]), r"examples\[0\]\.image names an unsafe"),
        (lambda m: m["models"]["reasoner"]["text"].update(rope_theta=float("nan")), "not valid JSON"),
    ],
)
def test_shape_and_reference_bounds(tmp_path, edit, message):
    with pytest.raises(BundleError, match=message):
        read_manifest(_write_bundle(tmp_path / "b", manifest_edit=edit))


def test_deeply_nested_manifest_is_refused_not_a_recursion_error(tmp_path):
    root = _write_bundle(tmp_path / "b")
    (root / "manifest.json").write_text('{"format": "extract-think-bundle", "x": ' + "[" * 200_000
                                        + "]" * 200_000 + "}")
    with pytest.raises(BundleError, match=r"manifest\.json: JSON nested deeper than"):
        open_bundle(root)


def test_oversized_manifest_is_refused_before_reading(tmp_path):
    root = _write_bundle(tmp_path / "b")
    with open(root / "manifest.json", "ab") as fh:
        fh.truncate((4 << 20) + 1)
    with pytest.raises(BundleError, match="over the 4,194,304-byte limit"):
        read_manifest(root)


def _secret(tmp_path, data: bytes = b"GGUF" + b"\0" * 60):
    outside = tmp_path / "outside"
    outside.mkdir(exist_ok=True)
    (outside / "secret").write_bytes(data)
    return outside / "secret"


def test_symlink_out_of_the_bundle_is_refused_even_with_matching_hash(tmp_path):
    # The link's target has exactly the listed bytes: size and sha256 match, and it was
    # followed (`edge pack` packed /etc/passwd's bytes this way). It must still be refused.
    root = _write_bundle(tmp_path / "b")
    secret = _secret(tmp_path)
    (root / "m.gguf").unlink()
    (root / "m.gguf").symlink_to(secret)
    for verify in ("full", "size", "none"):
        with pytest.raises(BundleError, match="m.gguf.* is a symbolic link to .*outside the bundle"):
            open_bundle(root, verify=verify)


def test_symlinked_directory_and_manifest_out_of_the_bundle_are_refused(tmp_path):
    secret = _secret(tmp_path)
    root = tmp_path / "b"
    root.mkdir()
    (root / "sub").symlink_to(secret.parent, target_is_directory=True)
    _write_bundle(root, files=["tokenizer.json", "m.gguf", "sub/secret"])
    with pytest.raises(BundleError, match="sub/secret.* outside the bundle"):
        open_bundle(root)
    b = open_bundle(_write_bundle(tmp_path / "c"))
    (b.root / "sub").symlink_to(secret.parent, target_is_directory=True)
    with pytest.raises(BundleError, match="outside the bundle"):
        b.path("sub/secret")  # every later open goes through Bundle.path
    manifest = (root / "manifest.json").read_bytes()
    (secret.parent / "manifest.json").write_bytes(manifest)
    (root / "manifest.json").unlink()
    (root / "manifest.json").symlink_to(secret.parent / "manifest.json")
    with pytest.raises(BundleError, match="manifest.json.* outside the bundle"):
        read_manifest(root)


def test_symlink_inside_the_bundle_is_allowed(tmp_path):
    root = _write_bundle(tmp_path / "b")
    (root / "models").mkdir()
    (root / "m.gguf").rename(root / "models" / "real.gguf")
    (root / "m.gguf").symlink_to(Path("models") / "real.gguf")
    b = open_bundle(root)
    assert b.path("m.gguf") == (root / "models" / "real.gguf").resolve()


def test_special_files_are_refused(tmp_path):
    root = _write_bundle(tmp_path / "b")
    (root / "m.gguf").unlink()
    os.mkfifo(root / "m.gguf")  # hashing a FIFO would block forever
    with pytest.raises(BundleError, match="not a regular file"):
        open_bundle(root)
