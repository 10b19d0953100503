"""Session fixtures for the export tests: loaded tiny models and their GGUF exports."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from tests.onnx_support import load_model


@pytest.fixture(scope="session")
def reasoner_model(tiny_reasoner_dir):
    return load_model(tiny_reasoner_dir)  # one loaded copy, shared with tests.onnx_support's users


@pytest.fixture(scope="session")
def perception_model(tiny_perception_dir):
    return load_model(tiny_perception_dir)


@pytest.fixture(scope="session")
def qwen3_reasoner_model(tmp_path_factory, qwen3_tokenizer_dir):
    """Tiny Qwen3 with the real Qwen3 tokenizer and embedding rows padded to 151936."""
    from training.models.loading import load_reasoner
    from training.models.sizes import qwen3_tiny
    from training.models.tiny import tiny_reasoner

    out = tiny_reasoner(tmp_path_factory.mktemp("qwen3_reasoner"), qwen3_tokenizer_dir,
                        text=replace(qwen3_tiny(), vocab_size=151_936))
    return load_reasoner(out)


@pytest.fixture(scope="session")
def gguf_f32_dir(tmp_path_factory, reasoner_model, perception_model, tiny_tokenizer_dir) -> Path:
    """reasoner-f32.gguf, perception-f32.gguf and perception-mmproj-f32.gguf."""
    from export.gguf import export_gguf

    out = tmp_path_factory.mktemp("gguf_f32")
    export_gguf(reasoner_model, tiny_tokenizer_dir, out, role="reasoner", quant="f32")
    export_gguf(perception_model, tiny_tokenizer_dir, out, role="perception", quant="f32")
    return out


@pytest.fixture(scope="session")
def qwen3_gguf(tmp_path_factory, qwen3_reasoner_model, qwen3_tokenizer_dir) -> Path:
    from export.gguf import export_gguf

    out = tmp_path_factory.mktemp("gguf_qwen3")
    files = export_gguf(qwen3_reasoner_model, qwen3_tokenizer_dir, out, role="reasoner", quant="f32")
    return out / files["model"]
