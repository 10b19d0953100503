"""Helpers for the deployment tests: test images and running the real `edge` CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
# Small budgets keep every request in these tests well under a second on two cores.
SMALL_BUDGETS = {"hint": 4, "extraction": 12, "thinking": 12, "answer": 12, "non_thinking_answer": 12}


def write_png(path: Path, seed: int = 0, size: int = 48) -> Path:
    from PIL import Image

    rng = np.random.default_rng(seed)
    Image.fromarray((rng.random((size, size, 3)) * 255).astype("uint8")).save(path)
    return path


def run_edge(*args: str, timeout: float = 180, env: dict | None = None,
             check: bool = False) -> subprocess.CompletedProcess:
    """Run the real `edge` CLI in a subprocess (the installed console script's code path)."""
    full_env = {**os.environ, **(env or {})}
    proc = subprocess.run([sys.executable, "-m", "edge", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO, env=full_env)
    if check and proc.returncode != 0:
        raise AssertionError(f"edge {' '.join(args)} exited {proc.returncode}:\n{proc.stderr}")
    return proc


def one_error_line(proc: subprocess.CompletedProcess) -> str:
    """The CLI's user-error contract: a single 'edge CMD: error: ...' line on stderr."""
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ": error: " in ln]
    assert len(errors) == 1, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    return errors[0]


def json_lines(text: str) -> list[dict]:
    return [json.loads(ln) for ln in text.splitlines() if ln.strip()]
