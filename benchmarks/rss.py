"""Resident memory over time: a thread samples the process RSS while stages run.

`ru_maxrss` only ever grows, so it cannot say what one stage or one configuration
needed. The sampler records (time, RSS, label) every `interval` seconds; callers set the
label when a stage starts, and read per-label peaks and the whole timeline afterwards.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import psutil


@dataclass
class RssSampler:
    interval: float = 0.02
    samples: list[tuple[float, float, str]] = field(default_factory=list)  # (s since start, MiB, label)
    label: str = "idle"

    def __post_init__(self) -> None:
        self._proc = psutil.Process()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._t0 = time.perf_counter()
        self._lock = threading.Lock()

    def sample(self) -> None:
        rss = self._proc.memory_info().rss / 2**20
        with self._lock:
            self.samples.append((time.perf_counter() - self._t0, rss, self.label))

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def start(self) -> RssSampler:
        self._t0 = time.perf_counter()
        self._stop.clear()
        self.sample()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self.sample()

    def mark(self, label: str) -> None:
        """From now on samples belong to `label` (a sample is taken at the switch)."""
        self.sample()  # closes the previous label's span at its last value
        self.label = label
        self.sample()

    def now(self) -> float:
        return time.perf_counter() - self._t0

    def __enter__(self) -> RssSampler:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def peak(self, label: str | None = None) -> float:
        with self._lock:
            vals = [m for _, m, lab in self.samples if label is None or lab == label]
        return max(vals) if vals else 0.0

    def max_between(self, t0: float, t1: float | None = None) -> float:
        """Peak RSS over [t0, t1] (seconds on this sampler's clock; t1 None = now)."""
        t1 = self.now() if t1 is None else t1
        with self._lock:
            vals = [m for t, m, _ in self.samples if t0 <= t <= t1]
        return max(vals) if vals else 0.0

    def peaks(self) -> dict[str, float]:
        out: dict[str, float] = {}
        with self._lock:
            for _, m, lab in self.samples:
                out[lab] = max(out.get(lab, 0.0), m)
        return out

    def timeline(self, max_points: int = 2000) -> list[list]:
        """[[t, rss_mb, label], ...] thinned to at most `max_points` (peaks kept per bucket)."""
        with self._lock:
            pts = list(self.samples)
        if len(pts) <= max_points:
            return [[round(t, 4), round(m, 1), lab] for t, m, lab in pts]
        step = len(pts) / max_points
        out = []
        for i in range(max_points):
            chunk = pts[int(i * step): int((i + 1) * step)] or [pts[-1]]
            t, m, lab = max(chunk, key=lambda p: p[1])
            out.append([round(t, 4), round(m, 1), lab])
        return out
