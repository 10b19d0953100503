"""The runtime's own path for one stage shape, run to a fixed number of new tokens.

`RuntimeStage` calls `runtime.generation.generate` over a loaded backend model exactly as
the pipeline does (budget controller, NoWait ids, greedy sampler, streaming decoder), with
EOS and `</think>` banned so every engine in a comparison generates the same number of
tokens; `ban_ids` gives the raw loops the same bans.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from benchmarks.inputs import TokenCounts
from runtime.budget import BudgetController, StageLimits, control_tokens
from runtime.generation import Session, generate, run_to_end
from runtime.nowait import nowait_token_ids
from runtime.sampling import GREEDY, Sampler


def fixed_length_control(tok: Any) -> Any:
    """The runtime's control tokens with EOS and `</think>` banned (never sampled), so a
    stage always runs to its budget; the controller still forces `</think>` on schedule."""
    base = control_tokens(tok)
    never = set(base.never) | set(base.stop)
    if base.think_end is not None:
        never.add(base.think_end)
    return replace(base, stop=(), never=tuple(sorted(never)))


def stage_limits(stage: str, counts: TokenCounts) -> StageLimits:
    if stage == "reasoning":
        return StageLimits("answer", counts.answer, thinking_budget=counts.thinking, nowait=True)
    return StageLimits(stage, {"hint": counts.hint, "extraction": counts.extraction}[stage])


def expected_new_tokens(stage: str, counts: TokenCounts) -> int:
    if stage == "reasoning":
        return counts.thinking + 1 + counts.answer  # + the forced </think>
    return {"hint": counts.hint, "extraction": counts.extraction}[stage]


class RuntimeStage:
    """`runtime.generation.generate` over a loaded backend model, exactly as the pipeline
    calls it (budget controller, NoWait ids, greedy sampler, streaming decoder)."""

    def __init__(self, lm: Any, tok: Any, role: str) -> None:
        self.lm, self.tok, self.role = lm, tok, role
        self.session = Session(lm)
        self.control = fixed_length_control(tok)
        self.nowait = nowait_token_ids(tok)

    def run(self, prompt: Sequence[int | None], stage: str, counts: TokenCounts,
            image_embeds: np.ndarray | None) -> dict[str, float]:
        limits = stage_limits(stage, counts)
        self.session.reset()  # a cold prompt every repetition: no KV reuse between reps
        ctl = BudgetController(limits, self.control, self.tok, self.lm.n_vocab,
                               nowait_ids=self.nowait if limits.thinking_budget is not None else None)
        t0 = time.perf_counter()
        gen = run_to_end(generate(self.session, self.tok, prompt, ctl, Sampler(GREEDY, 0), role=self.role,
                                  image=image_embeds, image_key=None))
        total = time.perf_counter() - t0
        first = gen.stats[gen.stages[0]]
        return {"prefill_s": gen.prefill_s, "decode_s": gen.decode_s, "total_s": total,
                "ttft_s": first.ttft_s, "new_tokens": gen.generated}


def ban_ids(tok: Any) -> list[int]:
    """What the raw loops mask: the same ids the fixed-length runtime path never samples."""
    c = fixed_length_control(tok)
    return [i for i in c.never if i < tok.vocab_size]


def timing(rep: dict[str, float], n_prompt: int, n_new: int) -> dict[str, float]:
    out = {k: float(rep[k]) for k in ("prefill_s", "decode_s", "total_s")}
    out["ttft_s"] = float(rep.get("ttft_s", rep["prefill_s"]))
    out["prefill_tps"] = n_prompt / out["prefill_s"] if out["prefill_s"] > 0 else 0.0
    out["decode_tps"] = n_new / out["decode_s"] if out["decode_s"] > 0 else 0.0
    return out
