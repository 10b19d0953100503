"""Quantization names: runtime.manifest owns the lists, and every name on them exports."""

from __future__ import annotations

import pytest

from edge.cli import build_parser
from export.bundle_writer import ExportRequest, assign_quants, export_bundle
from export.gguf.quantize import QUANT_SPECS
from export.onnx.common import check_quant
from runtime.bundle import open_bundle
from runtime.errors import ConfigError
from runtime.manifest import GGUF_QUANTS, KNOWN_QUANTS, ONNX_QUANTS, QUANT_ALIASES, canonical_quant


def test_the_exporters_know_exactly_the_manifest_names():
    assert tuple(QUANT_SPECS) == GGUF_QUANTS
    assert [check_quant(q) for q in ONNX_QUANTS] == list(ONNX_QUANTS)
    for fmt, aliases in QUANT_ALIASES.items():
        for alias, name in aliases.items():
            assert canonical_quant(fmt, alias) == name and alias in KNOWN_QUANTS[fmt]
    assert check_quant("f32") == "fp32"
    assert canonical_quant("onnx", "q8_0") is None and canonical_quant("gguf", "int8") is None
    with pytest.raises(ConfigError, match="unsupported ONNX quantization 'q8_0'"):
        check_quant("q8_0")
    plan = assign_quants(("gguf", "onnx"), GGUF_QUANTS + ONNX_QUANTS)
    assert plan == {"gguf": list(GGUF_QUANTS), "onnx": list(ONNX_QUANTS)}


def test_edge_export_help_lists_every_name():
    sub = next(a for a in build_parser("export")._actions if a.dest == "command")
    epilog = sub.choices["export"].epilog
    for q in GGUF_QUANTS + ONNX_QUANTS:
        assert f" {q}" in epilog, q


def test_every_listed_quant_exports(tmp_path, tiny_reasoner_dir):
    """Tiny reasoner, both formats, every name on the manifest's lists, one bundle."""
    out = export_bundle(ExportRequest(out=tmp_path / "all", reasoner=tiny_reasoner_dir, formats=("gguf", "onnx"),
                                      quants=GGUF_QUANTS + ONNX_QUANTS, verify=False))
    arts = open_bundle(out, verify="full").manifest.models["reasoner"].artifacts
    assert [(a.format, a.quant) for a in arts] == [("gguf", q) for q in GGUF_QUANTS] + [("onnx", q) for q in ONNX_QUANTS]
    for a in arts:
        assert all((out / f).stat().st_size > 0 for f in a.files.values())
