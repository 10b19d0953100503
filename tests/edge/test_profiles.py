"""Device profiles: every shipped file is valid, and loading is strict."""

from __future__ import annotations

import json

import pytest

from edge.profiles import (
    PROFILE_DIR,
    DeviceProfile,
    load_profile,
    load_profile_file,
    load_profiles,
    profile_names,
)
from runtime.errors import ConfigError

SHIPPED = {"laptop", "raspberry-pi-5-4gb", "raspberry-pi-5-8gb", "raspberry-pi-4", "jetson-orin-nano"}


def test_every_shipped_profile_is_valid():
    profiles = load_profiles()
    assert {p.name for p in profiles} == SHIPPED == set(profile_names())
    for p in profiles:
        assert isinstance(p, DeviceProfile)
        assert p.formats and set(p.formats) <= {"gguf", "onnx"}
        # a tiny full-precision bundle must still be packable for every device
        assert "f32" in p.quants["gguf"] and "fp32" in p.quants["onnx"]


def test_pi_profiles_are_tighter_than_the_laptop():
    laptop = load_profile("laptop")
    for name in ("raspberry-pi-4", "raspberry-pi-5-4gb"):
        pi = load_profile(name)
        assert pi.memory_cap_mb is not None and pi.threads == 4
        assert pi.budgets.thinking < laptop.budgets.thinking
        assert pi.context_length <= laptop.context_length
        assert pi.quants["gguf"][0].startswith("q4")
    assert load_profile("jetson-orin-nano").gpu_layers > 0


def _laptop_data() -> dict:
    return json.loads((PROFILE_DIR / "laptop.json").read_text())


def _write(tmp_path, data: dict):
    path = tmp_path / "custom.json"
    path.write_text(json.dumps(data))
    return path


def test_profile_file_by_path(tmp_path):
    data = _laptop_data() | {"name": "my-board", "threads": 3}
    p = load_profile(str(_write(tmp_path, data)))
    assert p.name == "my-board" and p.threads == 3


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"turbo": True}, "unknown key(s) turbo"),
        ({"threads": "four"}, "threads: expected an integer"),
        ({"backends": ["tensorrt"]}, "backends[0]: 'tensorrt' is not one of"),
        ({"budgets": {"thinking": 100, "bogus": 1}}, "budgets: unknown key(s) bogus"),
        ({"quants": {"gguf": ["q3_fancy"], "onnx": ["int8"]}}, "unknown quantization 'q3_fancy'"),
        ({"quants": {"onnx": ["int8"]}}, "no gguf quantizations for backend 'llamacpp'"),
        ({"threads": 0}, "threads: 0 must be at least 1"),
        ({"budgets": {"thinking": -1}}, "budgets.thinking: must be >= 0"),
        ({"context_length": 16}, "context_length: 16 is too small"),
        ({"residency": "sometimes"}, "residency: 'sometimes' is not one of"),
    ],
)
def test_strict_loading_names_the_field(tmp_path, change, message):
    data = _laptop_data()
    data.update(change)
    with pytest.raises(ConfigError) as info:
        load_profile_file(_write(tmp_path, data))
    assert message in str(info.value)


def test_missing_key_is_an_error(tmp_path):
    data = _laptop_data()
    del data["context_length"]
    with pytest.raises(ConfigError, match="missing key context_length"):
        load_profile_file(_write(tmp_path, data))


def test_unknown_profile_lists_the_known_ones():
    with pytest.raises(ConfigError) as info:
        load_profile("raspberry-pi-9")
    msg = str(info.value)
    assert "unknown profile 'raspberry-pi-9'" in msg
    for name in SHIPPED:
        assert name in msg
