"""Strict config loading: unknown keys, wrong types and missing keys are named."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Literal

import pytest

from runtime.config_io import (
    from_dict,
    json_depth,
    load_json,
    parse_json,
    read_json,
    save_json,
    to_dict,
)
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


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf"), 10**400], ids=["nan", "inf", "-inf", "1e400"])
def test_floats_must_be_finite(bad):
    with pytest.raises(ConfigError, match=r"Inner\.ratio: expected a finite number"):
        from_dict(Inner, {"n": 1, "ratio": bad})


def test_messages_stay_short_and_printable():
    # repr() of a 5000-digit int raises ValueError and a nested list's repr recurses: neither may escape.
    with pytest.raises(ConfigError, match="an integer of .* bits") as err:
        from_dict(Outer, {"name": 10**5000, "kind": "a", "inner": {"n": 1}})
    assert len(str(err.value)) < 200
    deep: list = []
    for _ in range(5000):
        deep = [deep]
    with pytest.raises(ConfigError, match="expected an integer, got a list of 1 items"):
        from_dict(Inner, {"n": deep})
    with pytest.raises(ConfigError) as err:
        from_dict(Outer, {"name": "x", "kind": "a", "inner": {"n": 1}, "extra": {"\ud800": "no"}})
    str(err.value).encode("utf-8")  # a lone surrogate in a key is escaped, so the CLI can print it
    with pytest.raises(ConfigError) as err:
        from_dict(Outer, {"name": "x", "kind": "a", "inner": {"n": 1}, "\udcff": 1})
    str(err.value).encode("utf-8")


def test_literals_are_not_matched_by_equal_values_of_another_type():
    @dataclass(frozen=True)
    class Versioned:
        version: Literal[1]

    assert from_dict(Versioned, {"version": 1}).version == 1
    for bad in (True, 1.0):
        with pytest.raises(ConfigError, match="is not one of 1"):
            from_dict(Versioned, {"version": bad})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[" * 100_000 + "]" * 100_000, "nested deeper than 32"),  # RecursionError before the bound
        ('{"n": ' + "9" * 5000 + "}", "not valid JSON"),  # past Python's int digit limit: ValueError
        ('{"n": 1, "ratio": NaN}', "NaN is not a JSON number"),
        ('{"n": 1, "ratio": Infinity}', "Infinity is not a JSON number"),
        (b'{"n": "\xff"}', "not UTF-8"),
    ],
)
def test_hostile_json_files(tmp_path, text, message):
    p = tmp_path / "hostile.json"
    p.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(ConfigError, match=message) as err:
        load_json(Inner, p)
    assert "hostile.json" in str(err.value)


def test_depth_counts_brackets_outside_strings_only():
    assert json_depth('{"a": [1, {"b": "[[[[{{{{"}]}') == 3
    assert json_depth("[" * 40, limit=32) == 33  # stops counting past the limit
    assert parse_json('{"s": "' + "[" * 100 + '"}', where="x") == {"s": "[" * 100}
    with pytest.raises(ConfigError, match="x: JSON nested deeper than 4 levels"):
        parse_json("[[[[[1]]]]]", where="x", max_depth=4)


def test_json_size_is_checked_before_reading(tmp_path):
    p = tmp_path / "big.json"
    p.write_text(json.dumps({"n": 1, "pad": "x" * 2000}))
    with pytest.raises(ConfigError, match="over the 1,000-byte limit"):
        read_json(p, max_bytes=1000)
    with pytest.raises(ConfigError, match="is a directory"):
        read_json(tmp_path)
