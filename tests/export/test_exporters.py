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


# What each exporter says to: a Llama model as the reasoner, a reasoner as the perception
# model, a perception model as the reasoner, an unknown role.
REFUSALS = {
    "gguf": ("model_type 'llama'", "perception model must be", "reasoner model must be", "role must be"),
    "onnx": ("Qwen3ForCausalLM", "LlavaForConditionalGeneration", "Qwen3ForCausalLM", "unknown model role"),
}


@pytest.mark.parametrize("fmt", ["gguf", "onnx"])
def test_a_model_that_does_not_fit_its_role_is_refused(fmt, reasoner_model, perception_model, tiny_tokenizer_dir,
                                                        tmp_path):
    from transformers import LlamaConfig, LlamaForCausalLM

    export, quant = _exporter(fmt)
    llama = LlamaForCausalLM(LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                         num_attention_heads=2, num_key_value_heads=2, vocab_size=1280))
    cases = [(llama, "reasoner"), (reasoner_model, "perception"), (perception_model, "reasoner"),
             (reasoner_model, "planner")]
    for (model, role), message in zip(cases, REFUSALS[fmt], strict=True):
        with pytest.raises(ConfigError, match=message):
            export(model, tiny_tokenizer_dir, tmp_path, role=role, quant=quant)
    assert list(tmp_path.iterdir()) == []
