"""The study's paired, clustered, stratified bootstrap."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.study.bootstrap import Table, bootstrap, spearman_rows
from benchmarks.study.evaluation import Row


def rows(correct: list[bool], *, split: str = "hc", per_image: int = 1, category: str = "c", start: int = 0) -> list[Row]:
    return [Row(id=f"{split}-{start + i}", split=split, cluster=f"{split}:{(start + i) // per_image}", category=category,
                qtype=category, correct=c, form=None, mc=True) for i, c in enumerate(correct)]


def test_point_is_the_plain_difference_on_common_items_and_the_interval_holds_it():
    a = rows([True] * 60 + [False] * 40)
    b = rows([True] * 45 + [False] * 55)[:90]  # b answered only 90 items: the table keeps those
    t = Table({"a": a, "b": b})
    assert t.n == 90
    est = bootstrap(t, lambda m: m.acc("a") - m.acc("b"), resamples=2000)
    assert est.point == pytest.approx(60 / 90 - 45 / 90)
    assert est.low < est.point < est.high
    assert est.n == 90 and est.clusters == 90


def test_identical_systems_differ_by_exactly_zero_in_every_resample():
    a = rows([bool(i % 3) for i in range(50)])
    est = bootstrap(Table({"a": a, "b": list(a)}), lambda m: m.acc("a") - m.acc("b"), resamples=500)
    assert (est.point, est.low, est.high) == (0.0, 0.0, 0.0)


def test_pairing_narrows_the_interval_of_a_difference():
    rng = np.random.default_rng(1)
    base = rng.random(400) < 0.5
    flip = rng.random(400) < 0.05  # b differs from a on ~5% of items
    a, b = rows(list(base)), rows(list(base ^ flip))
    paired = bootstrap(Table({"a": a, "b": b}), lambda m: m.acc("a") - m.acc("b"), resamples=2000)
    single = bootstrap(Table({"a": a}), lambda m: m.acc("a"), resamples=2000)
    # unpaired, the difference of two such accuracies would be ~1.4x as wide as one of them
    assert paired.half_width < single.half_width / 1.5


def test_images_are_resampled_whole():
    """Three identical answers per image carry the information of one: the interval widens by ~sqrt(3)."""
    rng = np.random.default_rng(2)
    one = list(rng.random(300) < 0.6)
    independent = bootstrap(Table({"a": rows(one)}), lambda m: m.acc("a"), resamples=4000)
    tripled = [c for c in one[:100] for _ in range(3)]
    clustered = bootstrap(Table({"a": rows(tripled, per_image=3)}), lambda m: m.acc("a"), resamples=4000)
    assert clustered.clusters == 100
    assert clustered.half_width == pytest.approx(np.sqrt(3) * independent.half_width, rel=0.25)


def test_splits_keep_their_weight_and_groups_are_separate():
    a = rows([True] * 30, split="id") + rows([False] * 70, split="hw")
    t = Table({"a": a}, lambda r: r.split)
    est = bootstrap(t, lambda m: m.acc("a"), resamples=300)
    # stratified: every resample has 30 id and 70 hw items, so the pooled accuracy never moves
    assert (est.low, est.high) == (0.3, 0.3)
    by = bootstrap(t, lambda m: m.acc("a", "id") - m.acc("a", "hw"), resamples=300)
    assert by.point == 1.0


def test_spearman_of_rows():
    x = np.array([[1.0, 2, 3, 4], [1.0, 2, 3, 4]])
    y = np.array([[10.0, 20, 30, 40], [4.0, 3, 2, 1]])
    assert spearman_rows(x, y) == pytest.approx([1.0, -1.0])
