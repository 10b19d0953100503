"""Progress lines for long CLI work (export, training, data generation, evaluation).

Libraries report progress through a `progress(stage, fraction)` callback; this turns it
into one refreshed line on a terminal, or a line per stage change (plus every 10%) in
logs, with the elapsed time and an ETA.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO


class ProgressPrinter:
    def __init__(self, label: str, stream: TextIO | None = None, enabled: bool = True) -> None:
        self.label = label
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.tty = self.stream.isatty()
        self.t0 = time.monotonic()
        self._last: tuple[str, int] | None = None

    def __call__(self, stage: str, fraction: float) -> None:
        if not self.enabled:
            return
        frac = min(max(fraction, 0.0), 1.0)
        elapsed = time.monotonic() - self.t0
        eta = f" eta {elapsed * (1 - frac) / frac:5.0f}s" if 0.02 < frac < 1 else ""
        line = f"{self.label} [{frac * 100:3.0f}%] {elapsed:6.1f}s{eta}  {stage}"
        if self.tty:
            self.stream.write("\r\x1b[K" + line[:160])
            self.stream.flush()
        else:
            key = (stage.split(":")[0], int(frac * 10))
            if key != self._last:
                self.stream.write(line + "\n")
                self.stream.flush()
                self._last = key

    def done(self, message: str = "") -> None:
        if self.enabled and self.tty:
            self.stream.write("\r\x1b[K")
        if self.enabled and message:
            self.stream.write(f"{self.label}: {message} ({time.monotonic() - self.t0:.1f}s)\n")
            self.stream.flush()
