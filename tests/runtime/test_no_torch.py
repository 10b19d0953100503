"""`runtime` imports and answers through ONNX Runtime with torch, transformers and jinja2 absent."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image

from tests.support.blocked_imports import WITHOUT_TORCH, BlockedRun, run_without


def _run(code: str) -> BlockedRun:
    return run_without(WITHOUT_TORCH, code)


def test_import_runtime_is_light():
    proc = _run("""
        import sys
        import runtime
        heavy = [m for m in ("numpy", "onnxruntime", "llama_cpp", "PIL", "tokenizers") if m in sys.modules]
        assert not heavy, heavy
        from runtime import ExtractThink, Result, parse_answer  # resolved lazily
        print("ok")
    """)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"
    assert proc.attempted == []


def test_full_answer_through_onnx_without_torch(rt_bundle_dir, tmp_path):
    img = tmp_path / "photo.png"
    Image.fromarray((np.random.default_rng(0).random((32, 48, 3)) * 255).astype(np.uint8)).save(img)
    proc = _run(f"""
        import json
        from runtime import ExtractThink
        with ExtractThink.load({str(rt_bundle_dir)!r}, backend="onnx", threads=1) as et:
            result = et.answer({str(img)!r}, "How many shapes?", ["1", "2", "3"],
                               hint_budget=4, extraction_budget=8, thinking_budget=8, answer_budget=6)
        print(json.dumps(result.to_dict()))
    """)
    assert proc.returncode == 0, proc.stderr
    assert proc.attempted == []  # not even a tolerated attempt to import torch, transformers or jinja2
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["answer"] in ("A", "B", "C")
    assert set(result["stages"]) == {"hint", "vision", "extraction", "thinking", "answer"}


def test_a_tolerated_import_is_still_seen():
    """The check above can fail: an import that is caught and worked around is recorded."""
    proc = run_without(("numpy",), """
        try:
            import numpy.linalg
        except ImportError:
            print("worked around")
    """)
    assert proc.returncode == 0 and proc.stdout.strip() == "worked around"
    assert proc.attempted == ["numpy"]  # the parent package is looked up first
