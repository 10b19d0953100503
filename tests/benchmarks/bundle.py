"""The tiny two-format bundle the benchmark and eval tests run on.

Prefers the shared session fixture `tiny_bundle_dir` (tests/conftest.py); until that
exists, exports the tiny perception and reasoner checkpoints to GGUF f32 + ONNX fp32 once
per session. Its manifest names the source checkpoints, so the transformers baseline can
load them.
"""

from __future__ import annotations

from pathlib import Path

import pytest

_built: dict[str, Path] = {}


def tiny_bundle(request: pytest.FixtureRequest) -> Path:
    try:
        return Path(request.getfixturevalue("tiny_bundle_dir"))
    except pytest.FixtureLookupError:
        pass
    factory = request.getfixturevalue("tmp_path_factory")
    key = str(factory.getbasetemp())
    if key not in _built:
        from export.bundle_writer import ExportRequest, export_bundle

        out = factory.mktemp("bench_bundle") / "tiny"
        _built[key] = export_bundle(ExportRequest(
            out=out, perception=request.getfixturevalue("tiny_perception_dir"),
            reasoner=request.getfixturevalue("tiny_reasoner_dir"), formats=("gguf", "onnx"), quants=("f32",),
            verify=False,
        ))
    return _built[key]


def write_png(path: Path, seed: int = 0, size: int = 40) -> Path:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(path)
    return path
