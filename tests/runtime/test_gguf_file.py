"""The strict GGUF header reader, on files built byte by byte (valid and hostile)."""

from __future__ import annotations

import struct
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runtime.backends.gguf_file import read_gguf_info
from runtime.errors import BundleError
from tests.support.gguf_bytes import build, kv_f32_array, kv_str, kv_u32, s, tensor


def valid() -> bytes:
    kvs = [kv_str("general.architecture", "clip"), kv_u32("clip.vision.image_size", 32),
           kv_f32_array("clip.vision.image_mean", [0.5, 0.5, 0.5])]
    tensors = [tensor("a", (4, 2), 0, 0), tensor("b", (32,), 8, 32)]  # F32 [2,4], Q8_0 one block
    return build(kvs, tensors, b"\1" * 32 + b"\2" * 34)


def write(tmp_path, data: bytes):
    p = tmp_path / "x.gguf"
    p.write_bytes(data)
    return p


def test_valid_file(tmp_path):
    info = read_gguf_info(write(tmp_path, valid()), arrays={"clip.vision.image_mean"})
    assert info.version == 3
    assert info.get("general.architecture") == "clip"
    assert info.get("clip.vision.image_size") == 32
    assert info.get("clip.vision.image_mean") == [0.5, 0.5, 0.5]
    assert [t.name for t in info.tensors] == ["a", "b"]
    assert info.tensors[1].shape == (32,)
    # arrays not asked for are skipped, not kept
    assert read_gguf_info(write(tmp_path, valid())).get("clip.vision.image_mean") is None


@pytest.mark.parametrize("make, match", [
    (lambda: b"", "not a GGUF"),
    (lambda: b"GGML" + valid()[4:], "bad magic"),
    (lambda: valid()[:-1], "runs past the end"),
    (lambda: valid()[:60], "truncated or corrupt"),
    (lambda: build([], [], b"", version=7), "version 7"),
    (lambda: build([], [], b"" + b"\0" * 64, n_kv=2**62), "counts exceed"),
    (lambda: build([s("k") + struct.pack("<I", 8) + struct.pack("<Q", 2**40)], [], b"\0" * 64),
     "string claims"),
    (lambda: build([s("k") + struct.pack("<IIQ", 9, 4, 2**40)], [], b"\0" * 64), "truncated or corrupt"),
    (lambda: build([s("k") + struct.pack("<I", 99)], [], b"\0" * 64), "unknown value type"),
    (lambda: build([s("k") + struct.pack("<IIQ", 9, 42, 1)], [], b"\0" * 64), "array of unsupported"),
    (lambda: build([], [s("t") + struct.pack("<I", 9) + b"\0" * 100], b"\0" * 64), "dims"),
    (lambda: build([], [tensor("t", (1024, 1024), 0, 0)], b"\0" * 64), "runs past the end"),
    (lambda: build([kv_u32("general.alignment", 3)], [], b"\0" * 64), "alignment"),
])
def test_hostile_files(make, match, tmp_path):
    with pytest.raises(BundleError, match=match):
        read_gguf_info(write(tmp_path, make()))


def test_missing_file(tmp_path):
    with pytest.raises(BundleError, match="cannot read"):
        read_gguf_info(tmp_path / "nope.gguf")


@settings(max_examples=300, deadline=None, derandomize=True)
@given(edits=st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=6),
       cut=st.one_of(st.none(), st.integers(0, 400)), arrays=st.booleans())
def test_damaged_files_parse_or_raise_bundle_error(edits, cut, arrays):
    """Random byte damage and truncation of a valid file: the reader returns a header or
    raises `BundleError` with one printable line, never anything else."""
    data = bytearray(valid())
    for pos, value in edits:
        data[pos % len(data)] = value
    if cut is not None:
        del data[cut:]
    with tempfile.TemporaryDirectory() as d:
        path = write(Path(d), bytes(data))
        try:
            info = read_gguf_info(path, arrays={"clip.vision.image_mean"} if arrays else set())
        except BundleError as exc:
            assert "\n" not in str(exc) and str(exc).encode("utf-8")
            return
    assert isinstance(info.metadata, dict)
