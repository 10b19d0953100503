"""Copy a GGUF with some metadata changed (gguf-py's reader and writer), to make the stock
files compose must handle from the project's own exports: another chat template, renamed
vocabulary entries (a model without think tokens), no template at all."""

from __future__ import annotations

from pathlib import Path
from typing import Any

_DROP = object()


def rewrite_gguf(src: Path, dst: Path, *, set_strings: dict[str, Any] | None = None,
                 rename_tokens: dict[str, str] | None = None) -> Path:
    """`set_strings`: key -> new string value (None drops the key). `rename_tokens`: token
    text -> new text in tokenizer.ggml.tokens (ids and types unchanged)."""
    from gguf import GGUFReader, GGUFValueType, GGUFWriter

    set_strings = dict(set_strings or {})
    rename = rename_tokens or {}
    r = GGUFReader(src)
    arch = r.fields["general.architecture"].contents()
    w = GGUFWriter(str(dst), arch)
    for name, field in r.fields.items():
        if name.startswith("GGUF.") or name == "general.architecture":
            continue
        if name in set_strings:
            value = set_strings.pop(name)
            if value is not None:
                w.add_key_value(name, value, GGUFValueType.STRING)
            continue
        value = field.contents()
        if name == "tokenizer.ggml.tokens":
            value = [rename.get(t, t) for t in value]
        if field.types[0] == GGUFValueType.ARRAY:
            w.add_key_value(name, value, GGUFValueType.ARRAY, sub_type=field.types[-1])
        else:
            w.add_key_value(name, value, field.types[0])
    for name, value in set_strings.items():
        if value is not None:
            w.add_key_value(name, value, GGUFValueType.STRING)
    for t in r.tensors:
        w.add_tensor(t.name, t.data, raw_shape=t.data.shape, raw_dtype=t.tensor_type)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return dst
