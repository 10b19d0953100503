"""What a request returns, and the events a streaming caller receives while it runs.

`Result.to_dict()` is the JSON that `edge run --json` prints; scripts rely on its keys
(`answer`, `hint`, `extraction`, `thinking`, `stages`, `peak_rss_mb`, `budget_events`),
so they only ever grow. The schema is documented in docs/runtime.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class BudgetEvent:
    """One action of the budget controller.

    `position` counts the tokens the stage had generated when the action happened.
    Kinds: boost, force_newline, force_think_end, think_closed, nowait_blocked,
    special_blocked, budget_exhausted, force_answer, context_clamp, deadline_plan.
    """

    stage: str
    kind: str
    position: int
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"stage": self.stage, "kind": self.kind, "position": self.position, "detail": self.detail}


@dataclass
class StageStats:
    """Cost of one stage. Times are wall-clock seconds measured around the backend calls."""

    name: str
    model: str  # "perception" | "reasoner"
    prompt_tokens: int = 0
    reused_prompt_tokens: int = 0  # served from the KV cache of a previous request
    tokens: int = 0
    ttft_s: float = 0.0
    tokens_per_s: float = 0.0
    prefill_tokens_per_s: float = 0.0
    prefill_s: float = 0.0  # feeding the prompt (the positions not reused), first stage of a generation
    seconds: float = 0.0
    load_s: float = 0.0  # model swap time charged to this stage (sequential residency: freeing the other model, loading this one)
    budget: int | None = None
    cached: bool = False
    rss_mb: float = 0.0  # process RSS when the stage finished
    drafted: int = 0  # prompt-lookup draft tokens verified after this stage's tokens (0: lookup off)
    accepted: int = 0  # draft tokens kept: the model chose them itself

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "prompt_tokens": self.prompt_tokens,
            "reused_prompt_tokens": self.reused_prompt_tokens,
            "tokens": self.tokens,
            "ttft_s": round(self.ttft_s, 6),
            "tokens_per_s": round(self.tokens_per_s, 3),
            "prefill_tokens_per_s": round(self.prefill_tokens_per_s, 3),
            "prefill_s": round(self.prefill_s, 6),
            "seconds": round(self.seconds, 6),
            "load_s": round(self.load_s, 6),
            "budget": self.budget,
            "cached": self.cached,
            "rss_mb": round(self.rss_mb, 1),
            "drafted": self.drafted,
            "accepted": self.accepted,
        }


@dataclass
class Result:
    question: str
    options: tuple[str, ...] | None
    mode: str
    thinking_enabled: bool
    answer: str | None = None  # the parsed answer (option letter for multiple choice)
    answer_text: str = ""  # everything the final stage wrote after thinking
    answer_found: bool = False
    answer_source: str = "none"
    hint: str | None = None
    extraction: str | None = None
    thinking: str | None = None
    stages: dict[str, StageStats] = field(default_factory=dict)
    budget_events: list[BudgetEvent] = field(default_factory=list)
    budgets: dict[str, int] = field(default_factory=dict)  # what each stage was allowed
    cache_hits: dict[str, bool] = field(default_factory=dict)
    peak_rss_mb: float = 0.0
    seconds: float = 0.0
    deadline_s: float | None = None
    backend: dict[str, str] = field(default_factory=dict)  # role -> "llamacpp gguf/f32"
    residency: str = "resident"
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "answer": self.answer,
            "answer_text": self.answer_text,
            "answer_found": self.answer_found,
            "answer_source": self.answer_source,
            "question": self.question,
            "options": list(self.options) if self.options else None,
            "mode": self.mode,
            "thinking_enabled": self.thinking_enabled,
            "hint": self.hint,
            "extraction": self.extraction,
            "thinking": self.thinking,
            "stages": {name: s.to_dict() for name, s in self.stages.items()},
            "budgets": dict(self.budgets),
            "budget_events": [e.to_dict() for e in self.budget_events],
            "cache_hits": dict(self.cache_hits),
            "peak_rss_mb": round(self.peak_rss_mb, 1),
            "seconds": round(self.seconds, 6),
            "deadline_s": self.deadline_s,
            "backend": dict(self.backend),
            "residency": self.residency,
            "seed": self.seed,
        }


# ---- streaming events -------------------------------------------------------------


@dataclass(frozen=True)
class StageStarted:
    stage: str
    model: str
    budget: int | None = None
    type: str = "stage_started"


@dataclass(frozen=True)
class TokenEvent:
    """One generated token; `text` is the complete UTF-8 text it adds (may be "": an
    incomplete UTF-8 sequence waits for the next token, and control tokens such as
    `</think>` add none). `token_id` -1 carries leftover bytes flushed at a stage's end."""

    stage: str
    token_id: int
    text: str
    forced: bool = False
    type: str = "token"


@dataclass(frozen=True)
class BudgetAction:
    event: BudgetEvent
    type: str = "budget"


@dataclass(frozen=True)
class StageFinished:
    stage: str
    stats: StageStats
    text: str | None = None
    type: str = "stage_finished"


@dataclass(frozen=True)
class Done:
    result: Result
    type: str = "done"


Event = StageStarted | TokenEvent | BudgetAction | StageFinished | Done


def event_to_dict(ev: Event) -> dict[str, Any]:
    """JSON form of a streaming event (`edge run --stream --json` prints one per line)."""
    if isinstance(ev, StageStarted):
        return {"type": ev.type, "stage": ev.stage, "model": ev.model, "budget": ev.budget}
    if isinstance(ev, TokenEvent):
        return {"type": ev.type, "stage": ev.stage, "id": ev.token_id, "text": ev.text, "forced": ev.forced}
    if isinstance(ev, BudgetAction):
        return {"type": ev.type, **ev.event.to_dict()}
    if isinstance(ev, StageFinished):
        return {"type": ev.type, "stage": ev.stage, "stats": ev.stats.to_dict(), "text": ev.text}
    if isinstance(ev, Done):
        return {"type": ev.type, "result": ev.result.to_dict()}
    raise TypeError(f"not an event: {ev!r}")
