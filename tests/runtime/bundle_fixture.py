"""The tiny two-format bundle (GGUF f32 + ONNX fp32) shared by runtime and edge tests."""

from __future__ import annotations

from pathlib import Path

import pytest


def tiny_two_format_bundle(request: pytest.FixtureRequest) -> Path:
    return Path(request.getfixturevalue("tiny_bundle_dir"))
