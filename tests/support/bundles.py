"""Copies of a test bundle with one file changed, its manifest rehashed to match.

For tests of what the runtime does with a bundle that passes every hash and size check
but whose content is wrong (damaged weights exported as they are, mismatched settings).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from runtime.backends.gguf_file import read_gguf_info


def copy_bundle(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def rehash(bundle: Path, rel: str) -> None:
    """Record `rel`'s current size and sha256 in the bundle's manifest."""
    data = (bundle / rel).read_bytes()
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["files"][rel] = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    (bundle / "manifest.json").write_text(json.dumps(manifest, indent=2))


def edit_manifest(bundle: Path, edit: Callable[[dict[str, Any]], None]) -> None:
    manifest = json.loads((bundle / "manifest.json").read_text())
    edit(manifest)
    (bundle / "manifest.json").write_text(json.dumps(manifest, indent=2))


def fill_gguf_tensor(bundle: Path, rel: str, tensor: str, value: float) -> None:
    """Overwrite an F32 tensor of a GGUF file in place with `value`, then rehash."""
    path = bundle / rel
    info = read_gguf_info(path)
    (t,) = [t for t in info.tensors if t.name == tensor]
    assert t.ggml_type == 0, f"{tensor} is not F32"
    n = int(np.prod(t.shape))
    with open(path, "r+b") as fh:
        fh.seek(t.offset)
        fh.write(np.full(n, value, dtype=np.float32).tobytes())
    rehash(bundle, rel)


def fill_onnx_initializer(bundle: Path, rel: str, name_suffix: str, value: float) -> str:
    """Set the first float initializer whose name ends with `name_suffix` to `value`
    (the graph keeps its weights inside the .onnx file); rehash. Returns its name."""
    import onnx  # the test stack has it; the runtime does not need it
    from onnx import numpy_helper

    path = bundle / rel
    model = onnx.load(str(path))
    for init in model.graph.initializer:
        if init.name.endswith(name_suffix) and init.data_type == onnx.TensorProto.FLOAT:
            arr = np.full_like(numpy_helper.to_array(init), value)
            init.CopyFrom(numpy_helper.from_array(arr, init.name))
            onnx.save(model, str(path))
            rehash(bundle, rel)
            return init.name
    raise AssertionError(f"{rel} has no float initializer named *{name_suffix}")
