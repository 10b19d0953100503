"""How many CPU threads the backends use, and how many they may be asked for.

The bound: at most `MAX_THREADS_PER_CPU` x the CPUs of the machine. More threads than
that only add contention, and far more break the backends (100000 crashed llama.cpp;
onnxruntime grew to 11 GB and hung; 5000 stalled the machine for minutes), so a larger
count is refused with an `InputError` before anything is loaded.
"""

from __future__ import annotations

import os

import psutil

from runtime.errors import InputError

MAX_THREADS_PER_CPU = 4


def cpu_count() -> int:
    return os.cpu_count() or 1


def max_threads() -> int:
    return MAX_THREADS_PER_CPU * cpu_count()


def check_threads(threads: object) -> int | None:
    """`threads` if it is None (the default) or an integer in 1..max_threads()."""
    if threads is None:
        return None
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise InputError(f"threads must be a positive integer, got {threads!r}")
    if threads > max_threads():
        raise InputError(
            f"threads must be at most {max_threads()} ({MAX_THREADS_PER_CPU} x the {cpu_count()} CPUs "
            f"of this machine), got {threads}"
        )
    return threads


def busy_cpus() -> int:
    """CPUs other processes keep busy: the 1-minute load average, rounded (0 where the
    platform has none)."""
    try:
        return max(0, round(psutil.getloadavg()[0]))
    except (OSError, AttributeError):
        return 0


def default_threads() -> int:
    """Physical cores, less the CPUs other processes keep busy, at least 1.

    Decoding splits every operation across the threads and waits for all of them: a
    thread whose core another process holds stalls the rest. On a 2-core machine under
    load, 2 threads took 34x longer than 1 (docs/runtime.md, "Threads"). Counted once, when
    a model loads.
    """
    physical = psutil.cpu_count(logical=False) or cpu_count()
    return max(1, min(physical, cpu_count() - busy_cpus()))
