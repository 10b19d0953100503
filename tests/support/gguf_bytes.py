"""GGUF files built byte by byte (valid and hostile), for the reader's tests and the
malformed-input corpus."""

from __future__ import annotations

import struct


def s(text: str) -> bytes:
    raw = text.encode()
    return struct.pack("<Q", len(raw)) + raw


def kv_u32(key: str, v: int) -> bytes:
    return s(key) + struct.pack("<II", 4, v)


def kv_str(key: str, v: str) -> bytes:
    return s(key) + struct.pack("<I", 8) + s(v)


def kv_f32_array(key: str, values: list[float]) -> bytes:
    return s(key) + struct.pack("<IIQ", 9, 6, len(values)) + struct.pack(f"<{len(values)}f", *values)


def tensor(name: str, shape: tuple[int, ...], gtype: int, offset: int) -> bytes:
    return s(name) + struct.pack("<I", len(shape)) + struct.pack(f"<{len(shape)}Q", *shape) + \
        struct.pack("<IQ", gtype, offset)


def build(kvs: list[bytes], tensors: list[bytes], data: bytes, *, version: int = 3,
          n_kv: int | None = None, n_tensors: int | None = None, magic: bytes = b"GGUF") -> bytes:
    head = magic + struct.pack("<IQQ", version, len(tensors) if n_tensors is None else n_tensors,
                               len(kvs) if n_kv is None else n_kv)
    body = head + b"".join(kvs) + b"".join(tensors)
    pad = (-len(body)) % 32
    return body + b"\0" * pad + data
