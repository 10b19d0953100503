"""`edge export`: checkpoint folders -> verified bundle, atomically, with clear errors."""

from __future__ import annotations

import json
import os
import shutil

import pytest

from edge.cli import main
from runtime.bundle import open_bundle


def run(capsys, *args):
    rc = main(["export", *map(str, args)])
    out, err = capsys.readouterr()
    return rc, out, err


def one_line_error(err: str, *phrases: str) -> None:
    lines = [ln for ln in err.splitlines() if ln.strip() and not ln.startswith("export [")]
    assert len(lines) == 1 and lines[0].startswith("edge export: error: "), err
    for p in phrases:
        assert p in lines[0], (p, lines[0])


def test_export_both_formats_then_verify(capsys, tmp_path, tiny_perception_dir, tiny_reasoner_dir):
    out = tmp_path / "bundle"
    rc, stdout, _ = run(capsys, "--perception", tiny_perception_dir, "--reasoner", tiny_reasoner_dir,
                        "--format", "both", "--quant", "q8_0,int8", "--out", out, "--json")
    assert rc == 0, stdout
    bundle = open_bundle(json.loads(stdout)["bundle"])
    m = bundle.manifest
    assert set(m.models) == {"perception", "reasoner"}
    arts = {(r, a.format, a.quant) for r, e in m.models.items() for a in e.artifacts}
    assert arts == {(r, f, q) for r in ("perception", "reasoner") for f, q in (("gguf", "q8_0"), ("onnx", "int8"))}
    p = m.models["perception"]
    assert p.vision.tokens_per_image == 16 and p.image.size == 32 and p.special_tokens.image is not None
    assert m.models["reasoner"].tokenizer == p.tokenizer == "tokenizer.json"  # shared, stored once
    assert m.models["reasoner"].source_sha256 and m.provenance.tool == "edge export"
    assert not list(tmp_path.glob(".bundle.*"))

    rc, stdout, _ = run(capsys, "verify", out, "--json")
    report = json.loads(stdout)
    assert rc == 0 and report["passed"] and len(report["artifacts"]) == 4

    # verify notices a source checkpoint that changed after the export
    changed = tmp_path / "changed"
    shutil.copytree(tiny_reasoner_dir, changed)
    rc, _, _ = run(capsys, "--reasoner", changed, "--format", "gguf", "--quant", "f32",
                   "--out", tmp_path / "b2", "--no-verify")
    assert rc == 0
    (changed / "config.json").write_text((changed / "config.json").read_text() + " ")
    rc, _, err = run(capsys, "verify", tmp_path / "b2")
    assert rc != 0
    one_line_error(err, "changed since the export")


def test_reasoner_alone_gguf_k_quant(capsys, tmp_path, tiny_reasoner_dir):
    rc, stdout, _ = run(capsys, "--reasoner", tiny_reasoner_dir, "--format", "gguf", "--quant", "q4_k_m",
                        "--out", tmp_path / "b", "--json")
    assert rc == 0
    m = open_bundle(tmp_path / "b").manifest
    assert list(m.models) == ["reasoner"] and m.models["reasoner"].artifacts[0].quant == "q4_k_m"


@pytest.mark.parametrize(
    ("args", "phrases"),
    [
        (["--format", "gguf", "--quant", "int8"], ["'int8' is an ONNX type"]),
        (["--format", "onnx", "--quant", "q4_k_m"], ["'q4_k_m' is a GGUF type"]),
        (["--format", "both", "--quant", "q8_0"], ["no quant given for the onnx format"]),
        (["--quant", "q3_xs"], ["unknown quant 'q3_xs'"]),
    ],
)
def test_bad_quant_requests(capsys, tmp_path, tiny_reasoner_dir, args, phrases):
    rc, _, err = run(capsys, "--reasoner", tiny_reasoner_dir, "--out", tmp_path / "b", *args)
    assert rc == 2
    one_line_error(err, *phrases)
    assert not (tmp_path / "b").exists()


def test_bad_inputs_leave_nothing(capsys, tmp_path, tiny_reasoner_dir, tiny_perception_dir):
    rc, _, err = run(capsys, "--out", tmp_path / "b")
    one_line_error(err, "nothing to export")
    rc, _, err = run(capsys, "--reasoner", tmp_path / "missing", "--out", tmp_path / "b")
    one_line_error(err, "no such folder, and not a hub id")
    rc, _, err = run(capsys, "--reasoner", tiny_perception_dir, "--out", tmp_path / "b")
    one_line_error(err, "is not qwen3")
    rc, _, err = run(capsys, "--perception", tiny_reasoner_dir, "--out", tmp_path / "b")
    one_line_error(err, "not a llava perception model")
    # a corrupt checkpoint fails mid-export: no bundle, no partial directory
    corrupt = tmp_path / "corrupt"
    shutil.copytree(tiny_reasoner_dir, corrupt)
    (corrupt / "model.safetensors").write_bytes(b"\x00" * 64)
    rc, _, err = run(capsys, "--reasoner", corrupt, "--out", tmp_path / "b")
    assert rc != 0 and "Traceback" not in err
    assert not (tmp_path / "b").exists() and not list(tmp_path.glob(".b.*"))
    # config and weights disagree on shapes
    mismatched = tmp_path / "mismatched"
    shutil.copytree(tiny_reasoner_dir, mismatched)
    cfg = json.loads((mismatched / "config.json").read_text())
    (mismatched / "config.json").write_text(json.dumps({**cfg, "intermediate_size": cfg["intermediate_size"] * 2}))
    rc, _, err = run(capsys, "--reasoner", mismatched, "--out", tmp_path / "b")
    one_line_error(err, "do not match")
    assert not (tmp_path / "b").exists()


