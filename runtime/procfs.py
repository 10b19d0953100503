"""Fields of /proc/self/status (Linux); None elsewhere or when the field is missing."""

from __future__ import annotations

import contextlib


def status_field(name: str) -> str | None:
    """The first word of the `name:` line of /proc/self/status (e.g. "0022", "108340")."""
    with contextlib.suppress(OSError, IndexError), \
            open("/proc/self/status", encoding="ascii", errors="replace") as fh:
        for line in fh:
            if line.startswith(name + ":"):
                return line.split()[1]
    return None
