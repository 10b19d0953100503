"""A Q8_0 mmproj at export: which tensors are quantized, the parity check against F16,
and the runtime running the bundle."""

from __future__ import annotations

import numpy as np
import pytest
from gguf import GGMLQuantizationType, GGUFReader

import export.gguf.mmproj_parity as parity
from export.bundle_writer import ExportRequest, export_bundle
from export.verify import verify_bundle
from runtime.errors import ConfigError
from runtime.pipeline import ExtractThink


@pytest.fixture(scope="module")
def q8_bundle(tmp_path_factory, tiny_perception_dir, tiny_reasoner_dir):
    report: dict = {}
    out = export_bundle(ExportRequest(out=tmp_path_factory.mktemp("mmq8") / "bundle", perception=tiny_perception_dir,
                                      reasoner=tiny_reasoner_dir, formats=("gguf",), quants=("f32",),
                                      mmproj_quant="q8_0", verify=True), report=report)
    return out, report


def test_q8_0_mmproj_types_and_report(q8_bundle):
    out, report = q8_bundle
    types = {t.name: GGMLQuantizationType(t.tensor_type).name
             for t in GGUFReader(out / "perception-mmproj-q8_0.gguf").tensors}
    assert types["v.blk.0.attn_q.weight"] == "Q8_0" and types["mm.0.weight"] == "Q8_0"
    assert types["v.blk.0.ffn_down.weight"] == "F16"  # rows of 80: not a multiple of 32
    assert types["v.patch_embd.weight"] == "F16" and types["v.position_embd.weight"] == "F16"
    assert all(types[n] == "F32" for n in types if n.endswith(".bias") or ".ln" in n)
    assert not list(out.glob("*f16*"))  # the F16 reference was only temporary
    m = report["mmproj_parity"]["perception-mmproj-q8_0.gguf"]
    assert 0 < m["embed_mean_rel_diff"] < parity.MMPROJ_BOUNDS["embed_mean_rel_diff"][0]
    assert 0 < m["embed_max_rel_diff"] < 0.1 and 0.99 < m["embed_min_token_cosine"] < 1.0


def test_verify_reports_the_f16_comparison(q8_bundle):
    out, _ = q8_bundle
    report = verify_bundle(out, roles=("perception",))
    (art,) = [a for a in report["artifacts"] if a["format"] == "gguf"]
    assert art["passed"], art
    assert 0 < art["metrics"]["mmproj_vs_f16_embed_rel_l2"] < 0.05 and "mmproj_vs_f16_embed_rel_l2" in art["tolerances"]


def test_runtime_runs_the_q8_0_mmproj(q8_bundle):
    out, _ = q8_bundle
    image = (np.random.default_rng(1).random((30, 30, 3)) * 255).astype(np.uint8)
    with ExtractThink.load(out, backend="llamacpp", threads=1) as et:
        assert "mmproj-q8_0" in str(et.bundle.artifact("perception", "gguf").files["mmproj"])
        r = et.answer(image, "How many?", ["1", "2"], mode="end-to-end", answer_budget=4)
    assert r.stages["vision"].tokens == 16 and not r.stages["vision"].cached


def test_parity_outside_the_bound_is_refused(tmp_path, tiny_perception_dir, monkeypatch):
    monkeypatch.setitem(parity.MMPROJ_BOUNDS, "embed_mean_rel_diff", (1e-6, "max"))
    out = tmp_path / "bundle"
    with pytest.raises(parity.MmprojParityError, match=r"embed_mean_rel_diff 0\.0\d+ is above the bound 1e-06"):
        export_bundle(ExportRequest(out=out, perception=tiny_perception_dir, formats=("gguf",), quants=("f32",),
                                    mmproj_quant="q8_0", verify=False))
    assert not out.exists()


def test_unknown_mmproj_quant_is_refused_before_any_work(tmp_path, tiny_perception_dir):
    with pytest.raises(ConfigError, match="the mmproj can be f32, f16, q8_0, not 'q4_0'"):
        export_bundle(ExportRequest(out=tmp_path / "b", perception=tiny_perception_dir, formats=("gguf",),
                                    quants=("f32",), mmproj_quant="q4_0", verify=False))
