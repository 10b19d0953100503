"""What is this machine? CPU, memory, board model, Jetson, CUDA, and the profile to use.

Everything is read from files under a root directory (`/` normally), so the same code
recognises a Raspberry Pi or a Jetson from a copy of their /proc, /sys and /etc files (a
test, or an SD card mounted on a laptop). Nothing here imports a backend library or runs a
program: `nvidia-smi` and libcuda are only looked up.
"""

from __future__ import annotations

import contextlib
import ctypes.util
import logging
import math
import os
import platform
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil

from edge.profiles import DeviceProfile, load_profiles
from runtime.errors import ConfigError

log = logging.getLogger(__name__)

_MB = 1 << 20
# cgroup v1 reports "no limit" as a huge page-aligned number
_CGROUP_UNLIMITED = 1 << 60


@dataclass(frozen=True)
class CudaInfo:
    available: bool
    evidence: tuple[str, ...] = ()  # what showed it: driver file, device node, library, Jetson
    driver_version: str | None = None


@dataclass(frozen=True)
class DeviceInfo:
    system: str  # Linux, Darwin, Windows
    arch: str  # x86_64, aarch64, arm64...
    cpu_model: str
    logical_cores: int
    physical_cores: int
    usable_cores: int  # after CPU affinity and cgroup quota
    memory_total_mb: int  # what this process may use in all: min(RAM, cgroup limit)
    memory_available_mb: int
    ram_mb: int  # physical RAM
    cgroup_limit_mb: int | None
    board_model: str | None  # device-tree model (Raspberry Pi, Jetson...)
    jetson_release: str | None  # first line of /etc/nv_tegra_release
    cuda: CudaInfo
    python: str

    @property
    def is_jetson(self) -> bool:
        return self.jetson_release is not None or "jetson" in (self.board_model or "").lower()

    def to_dict(self) -> dict:
        d = asdict(self)
        d["cuda"]["evidence"] = list(self.cuda.evidence)
        d["is_jetson"] = self.is_jetson
        return d


def _read(root: Path, rel: str, limit: int = 1 << 20) -> str | None:
    try:
        with open(root / rel, "rb") as fh:
            return fh.read(limit).decode("utf-8", "replace")
    except OSError:
        return None


def _board_model(root: Path) -> str | None:
    for rel in ("proc/device-tree/model", "sys/firmware/devicetree/base/model"):
        text = _read(root, rel, 4096)
        if text:
            # device-tree strings are NUL-terminated
            model = text.split("\0", 1)[0].strip()
            if model:
                return model
    return None


# ARM "CPU part" ids (implementer 0x41) of the cores these boards use
_ARM_PARTS = {
    "0xd03": "Cortex-A53", "0xd04": "Cortex-A35", "0xd05": "Cortex-A55", "0xd07": "Cortex-A57",
    "0xd08": "Cortex-A72", "0xd09": "Cortex-A73", "0xd0a": "Cortex-A75", "0xd0b": "Cortex-A76",
    "0xd0c": "Neoverse-N1", "0xd0d": "Cortex-A77", "0xd40": "Neoverse-V1", "0xd41": "Cortex-A78",
    "0xd42": "Cortex-A78AE", "0xd44": "Cortex-X1", "0xd46": "Cortex-A510", "0xd47": "Cortex-A710",
    "0xd49": "Neoverse-N2", "0xd4b": "Cortex-A78C", "0xd4f": "Neoverse-V2",
}


def _cpu(root: Path, real: bool) -> tuple[str, int, int, str | None]:
    """(model name, logical cores, physical cores, board "Model" line) from /proc/cpuinfo."""
    text = _read(root, "proc/cpuinfo") or ""
    model = ""
    board = None
    arm_part = None
    logical = 0
    cores: set[tuple[str, str]] = set()
    phys_id = core_id = None
    for line in text.splitlines() + [""]:
        key, _, value = line.partition(":")
        key, value = key.strip().lower(), value.strip()
        if not line.strip():
            if phys_id is not None and core_id is not None:
                cores.add((phys_id, core_id))
            phys_id = core_id = None
            continue
        if key == "processor":
            logical += 1
        elif key in ("model name", "cpu model") and not model:
            model = value
        elif key == "model" and not value.isdigit():
            board = value  # Raspberry Pi kernels name the board here
        elif key == "cpu part" and arm_part is None:
            arm_part = _ARM_PARTS.get(value.lower())
        elif key == "physical id":
            phys_id = value
        elif key == "core id":
            core_id = value
    model = model or arm_part or ""
    if real:
        logical = logical or os.cpu_count() or 1
        model = model or platform.processor() or platform.machine()
    logical = max(logical, 1)
    physical = len(cores) if cores else logical
    if real and not cores:  # no core ids in cpuinfo (ARM, macOS): ask the OS
        physical = psutil.cpu_count(logical=False) or logical
    return model or "unknown", logical, physical, board


def _usable_cores(root: Path, logical: int, real: bool) -> int:
    usable = logical
    if real and hasattr(os, "sched_getaffinity"):
        usable = min(usable, len(os.sched_getaffinity(0)))
    quota = _read(root, "sys/fs/cgroup/cpu.max", 256)
    if quota:
        parts = quota.split()
        if len(parts) == 2 and parts[0] != "max":
            with contextlib.suppress(ValueError, ZeroDivisionError):
                usable = min(usable, max(1, math.ceil(int(parts[0]) / int(parts[1]))))
    return max(usable, 1)


