"""The one progress callback type every long-running library function takes.

Libraries report `progress(stage, fraction)`: `stage` a short label ("quantize q4_k_m",
"train extract: step 120/800"), `fraction` in [0, 1] for the whole job. Only the CLI turns
it into a display (`edge.progress`), so the libraries stay free of printing.
"""

from __future__ import annotations

from collections.abc import Callable

Progress = Callable[[str, float], None]


def report(progress: Progress | None, stage: str, fraction: float) -> None:
    """Call `progress` if there is one, with the fraction clamped to [0, 1]."""
    if progress is not None:
        progress(stage, min(max(float(fraction), 0.0), 1.0))
