"""The verdict rules of findings (a)-(d), on answers built to land on each side of them."""

from __future__ import annotations

import zlib

import numpy as np
import pytest

from benchmarks.study.evaluation import Row
from benchmarks.study.verdicts import (
    INCONCLUSIVE,
    NOT_REPRODUCED,
    REASONING,
    REPRODUCED,
    VISION_CENTRIC,
    finding_a,
    finding_b,
    finding_c,
    finding_d,
)

MARGIN = 0.03
RESAMPLES = 200
SPLITS = ("id", "hc", "hw")


def answers(rate: float, n: int, seed: int) -> list[bool]:
    """Exactly round(rate * n) right answers, in a seeded order."""
    k = round(rate * n)
    out = np.array([True] * k + [False] * (n - k))
    np.random.default_rng(seed).shuffle(out)
    return [bool(x) for x in out]


class Fake:
    """`get(system, splits, thinking, blank)` over rows whose accuracy is set per system,
    split and category; items and images are the same for every system (paired), and two
    systems with the same accuracy on a split give the same answers (a tie)."""

    def __init__(self, rates: dict, n: int = 300, categories: tuple[str, ...] = ("c",)) -> None:
        self.rows: dict[tuple, list[Row]] = {}
        for key, rate in rates.items():
            system, split, thinking, blank = key
            rows = []
            for cat in categories:
                r = rate[cat] if isinstance(rate, dict) else rate
                for i, ok in enumerate(answers(r, n, seed=zlib.crc32(f"{r}:{split}:{cat}".encode()))):
                    rows.append(Row(id=f"{split}-{cat}-{i}", split=split, cluster=f"{split}:{cat}:{i // 3}",
                                    category=cat, qtype=f"{cat}-q{i % 2}", correct=ok, form=None, mc=True))
            self.rows[key] = rows

    def __call__(self, system, splits, thinking=True, blank=False):
        return [r for s in splits for r in self.rows.get((system, s, thinking, blank), [])]


def rates_for(systems: dict[str, float], splits=SPLITS, thinking: bool = True) -> dict:
    return {(s, sp, thinking, False): r for s, r in systems.items() for sp in splits}


LEARNED = {s: True for s in ("e2e-S", "e2e-M", "ct-MM", "et-MM", "et-SM", "et-MS", "et-SS")}


@pytest.mark.parametrize(("rates", "verdict"), [
    ({"et-MM": 0.8, "ct-MM": 0.6, "e2e-M": 0.4}, REPRODUCED),
    ({"et-MM": 0.6, "ct-MM": 0.8, "e2e-M": 0.4}, NOT_REPRODUCED),  # E+T below C+T
    ({"et-MM": 0.6, "ct-MM": 0.6, "e2e-M": 0.4}, NOT_REPRODUCED),  # a tie: the same answers
])
def test_finding_c(rates, verdict):
    f = finding_c(Fake(rates_for(rates)), LEARNED, MARGIN, RESAMPLES)
    assert f.verdict == verdict
    assert f.effects["et_minus_ct"].point == pytest.approx(rates["et-MM"] - rates["ct-MM"])
    assert set(f.details["per_split"]) == {"id", "hc", "hw"}


def test_finding_c_with_few_items_is_inconclusive():
    f = finding_c(Fake(rates_for({"et-MM": 0.55, "ct-MM": 0.5, "e2e-M": 0.45}), n=12), LEARNED, MARGIN, RESAMPLES)
    assert f.verdict == INCONCLUSIVE
    assert f.effects["et_minus_ct"].low < 0 < f.effects["et_minus_ct"].high


def test_nothing_learned_makes_a_finding_inconclusive_whatever_the_numbers():
    learned = dict.fromkeys(LEARNED, False)
    f = finding_c(Fake(rates_for({"et-MM": 0.8, "ct-MM": 0.6, "e2e-M": 0.4})), learned, MARGIN, RESAMPLES)
    assert f.verdict == INCONCLUSIVE and "did not beat" in f.reason


