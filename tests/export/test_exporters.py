"""What both exporters (GGUF, ONNX) refuse the same way, before any export work."""

from __future__ import annotations

import pytest

from runtime.errors import ConfigError


def _exporter(fmt: str):
    if fmt == "gguf":
        from export.gguf import export_gguf

        return export_gguf, "f32"
    pytest.importorskip("onnxruntime")
    from export.onnx import export_onnx

    return export_onnx, "fp32"


@pytest.mark.parametrize("fmt", ["gguf", "onnx"])
def test_missing_tokenizer_and_unwritable_output(fmt, reasoner_model, tiny_tokenizer_dir, tmp_path):
    export, quant = _exporter(fmt)
    with pytest.raises(ConfigError, match="no tokenizer.json"):
        export(reasoner_model, tmp_path, tmp_path / "out", role="reasoner", quant=quant)
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(ConfigError, match="cannot create the output folder"):
        export(reasoner_model, tiny_tokenizer_dir, blocker / "out", role="reasoner", quant=quant)
