"""Our GGUF names (runtime.gguf_constants) against gguf-py's, and against the files we write."""

from __future__ import annotations

import gguf
import pytest

from runtime.backends.gguf_file import read_gguf_info
from runtime.gguf_constants import (
    GGML_BLOCK_SIZES,
    QWEN3_ARCH,
    GGMLType,
    GGUFValueType,
    Keys,
    TokenType,
    arch_key,
)

# Keys llama.cpp reads that gguf-py does not name (group, attribute).
NOT_IN_GGUF_PY = {("ClipVision", "FEATURE_LAYER")}


def _groups(cls: type, prefix: str = "") -> dict[str, type]:
    out = {}
    for name, value in vars(cls).items():
        if isinstance(value, type) and not name.startswith("_"):
            out[prefix + name] = value
            out.update(_groups(value, prefix + name + "."))
    return out


def _keys(group: type) -> dict[str, str]:
    return {k: v for k, v in vars(group).items() if isinstance(v, str) and not k.startswith("_")}


def test_keys_match_gguf_py():
    checked = 0
    for path, ours in _groups(Keys).items():
        theirs = gguf.Keys
        for part in path.split("."):
            theirs = getattr(theirs, part)  # every group we have, gguf-py has
        for name, value in _keys(ours).items():
            if (path, name) in NOT_IN_GGUF_PY:
                assert not hasattr(theirs, name)
                continue
            assert getattr(theirs, name) == value, f"Keys.{path}.{name}"
            checked += 1
    assert checked >= 35


@pytest.mark.parametrize("ours, theirs", [
    (GGUFValueType, gguf.GGUFValueType),
    (GGMLType, gguf.GGMLQuantizationType),
    (TokenType, gguf.TokenType),
])
def test_type_ids_match_gguf_py(ours, theirs):
    for member in ours:
        assert theirs[member.name].value == member.value, member


def test_block_sizes_match_gguf_py():
    assert set(GGML_BLOCK_SIZES) == set(GGMLType)
    for t, size in GGML_BLOCK_SIZES.items():
        assert gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType(t)] == size, t


def test_every_key_our_writer_writes_is_named(rt_bundle):
    named = {arch_key(v, arch) for g in _groups(Keys).values() for v in _keys(g).values()
             for arch in (QWEN3_ARCH,)}
    seen = set()
    for role in ("perception", "reasoner"):
        for part, rel in rt_bundle.artifact(role, "gguf").files.items():
            # gguf-py's reader lists every key, arrays included (ours keeps only the asked-for arrays)
            keys = {k for k in gguf.GGUFReader(rt_bundle.path(rel)).fields if not k.startswith("GGUF.")}
            assert set(read_gguf_info(rt_bundle.path(rel)).metadata) <= keys
            assert keys <= named, (part, sorted(keys - named))
            seen |= keys
    assert Keys.ClipVision.IMAGE_SIZE in seen and arch_key(Keys.Rope.FREQ_BASE, QWEN3_ARCH) in seen
