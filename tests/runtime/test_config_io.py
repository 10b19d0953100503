"""Strict config loading: unknown keys, wrong types and missing keys are named."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pytest

from runtime.config_io import from_dict, load_json, save_json, to_dict
from runtime.errors import ConfigError


@dataclass(frozen=True)
class Inner:
    n: int
    ratio: float = 0.5


@dataclass(frozen=True)
class Outer:
    name: str
    kind: Literal["a", "b"]
    inner: Inner
    tags: tuple[str, ...] = ()
    extra: dict[str, int] = field(default_factory=dict)
    maybe: int | None = None


def test_roundtrip(tmp_path):
    obj = Outer("x", "a", Inner(3), ("t",), {"k": 1}, None)
    save_json(obj, tmp_path / "o.json")
    assert load_json(Outer, tmp_path / "o.json") == obj
    assert to_dict(obj)["inner"] == {"n": 3, "ratio": 0.5}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"name": "x", "kind": "a", "inner": {"n": 1}, "typo": 1}, "unknown key"),
        ({"name": "x", "kind": "c", "inner": {"n": 1}}, "Outer.kind"),
        ({"name": "x", "kind": "a", "inner": {"n": "1"}}, "Outer.inner.n"),
        ({"name": "x", "kind": "a", "inner": {"n": True}}, "expected an integer"),
        ({"name": "x", "kind": "a"}, "missing key inner"),
        ({"name": "x", "kind": "a", "inner": {"n": 1}, "tags": "abc"}, "expected a list"),
        ([1, 2], "expected an object"),
    ],
)
def test_rejects_bad_data(data, message):
    with pytest.raises(ConfigError, match=message):
        from_dict(Outer, data)


def test_int_accepted_for_float():
    assert from_dict(Inner, {"n": 1, "ratio": 1}).ratio == 1.0


def test_bad_json_file(tmp_path):
    p = tmp_path / "bad.json"
    p.write_text("{nope")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_json(Outer, p)
    with pytest.raises(ConfigError, match="not found"):
        load_json(Outer, tmp_path / "missing.json")


def test_atomic_write_leaves_no_temp(tmp_path):
    save_json(Inner(1), tmp_path / "i.json")
    assert [p.name for p in tmp_path.iterdir()] == ["i.json"]
