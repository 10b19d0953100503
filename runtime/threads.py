"""How many CPU threads the backends use."""

from __future__ import annotations

import os

import psutil


def default_threads() -> int:
    """Physical cores: onnxruntime's own default left a core idle on small machines."""
    return max(1, psutil.cpu_count(logical=False) or os.cpu_count() or 1)
