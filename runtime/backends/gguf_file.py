"""A small, strict GGUF header reader (no numpy, no gguf package, no tensor data).

The llama.cpp backend uses it to check a file *before* handing it to native code: the
magic and version, that every count and length fits in the file before anything is
allocated, that every tensor's data lies inside the file (older llama.cpp mmproj loaders
did not check this), and to read the few metadata values the bundle must agree with
(architecture, image size, mean/std). Any malformed input raises one `BundleError`.
"""

from __future__ import annotations

import mmap
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runtime.errors import BundleError
from runtime.gguf_constants import GGML_BLOCK_SIZES, SCALAR_FORMATS, GGUFValueType, Keys

MAGIC = b"GGUF"
SUPPORTED_VERSIONS = (2, 3)
DEFAULT_ALIGNMENT = 32
MAX_STRING = 1 << 24  # 16 MiB: no legitimate key or value string is longer
MAX_DIMS = 4


@dataclass(frozen=True)
class TensorInfo:
    name: str
    shape: tuple[int, ...]  # ggml order (ne0 first)
    ggml_type: int
    offset: int  # absolute file offset of the data


@dataclass
class GGUFInfo:
    path: Path
    version: int
    size: int
    metadata: dict[str, Any] = field(default_factory=dict)
    tensors: list[TensorInfo] = field(default_factory=list)

    def get(self, key: str, default: Any = None) -> Any:
        return self.metadata.get(key, default)


class _Cursor:
    def __init__(self, buf: Any, path: Path) -> None:
        self.buf, self.pos, self.path, self.size = buf, 0, path, len(buf)

    def need(self, n: int) -> None:
        if n < 0 or self.pos + n > self.size:
            raise BundleError(f"{self.path}: truncated or corrupt GGUF (header runs past the end)")

    def unpack(self, fmt: str, n: int) -> Any:
        self.need(n)
        (value,) = struct.unpack_from(fmt, self.buf, self.pos)
        self.pos += n
        return value

    def string(self) -> str:
        n = self.unpack("<Q", 8)
        if n > MAX_STRING:
            raise BundleError(f"{self.path}: corrupt GGUF (a string claims {n} bytes)")
        self.need(n)
        raw = bytes(self.buf[self.pos : self.pos + n])
        self.pos += n
        return raw.decode("utf-8", errors="replace")

    def skip_string(self) -> None:
        n = self.unpack("<Q", 8)
        self.need(n)
        self.pos += n

    def value(self, vtype: int, keep: bool) -> Any:
        if vtype in SCALAR_FORMATS:
            return self.unpack(*SCALAR_FORMATS[vtype])
        if vtype == GGUFValueType.STRING:
            return self.string()
        if vtype == GGUFValueType.ARRAY:
            etype = self.unpack("<I", 4)
            count = self.unpack("<Q", 8)
            if etype in SCALAR_FORMATS:
                fmt, size = SCALAR_FORMATS[etype]
                self.need(count * size)  # checked before any allocation
                if not keep:
                    self.pos += count * size
                    return None
                out = list(struct.unpack_from(f"<{count}{fmt[1]}", self.buf, self.pos))
                self.pos += count * size
                return out
            if etype == GGUFValueType.STRING:
                self.need(count * 8)  # every string needs at least its length field
                if not keep:
                    for _ in range(count):
                        self.skip_string()
                    return None
                return [self.string() for _ in range(count)]
            raise BundleError(f"{self.path}: corrupt GGUF (array of unsupported type {etype})")
        raise BundleError(f"{self.path}: corrupt GGUF (unknown value type {vtype})")


def read_gguf_info(path: str | os.PathLike[str], *, arrays: frozenset[str] | set[str] = frozenset(),
                   check_tensors: bool = True) -> GGUFInfo:
    """Parse the header of `path`. Array values are kept only for keys in `arrays`."""
    p = Path(path)
    try:
        size = p.stat().st_size
        if size < 24:
            raise BundleError(f"{p}: not a GGUF file ({size} bytes)")
        with open(p, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            return _parse(buf, p, size, arrays, check_tensors)
    except OSError as exc:
        raise BundleError(f"{p}: cannot read ({exc.strerror or exc})") from None


def _parse(buf: Any, p: Path, size: int, arrays: Any, check_tensors: bool) -> GGUFInfo:
    cur = _Cursor(buf, p)
    if bytes(buf[:4]) != MAGIC:
        raise BundleError(f"{p}: not a GGUF file (bad magic)")
    cur.pos = 4
    version = cur.unpack("<I", 4)
    if version not in SUPPORTED_VERSIONS:
        raise BundleError(f"{p}: unsupported GGUF version {version}")
    n_tensors = cur.unpack("<Q", 8)
    n_kv = cur.unpack("<Q", 8)
    # each KV needs >= 12 bytes and each tensor info >= 24: reject absurd counts up front
    if n_kv * 12 + n_tensors * 24 > size:
        raise BundleError(f"{p}: truncated or corrupt GGUF (counts exceed the file size)")
    info = GGUFInfo(p, version, size)
    for _ in range(n_kv):
        key = cur.string()
        vtype = cur.unpack("<I", 4)
        value = cur.value(vtype, keep=key in arrays or vtype != GGUFValueType.ARRAY)
        if value is not None:
            info.metadata[key] = value
    raw_tensors = []
    for _ in range(n_tensors):
        name = cur.string()
        n_dims = cur.unpack("<I", 4)
        if n_dims > MAX_DIMS:
            raise BundleError(f"{p}: corrupt GGUF (tensor {name!r} has {n_dims} dims)")
        shape = tuple(cur.unpack("<Q", 8) for _ in range(n_dims))
        gtype = cur.unpack("<I", 4)
        offset = cur.unpack("<Q", 8)
        raw_tensors.append((name, shape, gtype, offset))
    align = info.metadata.get(Keys.General.ALIGNMENT, DEFAULT_ALIGNMENT)
    if not isinstance(align, int) or align <= 0 or align & (align - 1):
        raise BundleError(f"{p}: corrupt GGUF (alignment {align!r})")
    data_start = (cur.pos + align - 1) // align * align
    for name, shape, gtype, offset in raw_tensors:
        start = data_start + offset
        info.tensors.append(TensorInfo(name, shape, gtype, start))
        # Only the types exported files use are bounds-checked here; llama.cpp still
        # validates the others when it can.
        if not check_tensors or gtype not in GGML_BLOCK_SIZES:
            continue
        blk, bsize = GGML_BLOCK_SIZES[gtype]
        n = 1
        for d in shape:
            n *= d
        if start + n // blk * bsize > size:
            raise BundleError(f"{p}: truncated GGUF (tensor {name!r} data runs past the end of the file)")
    return info
