"""An int8 ONNX vision graph at export (`--vision-quant int8`): the parity check against the
float32 graph, what the manifest records, verification and the runtime running it."""

from __future__ import annotations

import json
import shutil

import numpy as np
import onnx
import pytest

import export.onnx.vision_parity as vision_parity
from export.bundle_writer import ExportRequest, export_bundle
from export.verify import verify_bundle
from runtime.bundle import open_bundle
from runtime.errors import BundleError, ConfigError
from runtime.pipeline import ExtractThink

pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def int8_bundle(tmp_path_factory, tiny_perception_dir):
    report: dict = {}
    out = export_bundle(ExportRequest(out=tmp_path_factory.mktemp("vq8") / "bundle", perception=tiny_perception_dir,
                                      formats=("onnx",), quants=("int8",), vision_quant="int8", verify=True),
                        report=report)
    return out, report


def test_manifest_file_and_report(int8_bundle):
    out, report = int8_bundle
    (art,) = open_bundle(out).model("perception").artifacts
    assert (art.quant, art.vision_quant, art.files["vision"]) == ("int8", "int8", "perception-vision-int8.onnx")
    assert not list(out.glob("*vision-fp32*"))  # the float32 reference stayed in the scratch folder
    graph = onnx.load(str(out / art.files["vision"]))
    ops = {n.op_type for n in graph.graph.node}
    assert "MatMulInteger" in ops and "Conv" in ops  # projections int8, the patch convolution float
    weights = {n.input[1] for n in graph.graph.node if n.op_type == "MatMulInteger"}
    # signed 7-bit weights: onnxruntime's fast u8 x s8 kernels, within the bounds here
    assert {i.data_type for i in graph.graph.initializer if i.name in weights} == {onnx.TensorProto.INT8}
    m = report["vision_parity"]["perception-vision-int8.onnx"]
    assert m["weights"] == "s7"
    assert 0 < m["embed_rel_l2"] < vision_parity.VISION_BOUNDS["embed_rel_l2"][0]
    assert 0.99 < m["embed_min_token_cosine"] < 1.0
    assert m["extraction_tokens"] == vision_parity.EXTRACTION_TOKENS
    assert m["extraction_top1_agreement"] >= 0.9 and 0 <= m["extraction_identical_prefix"] <= 32


def test_verify_judges_the_int8_vision_graph_by_its_embedding_bounds(int8_bundle):
    out, _ = int8_bundle
    (art,) = verify_bundle(out, roles=("perception",))["artifacts"]
    assert art["passed"], art
    assert "vision_max_diff" not in art["tolerances"]  # 1e-4 is for float32 graphs
    assert 0 < art["metrics"]["vision_embed_rel_l2"] <= art["tolerances"]["vision_embed_rel_l2"] == 0.05
    # 7-bit signed weights: no adjacent pair can saturate a non-VNNI CPU's int16 sums
    assert 0 < art["metrics"]["vision_int8_weight_pair_max"] <= art["tolerances"]["vision_int8_weight_pair_max"] == 128


def test_runtime_runs_the_int8_vision_graph(int8_bundle):
    out, _ = int8_bundle
    image = (np.random.default_rng(1).random((30, 30, 3)) * 255).astype(np.uint8)
    with ExtractThink.load(out, backend="onnx", threads=1) as et:
        r = et.answer(image, "How many?", ["1", "2"], mode="end-to-end", answer_budget=4)
    assert r.stages["vision"].tokens == 16 and not r.stages["vision"].cached


def test_a_vision_quant_on_an_artifact_without_an_onnx_vision_graph_is_refused(int8_bundle, tmp_path):
    out, _ = int8_bundle
    bad = tmp_path / "bundle"
    shutil.copytree(out, bad)
    data = json.loads((bad / "manifest.json").read_text())
    data["models"]["perception"]["artifacts"][0]["vision_quant"] = "int4"
    (bad / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(BundleError, match="vision_quant 'int4' is not one of fp32, int8"):
        open_bundle(bad, verify="size")


def test_a_7_bit_graph_outside_the_bounds_falls_back_to_uint8_weights(tmp_path, tiny_perception_dir, monkeypatch):
    import export.onnx as onnx_export

    checked = []

    def only_uint8_passes(metrics, what):
        checked.append(metrics["weights"])
        if metrics["weights"] == "s7":
            raise vision_parity.VisionParityError(f"{what}: refused for this test")
        return vision_parity.check_vision_parity(metrics, what)

    monkeypatch.setattr(onnx_export, "check_vision_parity", only_uint8_passes)
    report: dict = {}
    out = export_bundle(ExportRequest(out=tmp_path / "bundle", perception=tiny_perception_dir, formats=("onnx",),
                                      quants=("int8",), vision_quant="int8", verify=False), report=report)
    assert checked == ["s7", "u8"]
    assert report["vision_parity"]["perception-vision-int8.onnx"]["weights"] == "u8"
    graph = onnx.load(str(out / "perception-vision-int8.onnx"))
    weights = {n.input[1] for n in graph.graph.node if n.op_type == "MatMulInteger"}
    assert {i.data_type for i in graph.graph.initializer if i.name in weights} == {onnx.TensorProto.UINT8}


def test_parity_outside_the_bound_is_refused(tmp_path, tiny_perception_dir, monkeypatch):
    monkeypatch.setitem(vision_parity.VISION_BOUNDS, "embed_rel_l2", (1e-9, "max"))
    out = tmp_path / "bundle"
    with pytest.raises(vision_parity.VisionParityError,
                       match=r"int8 vision graph of the perception model \(u8 weights\): embed_rel_l2 0\.0\d+ is above the bound"):
        export_bundle(ExportRequest(out=out, perception=tiny_perception_dir, formats=("onnx",), quants=("int8",),
                                    vision_quant="int8", verify=False))
    assert not out.exists()


@pytest.mark.parametrize("kw, message", [
    ({"vision_quant": "int4", "formats": ("onnx",)}, "the ONNX vision graph can be fp32, int8, not 'int4'"),
    ({"vision_quant": "int8", "formats": ("gguf",)}, "--vision-quant applies to the perception model's ONNX"),
])
def test_bad_vision_quant_is_refused_before_any_work(tmp_path, tiny_perception_dir, kw, message):
    quants = ("int8",) if kw["formats"] == ("onnx",) else ("q8_0",)
    with pytest.raises(ConfigError, match=message):
        export_bundle(ExportRequest(out=tmp_path / "b", perception=tiny_perception_dir, quants=quants,
                                    verify=False, **kw))


def test_cli_refuses_vision_quant_without_onnx_in_one_line(tmp_path, tiny_perception_dir, capsys):
    from edge.cli import main

    rc = main(["export", "--perception", str(tiny_perception_dir), "--format", "gguf", "--vision-quant", "int8",
               "--out", str(tmp_path / "b")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc != 0 and len(err) == 1 and "--vision-quant applies to the perception model's ONNX" in err[0]
    assert not (tmp_path / "b").exists()
