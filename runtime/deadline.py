"""Deadline mode: "answer within N seconds" turned into token budgets.

Before each stage the planner takes the time left, subtracts what the remaining stages
must spend anyway (prompt prefill at the measured prefill speed, vision encoding) and
shares the rest between their decode budgets in proportion to their caps (the budgets
the request would have had without a deadline), never below each stage's floor. Speeds
start from a prior (a device profile's numbers or the previous request's measurements)
and are replaced by what the stages measure as they run, so the plan tightens or
loosens as the request goes.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from runtime.errors import InputError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Throughput:
    prefill_tps: float  # prompt positions (tokens or image embeddings) per second
    decode_tps: float  # generated tokens per second
    vision_s: float = 0.0  # seconds to encode one image view (perception only)

    def __post_init__(self) -> None:
        if not (self.prefill_tps > 0 and self.decode_tps > 0 and self.vision_s >= 0):
            raise InputError(f"throughput must be positive: {self}")


# Deliberately pessimistic: a small model on a Raspberry Pi class CPU.
DEFAULT_PRIOR: dict[str, Throughput] = {
    "perception": Throughput(prefill_tps=60.0, decode_tps=8.0, vision_s=2.0),
    "reasoner": Throughput(prefill_tps=60.0, decode_tps=8.0),
}


@dataclass(frozen=True)
class StageSpec:
    """A stage still to run: its prompt length (or an estimate) and its budget range."""

    name: str
    role: str
    prompt_tokens: int
    cap: int  # the budget without a deadline
    floor: int = 0  # never plan below this (an answer needs a few tokens)
    vision: bool = False  # encodes an image first
    views: int = 1  # encoder runs for that image (anyres: base view + tiles)


@dataclass
class _Measured:
    prefill_tokens: int = 0
    prefill_s: float = 0.0
    decode_tokens: int = 0
    decode_s: float = 0.0
    vision_runs: int = 0
    vision_s: float = 0.0


@dataclass
class DeadlinePlanner:
    deadline_s: float
    prior: dict[str, Throughput] = field(default_factory=lambda: dict(DEFAULT_PRIOR))
    clock: Callable[[], float] = time.monotonic
    safety: float = 0.9  # plan to use this share of the time left (timing noise, sampling)
    started: float | None = None

    def __post_init__(self) -> None:
        if not (self.deadline_s > 0 and math.isfinite(self.deadline_s)):
            raise InputError(f"the deadline must be a positive number of seconds, got {self.deadline_s}")
        if self.started is None:
            self.started = self.clock()
        self._measured: dict[str, _Measured] = {}

    def remaining(self) -> float:
        return self.deadline_s - (self.clock() - self.started)

    def speed(self, role: str) -> Throughput:
        """Measured speed where there is enough of it, the prior otherwise."""
        base = self.prior.get(role) or DEFAULT_PRIOR.get(role) or DEFAULT_PRIOR["reasoner"]
        m = self._measured.get(role)
        if m is None:
            return base
        prefill = m.prefill_tokens / m.prefill_s if m.prefill_tokens >= 4 and m.prefill_s > 0 else base.prefill_tps
        decode = m.decode_tokens / m.decode_s if m.decode_tokens >= 4 and m.decode_s > 0 else base.decode_tps
        vision = m.vision_s / m.vision_runs if m.vision_runs else base.vision_s
        return Throughput(prefill, decode, vision)

    def observe(
        self,
        role: str,
        *,
        prefill_tokens: int = 0,
        prefill_s: float = 0.0,
        decode_tokens: int = 0,
        decode_s: float = 0.0,
        vision_s: float | None = None,
    ) -> None:
        m = self._measured.setdefault(role, _Measured())
        m.prefill_tokens += prefill_tokens
        m.prefill_s += prefill_s
        m.decode_tokens += decode_tokens
        m.decode_s += decode_s
        if vision_s is not None:
            m.vision_runs += 1
            m.vision_s += vision_s

    def measured(self) -> dict[str, Throughput]:
        """Speeds to use as the next request's prior."""
        return {role: self.speed(role) for role in set(self.prior) | set(self._measured)}

    def plan(self, stages: Sequence[StageSpec]) -> dict[str, int]:
        """Budgets for the remaining stages (the first one is about to run)."""
        avail = self.remaining() * self.safety
        fixed = 0.0
        for s in stages:
            sp = self.speed(s.role)
            fixed += s.prompt_tokens / sp.prefill_tps + (sp.vision_s * s.views if s.vision else 0.0)
        floors = {s.name: min(s.floor, s.cap) for s in stages}
        cost = {s.name: 1.0 / self.speed(s.role).decode_tps for s in stages}
        at_caps = sum(s.cap * cost[s.name] for s in stages)
        at_floors = sum(floors[s.name] * cost[s.name] for s in stages)
        decode_time = avail - fixed
        if decode_time >= at_caps:
            budgets = {s.name: s.cap for s in stages}
        elif decode_time <= at_floors:
            budgets = dict(floors)
        else:
            share = (decode_time - at_floors) / (at_caps - at_floors)
            budgets = {s.name: floors[s.name] + int((s.cap - floors[s.name]) * share) for s in stages}
        log.debug("deadline plan with %.2f s left (fixed %.2f s): %s", avail, fixed, budgets)
        return budgets
