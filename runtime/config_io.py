"""Strict (de)serialisation of frozen dataclass configs.

Every config in the project (manifests, generation settings, device profiles, training
stages) loads through `from_dict`: unknown keys and wrong types are rejected with the
dotted path of the offending field, so a typo never silently falls back to a default.
Numbers must be finite. JSON text is parsed by `parse_json`, which bounds size and
nesting before the parser recurses (a deeply nested file would otherwise end in a
RecursionError) and refuses NaN/Infinity and integers too long to convert.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import types
import typing
from pathlib import Path
from typing import Any, TypeVar, Union, get_args, get_origin, get_type_hints

from runtime.atomic import atomic_write_text
from runtime.errors import ConfigError

T = TypeVar("T")

MAX_JSON_BYTES = 16 << 20  # configs and manifests are kilobytes; a 16 MB one is not a config
# The deepest config here (a manifest: models.<role>.artifacts[i].files) is 5 levels;
# json's recursive parser fails near 1000, and any depth is one small file away.
MAX_JSON_DEPTH = 32
_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_JSON_BRACKET = re.compile(r"[\[\]{}]")


def json_depth(text: str, limit: int = MAX_JSON_DEPTH) -> int:
    """Nesting depth of JSON text (strings skipped), counted up to `limit` + 1 at most."""
    depth = deepest = 0
    for m in _JSON_BRACKET.finditer(_JSON_STRING.sub('""', text)):
        if m.group() in "[{":
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > limit:
                    break
        else:
            depth -= 1
    return deepest


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def parse_json(text: str | bytes, *, where: str, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """Parse JSON text, or raise `ConfigError` naming `where` (a file name, usually)."""
    if isinstance(text, (bytes, bytearray)):
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{where}: not valid JSON (not UTF-8: {exc.reason} at byte {exc.start})") from None
    if len(text) > MAX_JSON_BYTES:
        raise ConfigError(f"{where}: {len(text):,} characters is over the {MAX_JSON_BYTES:,} limit for JSON here")
    if json_depth(text, max_depth) > max_depth:
        raise ConfigError(f"{where}: JSON nested deeper than {max_depth} levels")
    try:
        return json.loads(text, parse_constant=_refuse_constant)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{where}: not valid JSON ({exc})") from None
    except (ValueError, RecursionError) as exc:
        # ValueError: NaN/Infinity, or an integer literal past Python's digit limit.
        raise ConfigError(f"{where}: not valid JSON ({_clip(str(exc))})") from None


def read_json(path: str | os.PathLike[str], *, max_bytes: int = MAX_JSON_BYTES,
              max_depth: int = MAX_JSON_DEPTH) -> Any:
    """Read and parse a JSON file with `parse_json`'s bounds; the size is checked before reading."""
    p = Path(path)
    try:
        size = p.stat().st_size
        if size > max_bytes:
            raise ConfigError(f"{p}: {size:,} bytes is over the {max_bytes:,}-byte limit for this file")
        data = p.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{p}: file not found") from None
    except IsADirectoryError:
        raise ConfigError(f"{p}: is a directory, not a JSON file") from None
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read ({exc.strerror or exc})") from None
    return parse_json(data, where=str(p), max_depth=max_depth)


def from_dict(cls: type[T], data: Any, *, where: str = "") -> T:
    """Build dataclass `cls` from plain JSON data, checking keys and types recursively."""
    return _convert(cls, data, where or cls.__name__)


def to_dict(obj: Any) -> Any:
    """Plain JSON data for a dataclass tree (tuples become lists)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    return obj


def load_json(cls: type[T], path: str | os.PathLike[str]) -> T:
    return from_dict(cls, read_json(path), where=Path(path).name)


def save_json(obj: Any, path: str | os.PathLike[str]) -> None:
    atomic_write_text(path, json.dumps(to_dict(obj), indent=2, ensure_ascii=False) + "\n")


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _clip(text: str, n: int = 80) -> str:
    return text if len(text) <= n else text[: n - 3] + "..."


def _show(value: Any) -> str:
    """A short, printable description of a bad value (no huge reprs, no lone surrogates)."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 64:
        return f"an integer of {value.bit_length()} bits"
    if isinstance(value, (dict, list, tuple)):
        return f"a {'JSON object' if isinstance(value, dict) else 'list'} of {len(value)} items"
    if isinstance(value, str):
        return _clip(ascii(value))
    return _clip(repr(value))


def _key(where: str, key: Any) -> str:
    """`where.key`, with a key that would not print cleanly shown escaped."""
    if isinstance(key, str) and key.isprintable() and len(key) <= 64:
        return f"{where}.{key}"
    return f"{where}[{_show(key)}]"


def _convert(tp: Any, value: Any, where: str) -> Any:
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(arg, value, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{where}: {_show(value)} matches none of {tp}")
    if origin is typing.Literal:
        # `type(value) is type(a)`: True == 1 and 1.0 == 1, but neither is the literal 1.
        if not any(value == a and type(value) is type(a) for a in get_args(tp)):
            choices = ", ".join(repr(a) for a in get_args(tp))
            raise ConfigError(f"{where}: {_show(value)} is not one of {choices}")
        return value
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected an object, got {type(value).__name__}")
        hints = get_type_hints(tp)
        fields = {f.name: f for f in dataclasses.fields(tp) if f.init}
        unknown = sorted(_show(k) if not isinstance(k, str) or not k.isprintable() else k
                         for k in set(value) - set(fields))
        if unknown:
            raise ConfigError(f"{where}: unknown key(s) {_clip(', '.join(unknown), 200)}")
        kwargs = {}
        for name, f in fields.items():
            if name in value:
                kwargs[name] = _convert(hints[name], value[name], f"{where}.{name}")
            elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ConfigError(f"{where}: missing key {name}")
        return tp(**kwargs)
    if origin in (tuple,):
        args = get_args(tp)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {type(value).__name__}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(args[0], v, f"{where}[{i}]") for i, v in enumerate(value))
        if len(args) != len(value):
            raise ConfigError(f"{where}: expected {len(args)} items, got {len(value)}")
        return tuple(_convert(a, v, f"{where}[{i}]") for i, (a, v) in enumerate(zip(args, value, strict=True)))
    if origin in (list,):
        (arg,) = get_args(tp)
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {type(value).__name__}")
        return [_convert(arg, v, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin in (dict,):
        karg, varg = get_args(tp)
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected an object, got {type(value).__name__}")
        return {_convert(karg, k, where): _convert(varg, v, _key(where, k)) for k, v in value.items()}
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {_show(value)}")
        try:
            number = float(value)
        except OverflowError:
            number = math.inf
        if not math.isfinite(number):
            raise ConfigError(f"{where}: expected a finite number, got {_show(value)}")
        return number
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {_show(value)}")
        return value
    if tp in (str, bool):
        if not isinstance(value, tp):
            raise ConfigError(f"{where}: expected {_type_name(tp)}, got {_show(value)}")
        return value
    raise ConfigError(f"{where}: unsupported field type {_type_name(tp)}")
