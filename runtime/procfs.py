"""Readers of /proc (Linux): fields of /proc/self/status and the CPU's feature flags; None or
empty elsewhere or when the field is missing."""

from __future__ import annotations

import contextlib
import functools


def status_field(name: str) -> str | None:
    """The first word of the `name:` line of /proc/self/status (e.g. "0022", "108340")."""
    with contextlib.suppress(OSError, IndexError), \
            open("/proc/self/status", encoding="ascii", errors="replace") as fh:
        for line in fh:
            if line.startswith(name + ":"):
                return line.split()[1]
    return None


@functools.cache
def cpu_flags() -> frozenset[str]:
    """The feature flags of the first CPU in /proc/cpuinfo ("avx2", "amx_int8", ...)."""
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="ascii", errors="replace") as fh:
        for line in fh:
            if line.startswith("flags"):
                return frozenset(line.partition(":")[2].split())
    return frozenset()
