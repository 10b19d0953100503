"""Deadline mode: time left and measured throughput -> budgets, re-planned as stages run."""

from __future__ import annotations

import pytest

from runtime.deadline import DeadlinePlanner, StageSpec, Throughput
from runtime.errors import InputError


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


PRIOR = {"perception": Throughput(100.0, 10.0, vision_s=1.0), "reasoner": Throughput(100.0, 10.0)}
STAGES = [
    StageSpec("extraction", "perception", 100, cap=200, floor=16, vision=True),
    StageSpec("thinking", "reasoner", 300, cap=400),
    StageSpec("answer", "reasoner", 0, cap=50, floor=8),
]


def test_plenty_of_time_gives_the_caps():
    p = DeadlinePlanner(1000.0, PRIOR, clock=Clock())
    assert p.plan(STAGES) == {"extraction": 200, "thinking": 400, "answer": 50}


def test_tight_deadline_scales_budgets_down_proportionally():
    clock = Clock()
    p = DeadlinePlanner(40.0, PRIOR, clock=clock, safety=1.0)
    # fixed: 1 s + 3 s prefill + 1 s vision = 5 s; 35 s of decode at 10 tok/s = 350 tokens
    plan = p.plan(STAGES)
    assert sum(plan.values()) == pytest.approx(350, abs=3)
    assert plan["extraction"] >= 16 and plan["answer"] >= 8
    assert plan["thinking"] < 400 and plan["extraction"] < 200


def test_hopeless_deadline_keeps_the_floors():
    p = DeadlinePlanner(1.0, PRIOR, clock=Clock())
    assert p.plan(STAGES) == {"extraction": 16, "thinking": 0, "answer": 8}


def test_replanning_uses_measured_speed_and_time_left():
    clock = Clock()
    p = DeadlinePlanner(40.0, PRIOR, clock=clock, safety=1.0)
    first = p.plan(STAGES)["thinking"]
    clock.t += 6.0  # extraction took 6 s...
    p.observe("reasoner", prefill_tokens=300, prefill_s=0.3, decode_tokens=100, decode_s=2.0)  # ...50 tok/s
    assert p.speed("reasoner").decode_tps == pytest.approx(50.0)
    later = p.plan(STAGES[1:])["thinking"]
    assert later > first
    assert p.remaining() == pytest.approx(34.0)
    assert p.measured()["reasoner"].decode_tps == pytest.approx(50.0)


def test_vision_measurement_replaces_the_prior():
    p = DeadlinePlanner(10.0, PRIOR, clock=Clock())
    p.observe("perception", vision_s=0.25)
    assert p.speed("perception").vision_s == 0.25


@pytest.mark.parametrize("bad", [0, -1, float("inf"), float("nan")])
def test_invalid_deadline(bad):
    with pytest.raises(InputError):
        DeadlinePlanner(bad)


def test_invalid_throughput():
    with pytest.raises(InputError):
        Throughput(0.0, 1.0)