@pytest.mark.parametrize(("rates", "verdict"), [
    ({"et-MM": 0.8, "et-SM": 0.55, "et-MS": 0.6, "et-SS": 0.4}, REPRODUCED),  # perception hurts more
    ({"et-MM": 0.8, "et-SM": 0.6, "et-MS": 0.6, "et-SS": 0.4}, REPRODUCED),  # as much
    ({"et-MM": 0.8, "et-SM": 0.75, "et-MS": 0.4, "et-SS": 0.4}, NOT_REPRODUCED),  # reasoning hurts more
    ({"et-MM": 0.8, "et-SM": 0.8, "et-MS": 0.8, "et-SS": 0.8}, NOT_REPRODUCED),  # sizes do not matter
])
def test_finding_b(rates, verdict):
    f = finding_b(Fake(rates_for(rates)), LEARNED, MARGIN, RESAMPLES)
    assert f.verdict == verdict
    assert f.effects["dP"].point == pytest.approx(rates["et-MM"] - rates["et-SM"])
    assert f.effects["dR"].point == pytest.approx(rates["et-MM"] - rates["et-MS"])


def d_rates(think: dict[str, float], direct: dict[str, float]) -> dict:
    out = {("et-MM", sp, True, False): r for sp, r in think.items()}
    out.update({("et-MM", sp, False, False): r for sp, r in direct.items()})
    return out


@pytest.mark.parametrize(("think", "direct", "verdict"), [
    ({"id": 0.7, "hc": 0.6, "hw": 0.5}, {"id": 0.7, "hc": 0.4, "hw": 0.3}, REPRODUCED),
    ({"id": 0.9, "hc": 0.6, "hw": 0.5}, {"id": 0.5, "hc": 0.55, "hw": 0.45}, NOT_REPRODUCED),  # helps more in domain
    ({"id": 0.5, "hc": 0.4, "hw": 0.3}, {"id": 0.7, "hc": 0.6, "hw": 0.5}, NOT_REPRODUCED),  # hurts out of domain
])
def test_finding_d(think, direct, verdict):
    f = finding_d(Fake(d_rates(think, direct)), LEARNED, MARGIN, RESAMPLES)
    assert f.verdict == verdict
    assert f.effects["gain_in"].point == pytest.approx(think["id"] - direct["id"])


CATS = (*VISION_CENTRIC, *REASONING)


def a_rates(m: dict[str, float], s: dict[str, float]) -> dict:
    return {**{("e2e-M", sp, True, False): m for sp in ("id", "hc")},
            **{("e2e-S", sp, True, False): s for sp in ("id", "hc")},
            **{("e2e-M", sp, True, True): dict.fromkeys(CATS, 0.3) for sp in ("id", "hc")}}


def test_finding_a_reproduced_when_vision_centric_categories_drop_most():
    m = dict.fromkeys(CATS, 0.8)
    s = {**dict.fromkeys(VISION_CENTRIC, 0.4), **dict.fromkeys(REASONING, 0.75)}
    f = finding_a(Fake(a_rates(m, s), n=150, categories=CATS), LEARNED, MARGIN, RESAMPLES)
    assert f.verdict == REPRODUCED
    assert f.effects["effect"].point == pytest.approx(0.4 - 0.05, abs=0.01)
    assert set(f.details["per_category"]) == set(CATS)
    assert f.details["image_need"]["spearman"] is not None


def test_finding_a_not_reproduced_when_reasoning_drops_most():
    m = dict.fromkeys(CATS, 0.8)
    s = {**dict.fromkeys(VISION_CENTRIC, 0.75), **dict.fromkeys(REASONING, 0.4)}
    f = finding_a(Fake(a_rates(m, s), n=150, categories=CATS), LEARNED, MARGIN, RESAMPLES)
    assert f.verdict == NOT_REPRODUCED
