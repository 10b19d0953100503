"""What a benchmark ran on: CPU, memory, OS, library versions, and how busy it was.

Numbers from a shared 2-core machine mean little without the load average next to
them, so every report records it before and after each section.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
from typing import Any

import psutil

PACKAGES = ("extract-think-edge", "llama_cpp_python", "onnxruntime", "numpy", "tokenizers", "torch",
            "transformers", "gguf", "onnx", "psutil")


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def board_model() -> str | None:
    """Raspberry Pi / Jetson boards name themselves in the device tree."""
    for path in ("/proc/device-tree/model", "/sys/firmware/devicetree/base/model"):
        try:
            with open(path, "rb") as fh:
                return fh.read().rstrip(b"\x00").decode("utf-8", errors="replace").strip() or None
        except OSError:
            continue
    return None


def cpu_flags() -> list[str]:
    """The SIMD features that decide llama.cpp/ONNX Runtime speed (x86 and ARM)."""
    wanted = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_tile", "fma", "f16c",
              "neon", "asimd", "asimddp", "sve", "i8mm")
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                key = line.split(":", 1)[0].strip().lower()
                if key in ("flags", "features"):
                    have = set(line.split(":", 1)[1].split())
                    return [f for f in wanted if f in have]
    except OSError:
        pass
    return []


def package_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):  # Windows
        return None


def machine_info() -> dict[str, Any]:
    vm = psutil.virtual_memory()
    return {
        "cpu": cpu_model(),
        "board": board_model(),
        "arch": platform.machine(),
        "physical_cores": psutil.cpu_count(logical=False),
        "logical_cores": psutil.cpu_count(logical=True),
        "cpu_flags": cpu_flags(),
        "memory_total_gb": round(vm.total / 2**30, 2),
        "memory_available_gb": round(vm.available / 2**30, 2),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "packages": package_versions(),
        "load_average": load_average(),
    }


def describe(machine: dict[str, Any]) -> str:
    """One line for a report heading."""
    board = f"{machine['board']}, " if machine.get("board") else ""
    return (f"{board}{machine['cpu']} ({machine['physical_cores']} cores / {machine['logical_cores']} threads, "
            f"{machine['arch']}), {machine['memory_total_gb']} GB RAM, {machine['os']}, "
            f"Python {machine['python']}")
