"""`runtime` imports and answers through ONNX Runtime with torch, transformers and jinja2 absent."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
from PIL import Image

BLOCK = textwrap.dedent("""
    import sys
    for name in ("torch", "transformers", "jinja2"):
        sys.modules[name] = None  # any import of them now raises ImportError
""")


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", BLOCK + textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=300)


def test_import_runtime_is_light():
    proc = _run("""
        import runtime
        heavy = [m for m in ("numpy", "onnxruntime", "llama_cpp", "PIL", "tokenizers") if m in sys.modules]
        assert not heavy, heavy
        from runtime import ExtractThink, Result, parse_answer  # resolved lazily
        print("ok")
    """)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"


def test_full_answer_through_onnx_without_torch(rt_bundle_dir, tmp_path):
    img = tmp_path / "photo.png"
    Image.fromarray((np.random.default_rng(0).random((32, 48, 3)) * 255).astype(np.uint8)).save(img)
    proc = _run(f"""
        import json
        from runtime import ExtractThink
        with ExtractThink.load({str(rt_bundle_dir)!r}, backend="onnx", threads=1) as et:
            result = et.answer({str(img)!r}, "How many shapes?", ["1", "2", "3"],
                               hint_budget=4, extraction_budget=8, thinking_budget=8, answer_budget=6)
        loaded = sorted(m for m in ("torch", "transformers", "jinja2") if sys.modules.get(m) is not None)
        print(json.dumps({{"loaded": loaded, "result": result.to_dict()}}))
    """)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["loaded"] == []
    assert out["result"]["answer"] in ("A", "B", "C")
    assert set(out["result"]["stages"]) == {"hint", "vision", "extraction", "thinking", "answer"}
