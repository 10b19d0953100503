"""Paired, clustered, stratified bootstrap of accuracy statistics.

    table = Table({"et-MM": rows_a, "ct-MM": rows_b}, group=lambda r: r.split)
    est = bootstrap(table, lambda m: m.acc("et-MM") - m.acc("ct-MM"), resamples=10_000, seed=0)
    est.point, est.low, est.high      # in accuracy units (0..1)

Paired: every system is scored on the same items (those all of them answered), and one
resample reweights the same items for all of them, so a difference's interval reflects how
often the systems disagree, not each one's own spread. Clustered: the unit resampled is the
image (the synthetic world asks three questions about each, and they are not independent);
a held-out-world item is its own image. Stratified: images are resampled within their split,
so a statistic pooling splits keeps each split's weight. The interval is the 2.5th and 97.5th
percentile of the resampled statistic.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from benchmarks.study.evaluation import Row

CHUNK = 500  # resamples per matrix product (memory: CHUNK x clusters floats)


@dataclass(frozen=True)
class Estimate:
    point: float
    low: float
    high: float
    n: int  # items
    clusters: int

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2

    def to_dict(self, scale: float = 100.0) -> dict:
        return {"point": round(self.point * scale, 2), "low": round(self.low * scale, 2),
                "high": round(self.high * scale, 2), "half_width": round(self.half_width * scale, 2),
                "n": self.n, "clusters": self.clusters}


class Table:
    """Correctness of several systems on their common items, summed per (cluster, group)."""

    def __init__(self, rows: Mapping[str, Sequence[Row]], group: Callable[[Row], str] = lambda r: "all") -> None:
        if not rows:
            raise ValueError("a table needs at least one system")
        # keyed by (split, id): the held-out world's open and multiple-choice splits share ids
        by_sys = {s: {(r.split, r.id): r for r in rs} for s, rs in rows.items()}
        first = next(iter(by_sys.values()))
        common = [i for i in first if all(i in m for m in by_sys.values())]
        self.systems = list(rows)
        self.n = len(common)
        ref = [first[i] for i in common]
        self.groups = sorted({group(r) for r in ref})
        clusters = sorted({(r.split, r.cluster) for r in ref})
        self.n_clusters = len(clusters)
        c_index = {c: k for k, c in enumerate(clusters)}
        g_index = {g: k for k, g in enumerate(self.groups)}
        self.strata = [np.array([k for k, c in enumerate(clusters) if c[0] == s]) for s in sorted({c[0] for c in clusters})]
        self.count = np.zeros((len(clusters), len(self.groups)))
        self.sums = {s: np.zeros((len(clusters), len(self.groups))) for s in self.systems}
        for i, r in zip(common, ref, strict=True):
            c, g = c_index[(r.split, r.cluster)], g_index[group(r)]
            self.count[c, g] += 1
            for s in self.systems:
                self.sums[s][c, g] += float(by_sys[s][i].correct)

    def weights(self, resamples: int, seed: int):
        """Chunks of cluster weights (how often each image is drawn), stratified by split."""
        rng = np.random.default_rng(seed)
        left = resamples
        while left > 0:
            b = min(CHUNK, left)
            w = np.zeros((b, self.n_clusters))
            for idx in self.strata:
                w[:, idx] = rng.multinomial(len(idx), np.full(len(idx), 1.0 / len(idx)), size=b)
            left -= b
            yield w


class Means:
    """Accuracies under one batch of weights: `acc(system, groups)` is a vector over resamples."""

    def __init__(self, table: Table, w: np.ndarray) -> None:
        self.table = table
        self.num = {s: w @ table.sums[s] for s in table.systems}
        self.den = w @ table.count

    def _cols(self, groups: str | Sequence[str] | None) -> list[int]:
        if groups is None:
            return list(range(len(self.table.groups)))
        names = [groups] if isinstance(groups, str) else list(groups)
        return [self.table.groups.index(g) for g in names if g in self.table.groups]

    def acc(self, system: str, groups: str | Sequence[str] | None = None) -> np.ndarray:
        cols = self._cols(groups)
        with np.errstate(invalid="ignore", divide="ignore"):
            return self.num[system][:, cols].sum(1) / self.den[:, cols].sum(1)

    def has(self, groups: str | Sequence[str]) -> bool:
        return bool(self._cols(groups))


Statistic = Callable[[Means], np.ndarray]


def bootstrap(table: Table, statistic: Statistic, *, resamples: int = 10_000, seed: int = 0) -> Estimate:
    """The statistic on the items as they are, and its 95% percentile interval over resamples."""
    if table.n == 0:
        return Estimate(float("nan"), float("nan"), float("nan"), 0, 0)
    point = float(statistic(Means(table, np.ones((1, table.n_clusters))))[0])
    draws = np.concatenate([statistic(Means(table, w)) for w in table.weights(resamples, seed)])
    draws = draws[np.isfinite(draws)]
    if draws.size == 0:
        return Estimate(point, float("nan"), float("nan"), table.n, table.n_clusters)
    low, high = np.percentile(draws, [2.5, 97.5])
    return Estimate(point, float(low), float(high), table.n, table.n_clusters)


def spearman_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Spearman's rank correlation of each row of x with the same row of y (ties: order of appearance)."""
    def ranks(a: np.ndarray) -> np.ndarray:
        return np.argsort(np.argsort(a, axis=1, kind="stable"), axis=1).astype(float)

    rx, ry = ranks(x), ranks(y)
    rx -= rx.mean(1, keepdims=True)
    ry -= ry.mean(1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (rx * ry).sum(1) / np.sqrt((rx * rx).sum(1) * (ry * ry).sum(1))
