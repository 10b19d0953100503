"""Training logs: one JSON line per logged step, and a loss-curve PNG beside it.

On resume the log is cut back to the checkpoint's step (atomically), so the curve of a
resumed run is the curve of an uninterrupted one.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from runtime.atomic import atomic_write_text

log = logging.getLogger(__name__)


class StepLog:
    def __init__(self, path: Path) -> None:
        self.path = path

    def truncate(self, step: int) -> None:
        """Keep only entries up to `step` (the checkpoint a run resumes from)."""
        if not self.path.is_file():
            return
        kept = [line for line in self.read_lines() if line.get("step", 0) <= step]
        atomic_write_text(self.path, "".join(json.dumps(x) + "\n" for x in kept))

    def reset(self) -> None:
        if self.path.exists():
            self.path.unlink()

    def append(self, entry: dict) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(entry) + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    def read_lines(self) -> list[dict]:
        if not self.path.is_file():
            return []
        out = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError:  # a torn last line after a kill
                    continue
        return out


def plot_loss(entries: list[dict], out: Path, title: str = "") -> Path | None:
    """Loss against step (raw and smoothed) as a PNG; None when matplotlib is missing."""
    pts = [(e["step"], e["loss"]) for e in entries if "loss" in e]
    if not pts:
        return None
    try:  # deferred: matplotlib is optional and slow to import
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log.info("matplotlib is not installed: no loss curve")
        return None
    steps, losses = zip(*pts, strict=True)
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    ax.plot(steps, losses, lw=0.8, alpha=0.4, label="loss")
    if len(losses) >= 10:
        k = max(2, len(losses) // 25)
        smooth = [sum(losses[max(0, i - k + 1): i + 1]) / len(losses[max(0, i - k + 1): i + 1])
                  for i in range(len(losses))]
        ax.plot(steps, smooth, lw=1.5, label=f"mean of {k}")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (per target token)")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend()
    if title:
        ax.set_title(title)
    fig.tight_layout()
    tmp = out.with_name(f".{out.name}.tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    os.replace(tmp, out)
    return out
