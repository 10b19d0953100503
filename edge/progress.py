"""The one progress display of the `edge` command line.

Libraries report long work through `runtime.progress.Progress`: `progress(stage, fraction)`,
the fraction being for the whole job. `ProgressDisplay` is such a callback: on a terminal
it draws one tqdm bar (percentage, elapsed time, time left, the current stage); when
stderr is not a terminal (a log file, systemd's journal) it writes a line each time the
stage changes or another tenth of the job is done, in the same format.

The fraction shown never goes backwards within a job. A library that reports each step of
a job from 0 to 1 (the exporter's GGUF writer, then llama.cpp's quantizer, then the mmproj
writer, each 0 -> 1) would otherwise make the bar jump back; the stage label still shows
which step is running.

    with ProgressDisplay("export", enabled=not args.quiet) as progress:
        export_bundle(request, progress=progress)
        progress.done("wrote my-bundle")
"""

from __future__ import annotations

import math
import sys
import time
from typing import TextIO

from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

STEPS = 1000  # the bar's resolution: a tenth of a percent
_FORMAT = "{desc} {percentage:3.0f}%|{bar}| [{elapsed}<{remaining}{postfix}]"
# "LABEL [ 45%] ...": the form log readers (and tests) already know from earlier versions
_LINE_FORMAT = "{desc} [{percentage:3.0f}%] [{elapsed}<{remaining}{postfix}]"


class ProgressDisplay:
    """A `runtime.progress.Progress` callback that shows one job's progress on stderr."""

    def __init__(self, label: str, *, enabled: bool = True, stream: TextIO | None = None) -> None:
        self.label = label
        self.enabled = enabled
        self.stream = stream if stream is not None else sys.stderr
        self.tty = enabled and self.stream.isatty()
        self.fraction = 0.0  # the highest fraction reported so far
        self.stage = ""
        self._t0 = time.monotonic()
        self._bar: tqdm | None = None
        self._logging = None
        self._last_line: tuple[str, int] | None = None

    # ---- the callback -----------------------------------------------------------------

    def __call__(self, stage: str, fraction: float) -> None:
        if not self.enabled:
            return
        try:
            frac = float(fraction)
        except (TypeError, ValueError):
            frac = self.fraction
        if not math.isfinite(frac):
            frac = self.fraction
        self.fraction = max(self.fraction, min(max(frac, 0.0), 1.0))
        changed = stage != self.stage
        self.stage = stage
        if self.tty:
            self._draw(changed)
        else:
            self._line()

    def _draw(self, stage_changed: bool) -> None:
        n = round(self.fraction * STEPS)
        if self._bar is None:
            self._bar = tqdm(total=STEPS, initial=n, desc=self.label, postfix=self.stage, file=self.stream,
                             bar_format=_FORMAT, leave=False, dynamic_ncols=True, mininterval=0.2)
            return
        if stage_changed:
            self._bar.set_postfix_str(self.stage, refresh=False)
        if n > self._bar.n:
            self._bar.update(n - self._bar.n)  # redraws at most every mininterval
        elif stage_changed:
            self._bar.refresh()

    def _line(self) -> None:
        key = (self.stage.split(":")[0], int(self.fraction * 10))
        if key == self._last_line:
            return
        self._last_line = key
        line = tqdm.format_meter(round(self.fraction * STEPS), STEPS, time.monotonic() - self._t0,
                                 prefix=self.label, postfix=self.stage, bar_format=_LINE_FORMAT)
        self.stream.write(line + "\n")
        self.stream.flush()

    def note(self, message: str) -> None:
        """A line of its own (above the bar on a terminal), shown unless disabled."""
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.write(f"{self.label}: {message}", file=self.stream)
        else:
            self.stream.write(f"{self.label}: {message}\n")
            self.stream.flush()

    # ---- the end ----------------------------------------------------------------------

    def close(self) -> None:
        """Remove the bar (an error line printed next then starts on a clean line)."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        if self._logging is not None:
            self._logging.__exit__(None, None, None)
            self._logging = None

    def done(self, message: str = "") -> None:
        """Close the bar and, with a message, say how the job ended and how long it took."""
        self.close()
        if self.enabled and message:
            self.stream.write(f"{self.label}: {message} ({time.monotonic() - self._t0:.1f}s)\n")
            self.stream.flush()

    def __enter__(self) -> ProgressDisplay:
        if self.tty:  # log lines go above the bar instead of through it
            self._logging = logging_redirect_tqdm()
            self._logging.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# `edge train` (edge/commands/train.py) still uses the earlier name
ProgressPrinter = ProgressDisplay
