"""Device profiles: what a Raspberry Pi, a Jetson or a laptop should run, as data files.

Each `<name>.json` beside this module is one `DeviceProfile`, loaded strictly by
`runtime.config_io` (unknown keys and wrong types are errors naming the field) and then
checked for values the type system cannot express (known quant names, positive budgets).
A profile says which backend and quantization to prefer, how many threads, how much
context and memory, how to treat images, the default token budgets, and how device
detection (`edge.device`) recognises the board it was written for.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from runtime.config_io import load_json
from runtime.errors import ConfigError
from runtime.manifest import KNOWN_QUANTS, Budgets

PROFILE_DIR = Path(__file__).resolve().parent
PROFILE_FILE = "profile.json"  # the name a packed bundle carries its profile under

BackendName = Literal["llamacpp", "onnx"]
# backend -> the bundle format it runs
FORMAT_OF: dict[str, str] = {"llamacpp": "gguf", "onnx": "onnx"}
_KNOWN_QUANTS: dict[str, tuple[str, ...]] = KNOWN_QUANTS


@dataclass(frozen=True)
class Match:
    """How detection recognises the device. Every condition given must hold.

    `board`: case-insensitive substrings of the device-tree model string, any one of them
    (e.g. "Raspberry Pi 5"). `jetson`: true requires an NVIDIA Jetson (nv_tegra_release or a
    "Jetson" board). Memory bounds use the total memory the process may use (cgroup aware).
    An empty match fits every device: that is the fallback profile.
    """

    board: tuple[str, ...] = ()
    jetson: bool | None = None
    arch: tuple[str, ...] = ()
    min_memory_mb: int | None = None
    max_memory_mb: int | None = None


@dataclass(frozen=True)
class ImageHandling:
    """Limits applied before an image reaches the vision encoder."""

    max_pixels: int  # checked from the header, before decoding
    max_upload_bytes: int  # the web demo refuses larger uploads
    cache_mb: int  # memory for the image-embedding and extraction caches


@dataclass(frozen=True)
class DeviceProfile:
    name: str
    title: str
    description: str
    backends: tuple[BackendName, ...]  # in order of preference
    quants: dict[str, tuple[str, ...]]  # bundle format -> quantizations, best first
    threads: int | None  # None: every usable physical core
    context_length: int  # upper bound; the bundle's own context length caps it further
    memory_cap_mb: int | None  # None: what the device has available
    residency: Literal["auto", "resident", "sequential"]
    gpu_layers: int  # llama.cpp layers offloaded to a GPU (needs a CUDA build)
    budgets: Budgets
    thinking: bool
    deadline_s: float | None
    image: ImageHandling
    match: Match
    priority: int = 0  # detection prefers the highest-priority profile that matches

    @property
    def formats(self) -> tuple[str, ...]:
        return tuple(FORMAT_OF[b] for b in self.backends)


def validate_profile(p: DeviceProfile, where: str = "profile") -> DeviceProfile:
    """Checks beyond types; raises ConfigError naming the field."""
    if not p.name or not all(c.isalnum() or c in "-_." for c in p.name):
        raise ConfigError(f"{where}.name: {p.name!r} must be letters, digits, '-', '_' or '.'")
    if not p.backends:
        raise ConfigError(f"{where}.backends: at least one backend is needed")
    if len(set(p.backends)) != len(p.backends):
        raise ConfigError(f"{where}.backends: {list(p.backends)} repeats a backend")
    for backend in p.backends:
        fmt = FORMAT_OF[backend]
        if not p.quants.get(fmt):
            raise ConfigError(f"{where}.quants: no {fmt} quantizations for backend {backend!r}")
    for fmt, names in p.quants.items():
        if fmt not in _KNOWN_QUANTS:
            raise ConfigError(f"{where}.quants: unknown format {fmt!r} (known: gguf, onnx)")
        for q in names:
            if q not in _KNOWN_QUANTS[fmt]:
                raise ConfigError(
                    f"{where}.quants.{fmt}: unknown quantization {q!r} "
                    f"(known: {', '.join(_KNOWN_QUANTS[fmt])})"
                )
    if p.threads is not None and p.threads < 1:
        raise ConfigError(f"{where}.threads: {p.threads} must be at least 1 (or null for all cores)")
    if p.context_length < 256:
        raise ConfigError(f"{where}.context_length: {p.context_length} is too small (minimum 256)")
    if p.memory_cap_mb is not None and p.memory_cap_mb < 64:
        raise ConfigError(f"{where}.memory_cap_mb: {p.memory_cap_mb} is too small (minimum 64)")
    if p.gpu_layers < 0:
        raise ConfigError(f"{where}.gpu_layers: {p.gpu_layers} must be >= 0")
    for field_name in ("hint", "extraction", "thinking", "answer", "non_thinking_answer"):
        if getattr(p.budgets, field_name) < 0:
            raise ConfigError(f"{where}.budgets.{field_name}: must be >= 0")
    if p.deadline_s is not None and p.deadline_s <= 0:
        raise ConfigError(f"{where}.deadline_s: {p.deadline_s} must be positive (or null)")
    img = p.image
    if img.max_pixels < 1 or img.max_upload_bytes < 1 or img.cache_mb < 0:
        raise ConfigError(f"{where}.image: limits must be positive")
    m = p.match
    if m.min_memory_mb is not None and m.max_memory_mb is not None and m.min_memory_mb > m.max_memory_mb:
        raise ConfigError(f"{where}.match: min_memory_mb is above max_memory_mb")
    return p


def profile_names() -> list[str]:
    """Names of the shipped profiles, sorted."""
    return sorted(p.stem for p in PROFILE_DIR.glob("*.json"))


def load_profile_file(path: str | os.PathLike[str]) -> DeviceProfile:
    """Load and validate one profile file (a shipped one or a user's own)."""
    path = Path(path)
    return validate_profile(load_json(DeviceProfile, path), where=path.name)


def load_profile(name_or_path: str | os.PathLike[str]) -> DeviceProfile:
    """A shipped profile by name, or a profile file by path (anything ending in .json)."""
    text = str(name_or_path)
    if text.endswith(".json") or os.sep in text:
        return load_profile_file(text)
    if text not in profile_names():
        raise ConfigError(f"unknown profile {text!r}; known profiles: {', '.join(profile_names())}")
    profile = load_profile_file(PROFILE_DIR / f"{text}.json")
    if profile.name != text:
        raise ConfigError(f"{text}.json: its name field says {profile.name!r}")
    return profile


def load_profiles() -> list[DeviceProfile]:
    """Every shipped profile, validated."""
    return [load_profile(n) for n in profile_names()]
