"""Shared fixtures: tiny real-architecture checkpoints built once per test session.

Nothing is downloaded: tokenizers are trained or rebuilt offline, models are random
weights with the real SigLIP / Qwen3 / LLaVA code, saved and reloaded like any
checkpoint.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# The tests must never reach a model hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


@pytest.fixture(scope="session")
def tiny_tokenizer_dir(tmp_path_factory) -> Path:
    from training.models.tiny import tiny_tokenizer

    out = tmp_path_factory.mktemp("tiny_tokenizer")
    tiny_tokenizer(out)
    return out


@pytest.fixture(scope="session")
def qwen3_tokenizer_dir(tmp_path_factory) -> Path:
    from training.models.tiny import qwen3_tokenizer

    out = tmp_path_factory.mktemp("qwen3_tokenizer")
    qwen3_tokenizer(out)
    return out


@pytest.fixture(scope="session")
def tiny_perception_dir(tmp_path_factory, tiny_tokenizer_dir) -> Path:
    from training.models.tiny import tiny_perception

    return tiny_perception(tmp_path_factory.mktemp("tiny_perception"), tiny_tokenizer_dir)


@pytest.fixture(scope="session")
def tiny_reasoner_dir(tmp_path_factory, tiny_tokenizer_dir) -> Path:
    from training.models.tiny import tiny_reasoner

    return tiny_reasoner(tmp_path_factory.mktemp("tiny_reasoner"), tiny_tokenizer_dir)


@pytest.fixture(scope="session")
def tiny_bundle_dir(tmp_path_factory, tiny_perception_dir, tiny_reasoner_dir) -> Path:
    """The tiny perception + reasoner exported once per session to GGUF f32 and ONNX fp32.

    Parity verification is skipped here (tests/export covers it) to keep the session fast.
    """
    from export.bundle_writer import ExportRequest, export_bundle

    out = tmp_path_factory.mktemp("tiny_bundle") / "bundle"
    return export_bundle(ExportRequest(
        out=out, perception=tiny_perception_dir, reasoner=tiny_reasoner_dir,
        formats=("gguf", "onnx"), quants=("f32",), verify=False,
    ))