def test_a_bad_preprocessor_config_is_refused_for_onnx_too(capsys, tmp_path, tiny_perception_dir):
    """One validated reader for every format (the ONNX path used to take std 0 as is)."""
    ckpt = tmp_path / "ckpt"
    shutil.copytree(tiny_perception_dir, ckpt)
    (ckpt / "preprocessor_config.json").write_text(json.dumps({"image_mean": [0.5] * 3, "image_std": [0.5, 0, 0.5]}))
    rc, _, err = run(capsys, "--perception", ckpt, "--format", "onnx", "--quant", "fp32", "--out", tmp_path / "b")
    assert rc == 2
    one_line_error(err, "image_std must be > 0")
    assert not (tmp_path / "b").exists()


def test_existing_bundle_needs_force_and_survives_a_failed_replace(capsys, tmp_path, tiny_reasoner_dir):
    out = tmp_path / "b"
    assert run(capsys, "--reasoner", tiny_reasoner_dir, "--quant", "f32", "--out", out, "--no-verify")[0] == 0
    before = (out / "manifest.json").read_text()
    rc, _, err = run(capsys, "--reasoner", tiny_reasoner_dir, "--quant", "f32", "--out", out)
    one_line_error(err, "already exists")
    rc, _, err = run(capsys, "--reasoner", tmp_path / "nope", "--quant", "f32", "--out", out, "--force")
    assert rc != 0 and (out / "manifest.json").read_text() == before  # old bundle untouched
    open_bundle(out)


def test_unwritable_output(capsys, tmp_path, tiny_reasoner_dir):
    # a file where the output's parent folder should be: fails for root too
    (tmp_path / "file").write_text("x")
    rc, _, err = run(capsys, "--reasoner", tiny_reasoner_dir, "--out", tmp_path / "file" / "b")
    one_line_error(err, "cannot create the output folder", "in the way")
    assert rc == 2 and (tmp_path / "file").read_text() == "x"
    if os.geteuid() != 0:  # root ignores permission bits
        ro = tmp_path / "ro"
        ro.mkdir(mode=0o500)
        rc, _, err = run(capsys, "--reasoner", tiny_reasoner_dir, "--out", ro / "b")
        one_line_error(err, "not writable")


def test_force_replaces_a_bundle_never_a_folder_of_user_files(capsys, tmp_path, tiny_reasoner_dir):
    user = tmp_path / "results"
    user.mkdir()
    (user / "paper.tex").write_text("mine")
    rc, stdout, err = run(capsys, "--reasoner", tiny_reasoner_dir, "--quant", "f32", "--out", user, "--force",
                          "--no-verify", "--json")
    assert rc == 2
    one_line_error(err, str(user), "has no manifest.json", "refusing to replace")
    assert json.loads(stdout)["error"].startswith(f"{user} has no manifest.json")
    assert (user / "paper.tex").read_text() == "mine" and sorted(p.name for p in tmp_path.iterdir()) == ["results"]


def test_json_errors_are_json(capsys, tmp_path, tiny_reasoner_dir):
    rc, stdout, err = run(capsys, "--reasoner", tmp_path / "missing", "--out", tmp_path / "b", "--json")
    assert rc == 2
    one_line_error(err, "no such folder")
    doc = json.loads(stdout)
    assert doc["type"] == "ConfigError" and doc["exit_code"] == 2 and "no such folder" in doc["error"]
    rc, stdout, _ = main_verify_json(capsys, tmp_path / "missing")
    assert rc != 0 and "error" in json.loads(stdout)


def main_verify_json(capsys, bundle):
    return run(capsys, "verify", bundle, "--json")


def test_converted_paper_checkpoint_exports_and_verifies(capsys, tmp_path, tiny_tokenizer_dir):
    from tests.export.test_convert_llava_ov import _paper_checkpoint

    src = tmp_path / "paper"
    _paper_checkpoint(src, tiny_tokenizer_dir)
    rc, stdout, err = run(capsys, "convert", src, "--out", tmp_path / "converted", "--vision-heads", "2")
    assert rc == 0, err
    rc, stdout, err = run(capsys, "--perception", tmp_path / "converted", "--format", "both",
                          "--quant", "f32", "--out", tmp_path / "b", "--json")
    assert rc == 0, err
    m = open_bundle(tmp_path / "b").manifest.models["perception"]
    assert m.system_prompt == "You are a helpful assistant." and m.vision.num_layers == 2
