"""Write one GGUF file atomically, one tensor in memory at a time.

`gguf.GGUFWriter.add_tensor` keeps every tensor alive until the file is written, which
for a 0.6B model in F32 doubles peak memory. Here tensors are *planned* first (name,
shape, ggml type, a function producing the float32 data), the header and tensor index
are written from the plan, then each tensor is produced, encoded, written and dropped.
The file is written under a temporary name in the target folder and renamed only after
it is complete and fsynced, so an interrupted export never leaves a finished-looking file.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from gguf import GGUFWriter

from export.gguf.quantize import encode, ggml_type, nbytes
from runtime.atomic import published_mode
from runtime.progress import Progress

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class TensorPlan:
    name: str
    shape: tuple[int, ...]  # numpy (row-major) order, as in the torch state dict
    type_name: str  # ggml type, e.g. "F32", "Q8_0"
    make: Callable[[], np.ndarray]  # produces the float32 data when it is written


def temp_path(final: Path, tag: str = "tmp") -> Path:
    """A fresh hidden file beside `final` (same filesystem, so rename is atomic)."""
    fd, name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=f".{tag}", dir=final.parent)
    os.close(fd)
    return Path(name)


def fsync_file(path: Path) -> None:
    """fsync, and give the file the mode published files have (mkstemp made it 0600)."""
    with open(path, "rb+") as fh:
        if hasattr(os, "fchmod"):  # POSIX; Windows has no such modes
            os.fchmod(fh.fileno(), published_mode(0, is_dir=False))
        os.fsync(fh.fileno())


def write_gguf_file(
    path: Path,
    arch: str,
    add_metadata: Callable[[GGUFWriter], None],
    tensors: list[TensorPlan],
    *,
    progress: Progress | None = None,
    stage: str = "gguf",
) -> Path:
    """Write `path` (via a temporary name) and return it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    writer = GGUFWriter(tmp, arch)
    try:
        add_metadata(writer)
        for t in tensors:
            writer.add_tensor_info(t.name, t.shape, np.dtype(np.float32),
                                   nbytes(t.shape, t.type_name), raw_dtype=ggml_type(t.type_name))
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        total = max(1, sum(nbytes(t.shape, t.type_name) for t in tensors))
        done = 0
        for t in tensors:
            data = t.make()
            if tuple(data.shape) != tuple(t.shape):
                raise ValueError(f"{t.name}: planned shape {t.shape}, got {tuple(data.shape)}")
            writer.write_tensor_data(encode(data, t.type_name))
            done += nbytes(t.shape, t.type_name)
            if progress is not None:
                progress(stage, done / total)
        writer.close()
        fsync_file(tmp)
        os.replace(tmp, path)
    except BaseException:
        writer.close()
        tmp.unlink(missing_ok=True)
        raise
    log.info("wrote %s (%.1f MB, %d tensors)", path.name, path.stat().st_size / 1e6, len(tensors))
    return path
