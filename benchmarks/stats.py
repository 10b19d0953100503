"""Summaries of repeated measurements: median and spread, never a single run.

Every timing in a benchmark report is a list of repetitions; `summarize` turns it into
the median, the inter-quartile range (q1, q3) and min/max, so a reader sees both the
typical value and how noisy the machine was.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any


def quantile(sorted_values: Sequence[float], q: float) -> float:
    """Linear-interpolation quantile (numpy's default) of already sorted values."""
    if not sorted_values:
        raise ValueError("quantile of an empty sequence")
    pos = (len(sorted_values) - 1) * q
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def summarize(values: Iterable[float]) -> dict[str, float]:
    """{n, median, q1, q3, min, max, mean} of the finite values (empty: just n=0)."""
    vals = sorted(float(v) for v in values if v is not None and math.isfinite(float(v)))
    if not vals:
        return {"n": 0}
    return {
        "n": len(vals),
        "median": quantile(vals, 0.5),
        "q1": quantile(vals, 0.25),
        "q3": quantile(vals, 0.75),
        "min": vals[0],
        "max": vals[-1],
        "mean": sum(vals) / len(vals),
    }


def summarize_reps(reps: Sequence[Mapping[str, Any]], keys: Sequence[str] | None = None) -> dict[str, dict]:
    """Summaries of each numeric key across repetition dicts."""
    if not reps:
        return {}
    keys = keys or [k for k, v in reps[0].items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
    return {k: summarize(r.get(k) for r in reps if isinstance(r.get(k), (int, float))) for k in keys}


def ratio(a: float | None, b: float | None) -> float | None:
    """a / b, or None when either is missing or b is not positive."""
    if a is None or b is None or not b > 0 or not math.isfinite(a):
        return None
    return a / b


def wilson_interval(correct: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """Wilson score interval for a proportion (95% by default); (0, 1) when n is 0.

    Preferred over the normal approximation because it stays inside [0, 1] and is
    honest for the small, near-0 or near-1 counts a per-category breakdown produces.
    """
    if n <= 0:
        return (0.0, 1.0)
    if not 0 <= correct <= n:
        raise ValueError(f"correct={correct} is outside 0..{n}")
    p = correct / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    # at p = 0 or 1 the bound is exactly 0 or 1; say so instead of 0.9999999999999999
    lo = 0.0 if correct == 0 else max(0.0, centre - half)
    hi = 1.0 if correct == n else min(1.0, centre + half)
    return (lo, hi)
