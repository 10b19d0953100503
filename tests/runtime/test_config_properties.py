"""Property-based: random mutations of valid configs load, or fail with the project's error.

The manifest reader (`runtime.bundle.read_manifest`, the file as a hostile user writes
it) and `runtime.config_io.from_dict` on every config of the project (device profile,
training recipe, synthetic-data config, scene) get valid data with random damage: wrong
types, missing and extra keys, deep nesting, huge and non-finite numbers, strings with
lone surrogates. Each must return the config or raise `ConfigError` / `BundleError` with
a one-line message that can be printed, never anything else (a RecursionError, an
OverflowError, a ValueError from repr() of a 5000-digit integer, a UnicodeEncodeError).
"""

from __future__ import annotations

import copy
import json
import re
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runtime.bundle import read_manifest
from runtime.config_io import from_dict, parse_json, to_dict
from runtime.errors import BundleError, ConfigError
from runtime.manifest import Manifest

ROOT = Path(__file__).resolve().parents[2]
HUGE_DIGITS = "9" * 5000  # past Python's int-string limit: json.loads raises ValueError
SETTINGS = settings(max_examples=150, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

_surrogates = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)
_text = st.text(st.one_of(st.characters(), _surrogates), max_size=12)
_scalars = st.one_of(
    st.none(), st.booleans(), _text,
    st.integers(), st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, -1, 2**31, 2**63, 2**64, 10**400, -(10**400), "__HUGE__"]),
    st.floats(allow_nan=True, allow_infinity=True),
)
_values = st.recursive(_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(_text, inner, max_size=3)), max_leaves=6)


def _paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if len(prefix) > 8:
        return out
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, (*prefix, i))
    return out


def _mutate(base: Any, data: st.DataObject) -> Any:
    """Apply 1-4 random edits (replace, delete, add a key, nest deeply) at random places."""
    doc = copy.deepcopy(base)
    for _ in range(data.draw(st.integers(1, 4))):
        path = data.draw(st.sampled_from(_paths(doc)))
        op = data.draw(st.sampled_from(["replace", "delete", "extra", "nest", "huge"]))
        value = {"replace": lambda: data.draw(_values), "huge": lambda: "__HUGE__",
                 "nest": lambda: f"__DEEP_{data.draw(st.sampled_from([5, 40, 2000]))}__",
                 "extra": lambda: None, "delete": lambda: None}[op]()
        if not path:
            if op in ("replace", "nest", "huge"):
                doc = value
            continue
        parent = doc
        for key in path[:-1]:
            parent = parent[key]
        last = path[-1]
        if op == "delete" and isinstance(parent, dict):
            del parent[last]
        elif op == "extra" and isinstance(parent, dict):
            parent[data.draw(_text)] = data.draw(_values)
        elif op in ("replace", "nest", "huge"):
            parent[last] = value
    return doc


def _json_text(doc: Any) -> str:
    # ensure_ascii writes lone surrogates as \\udXXX escapes, which json.loads turns back
    # into lone surrogates: exactly what a hostile file can hold. Huge integers and deep
    # nesting are spliced into the text (json.dumps itself refuses to write them).
    text = json.dumps(doc, ensure_ascii=True).replace('"__HUGE__"', HUGE_DIGITS)
    return re.sub(r'"__DEEP_(\d+)__"', lambda m: "[" * int(m.group(1)) + "1" + "]" * int(m.group(1)), text)


def _check_error(exc: Exception) -> None:
    message = str(exc)
    message.encode("utf-8")  # printable by the CLI: no lone surrogates
    assert "\n" not in message, message
    assert len(message) < 2000


def _valid_manifest() -> dict:
    shape = dict(hidden_size=64, num_layers=2, num_heads=4, num_kv_heads=2, head_dim=32, intermediate_size=128,
                 vocab_size=1280, context_length=2048, rope_theta=1e6, rms_norm_eps=1e-6, tie_word_embeddings=True)
    special = {"im_start": 1, "im_end": 2, "end_of_text": 0, "think_start": 3, "think_end": 4, "image": 5}
    files = {name: {"size": 64, "sha256": "0" * 64} for name in ("tokenizer.json", "p.gguf", "mm.gguf", "r.gguf")}
    return {
        "format": "extract-think-bundle", "format_version": 1, "name": "t",
        "models": {
            "perception": {
                "role": "perception", "architecture": "llava-qwen3", "text": shape, "tokenizer": "tokenizer.json",
                "special_tokens": special,
                "artifacts": [{"format": "gguf", "quant": "q8_0", "files": {"model": "p.gguf", "mmproj": "mm.gguf"}}],
                "vision": {"image_size": 96, "patch_size": 32, "hidden_size": 64, "num_layers": 2, "num_heads": 2,
                           "intermediate_size": 128, "tokens_per_image": 9},
                "image": {"size": 96, "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]},
            },
            "reasoner": {
                "role": "reasoner", "architecture": "qwen3", "text": shape, "tokenizer": "tokenizer.json",
                "special_tokens": special,
                "artifacts": [{"format": "gguf", "quant": "q8_0", "files": {"model": "r.gguf"}}],
            },
        },
        "files": files,
        "provenance": {"tool": "test", "tool_version": "0", "created": "2026-01-01T00:00:00+00:00"},
        "budgets": {"hint": 8, "extraction": 32, "thinking": 64, "answer": 8, "non_thinking_answer": 16},
        "examples": [],
    }


def test_the_unmutated_manifest_is_valid(tmp_path):
    (tmp_path / "manifest.json").write_text(_json_text(_valid_manifest()))
    assert isinstance(read_manifest(tmp_path), Manifest)


@SETTINGS
@given(data=st.data())
def test_manifest_reader_on_mutated_manifests(data):
    doc = _mutate(_valid_manifest(), data)
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "manifest.json").write_text(_json_text(doc), encoding="ascii")
        try:
            assert isinstance(read_manifest(tmp), Manifest)
        except (BundleError, ConfigError) as exc:
            _check_error(exc)


def _configs() -> list[tuple[str, type, dict]]:
    from edge.profiles import DeviceProfile
    from training.config import Recipe, load_recipe
    from training.data.sampling import sample_scene
    from training.data.scene import Scene
    from training.data.synth import SynthConfig

    profile = json.loads((ROOT / "edge/profiles/raspberry-pi-5-4gb.json").read_text())
    recipe = to_dict(load_recipe(ROOT / "training/recipes/synthetic-cpu.yaml"))
    scene = to_dict(sample_scene(0, SynthConfig().scene))
    return [("profile", DeviceProfile, profile), ("recipe", Recipe, recipe),
            ("synth", SynthConfig, to_dict(SynthConfig())), ("scene", Scene, scene),
            ("manifest", Manifest, _valid_manifest())]


CONFIGS = _configs()


@pytest.mark.parametrize(("cls", "base"), [(c, b) for _, c, b in CONFIGS], ids=[n for n, _, _ in CONFIGS])
def test_from_dict_on_mutated_configs(cls, base):
    assert isinstance(from_dict(cls, base), cls)

    @SETTINGS
    @given(data=st.data())
    def check(data):
        # Through JSON text, as a config file would arrive (huge digits included).
        try:
            assert isinstance(from_dict(cls, parse_json(_json_text(_mutate(base, data)), where="x.json"),
                                        where=cls.__name__), cls)
        except ConfigError as exc:
            _check_error(exc)

    check()
