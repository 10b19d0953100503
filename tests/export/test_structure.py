"""The export package's shape: heavy dependencies imported only when used (import cycles and
directions: tests/test_architecture.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from export.checkpoint import image_preprocess

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "transformers", "onnxruntime", "llama_cpp", "accelerate", "matplotlib")


def _module(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def test_export_modules_import_without_the_heavy_dependencies():
    """torch & co. stay function-local in export: listing, help and manifest work need none."""
    modules = sorted(_module(p) for p in (ROOT / "export").rglob("*.py"))
    code = (f"import sys\nfor n in {HEAVY!r}: sys.modules[n] = None\n"
            f"import importlib, json\nfor m in {modules!r}: importlib.import_module(m)\n"
            f"print(json.dumps(sorted(n for n in {HEAVY!r} if sys.modules.get(n))))")
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300,
                         env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert res.returncode == 0, res.stderr[-3000:]
    assert json.loads(res.stdout.strip().splitlines()[-1]) == []


@pytest.mark.parametrize(("content", "phrase"), [
    ({"image_std": [0.5, 0.0, 0.5]}, "image_std must be > 0"),
    ({"image_mean": [0.5, 0.5]}, "image_mean must be 3 finite numbers"),
    ({"image_mean": "grey"}, "image_mean must be 3"),
    ({"resample": 0}, "resample 0 is not supported"),
    ([1, 2], "expected a JSON object"),
])
def test_the_one_preprocessor_reader_validates(tmp_path, content, phrase):
    from runtime.errors import ConfigError

    (tmp_path / "preprocessor_config.json").write_text(json.dumps(content))
    with pytest.raises(ConfigError, match=phrase):
        image_preprocess(tmp_path, 32)


def test_preprocessor_config_reaches_the_manifest(tmp_path):
    (tmp_path / "preprocessor_config.json").write_text(json.dumps(
        {"image_mean": [0.48, 0.46, 0.41], "image_std": [0.27, 0.26, 0.28], "resample": 2}))
    prep = image_preprocess(tmp_path, 384)
    assert prep.size == 384 and prep.mean == (0.48, 0.46, 0.41) and prep.resample == "bilinear"
    assert image_preprocess(tmp_path / "absent", 32).mean == (0.5, 0.5, 0.5)