def _meminfo(root: Path, real: bool) -> tuple[int, int]:
    """(total, available) in MB."""
    text = _read(root, "proc/meminfo")
    values: dict[str, int] = {}
    for line in (text or "").splitlines():
        key, _, rest = line.partition(":")
        fields = rest.split()
        if fields and fields[0].isdigit():
            values[key.strip()] = int(fields[0]) * 1024  # kB
    if "MemTotal" in values:
        total = values["MemTotal"]
        avail = values.get("MemAvailable", values.get("MemFree", total))
        return total // _MB, avail // _MB
    if real:
        vm = psutil.virtual_memory()
        return vm.total // _MB, vm.available // _MB
    return 0, 0


def _cgroup_limit_mb(root: Path) -> int | None:
    for rel in ("sys/fs/cgroup/memory.max", "sys/fs/cgroup/memory/memory.limit_in_bytes"):
        text = (_read(root, rel, 256) or "").strip()
        if text.isdigit() and int(text) < _CGROUP_UNLIMITED:
            return int(text) // _MB
    return None


def _cuda(root: Path, jetson: bool, real: bool) -> CudaInfo:
    evidence: list[str] = []
    driver = None
    version = _read(root, "proc/driver/nvidia/version", 4096)
    if version:
        evidence.append("/proc/driver/nvidia/version")
        first = version.splitlines()[0] if version.splitlines() else ""
        # "NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.54.15  ..."
        for token in first.split():
            if token.count(".") >= 1 and token.replace(".", "").isdigit():
                driver = token
                break
    if (root / "dev/nvidia0").exists():
        evidence.append("/dev/nvidia0")
    if jetson:
        evidence.append("jetson (integrated GPU)")
        if (root / "usr/local/cuda").exists():
            evidence.append("/usr/local/cuda")
    if real:
        smi = shutil.which("nvidia-smi")
        if smi:
            evidence.append(smi)
        lib = ctypes.util.find_library("cuda")
        if lib:
            evidence.append(lib)
    return CudaInfo(available=bool(evidence), evidence=tuple(evidence), driver_version=driver)


def detect(root: str | os.PathLike[str] = "/") -> DeviceInfo:
    """Describe the machine whose filesystem is at `root` (the running one by default)."""
    root = Path(root)
    real = root.resolve() == Path("/")
    model, logical, physical, cpuinfo_board = _cpu(root, real)
    usable = _usable_cores(root, logical, real)
    ram, avail = _meminfo(root, real)
    limit = _cgroup_limit_mb(root)
    total = min(ram, limit) if limit else ram
    tegra = _read(root, "etc/nv_tegra_release", 4096)
    jetson_release = tegra.splitlines()[0].strip() if tegra and tegra.strip() else None
    board = _board_model(root) or cpuinfo_board
    is_jetson = jetson_release is not None or "jetson" in (board or "").lower()
    arch = platform.machine() if real else _arch_from_files(root, model)
    info = DeviceInfo(
        system=platform.system() if real else "Linux",
        arch=arch,
        cpu_model=model,
        logical_cores=logical,
        physical_cores=min(physical, logical),
        usable_cores=usable,
        memory_total_mb=total,
        memory_available_mb=min(avail, total) if total else avail,
        ram_mb=ram,
        cgroup_limit_mb=limit,
        board_model=board,
        jetson_release=jetson_release,
        cuda=_cuda(root, is_jetson, real),
        python=platform.python_version() if real else "",
    )
    log.debug("detected %s", info)
    return info


def _arch_from_files(root: Path, cpu_model: str) -> str:
    """Best guess for a machine we only have files of (tests, inspecting an SD card)."""
    text = (_read(root, "proc/cpuinfo") or "").lower()
    if "aarch64" in text or "cpu architecture: 8" in text or "asimd" in text:
        return "aarch64"
    if "armv7" in text or "cpu architecture: 7" in text:
        return "armv7l"
    return "x86_64" if "model name" in text else "unknown"


@dataclass(frozen=True)
class ProfileChoice:
    profile: DeviceProfile
    reason: str


def _match(profile: DeviceProfile, info: DeviceInfo) -> str | None:
    """Why `profile` fits `info`, or None when it does not."""
    m = profile.match
    why: list[str] = []
    if m.board:
        board = (info.board_model or "").lower()
        hit = next((b for b in m.board if b.lower() in board), None)
        if hit is None:
            return None
        why.append(f"board {info.board_model!r} matches {hit!r}")
    if m.jetson is not None:
        if m.jetson != info.is_jetson:
            return None
        why.append("NVIDIA Jetson" if m.jetson else "not a Jetson")
    if m.arch:
        if info.arch not in m.arch:
            return None
        why.append(f"arch {info.arch}")
    if m.min_memory_mb is not None:
        if info.memory_total_mb < m.min_memory_mb:
            return None
        why.append(f"memory {info.memory_total_mb} MB >= {m.min_memory_mb} MB")
    if m.max_memory_mb is not None:
        if info.memory_total_mb > m.max_memory_mb:
            return None
        why.append(f"memory {info.memory_total_mb} MB <= {m.max_memory_mb} MB")
    return "; ".join(why) or "fallback (no specific device recognised)"


def choose_profile(info: DeviceInfo, profiles: list[DeviceProfile] | None = None) -> ProfileChoice:
    """The highest-priority profile whose match rules fit the device."""
    profiles = load_profiles() if profiles is None else profiles
    best: tuple[int, int, DeviceProfile, str] | None = None
    for p in profiles:
        reason = _match(p, info)
        if reason is None:
            continue
        # more conditions met = more specific; ties go to the earlier profile
        specificity = reason.count(";") + (0 if reason.startswith("fallback") else 1)
        key = (p.priority, specificity)
        if best is None or key > best[:2]:
            best = (p.priority, specificity, p, reason)
    if best is None:
        raise ConfigError("no device profile matches this machine and none is a fallback; "
                          "pass --profile NAME")
    return ProfileChoice(profile=best[2], reason=best[3])
