"""Runtime results and events -> OpenAI chat-completion objects and SSE frames.

The conventions clients already parse (llama-server, vLLM, DeepSeek): the thinking text
is `reasoning_content` (in the message, and in stream deltas), the answer is `content`,
`usage.completion_tokens_details.reasoning_tokens` counts the thinking tokens, and
`finish_reason` is "length" when a budget forced the answer. Everything else Extract+Think
knows (focus hint, extraction, per-stage timings, budget events) is in one extra field,
`extract_think`: on the non-streaming response and on the stream's last chunk it is
`Result.to_dict()` (docs/runtime.md) plus `queue_s`; in the stream, progress comes as
extra SSE events named `extract_think` whose data is a valid chunk with an empty delta,
so a client that ignores event names still parses them and finds nothing to print.
"""

from __future__ import annotations

import json
from typing import Any

from runtime.result import (
    BudgetAction,
    Event,
    Result,
    StageFinished,
    StageStarted,
    TokenEvent,
    event_to_dict,
)

THINKING_STAGES = ("thinking",)
ANSWER_STAGES = ("answer",)
# a budget forced the answer: thinking was cut at its budget, or the answer at its budget
LENGTH_EVENTS = ("force_think_end", "budget_exhausted")
EXTRA_EVENT = "extract_think"


def finish_reason(result: Result) -> str:
    forced = any(e.kind in LENGTH_EVENTS and e.stage in (*THINKING_STAGES, *ANSWER_STAGES)
                 for e in result.budget_events)
    return "length" if forced else "stop"


def usage(result: Result) -> dict[str, Any]:
    """Tokens read and written by every text stage; reasoning tokens = the thinking stage's."""
    text = [s for name, s in result.stages.items() if name != "vision"]
    prompt = sum(s.prompt_tokens for s in text)
    completion = sum(s.tokens for s in text)
    thinking = result.stages.get("thinking")
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": sum(s.reused_prompt_tokens for s in text)},
        "completion_tokens_details": {"reasoning_tokens": thinking.tokens if thinking is not None else 0},
    }


def content(result: Result) -> str:
    """What the answer stage wrote (it holds the `Answer:` line); the parsed answer if empty."""
    return result.answer_text if result.answer_text.strip() else (result.answer or "")


def extra_field(result: Result, queue_s: float) -> dict[str, Any]:
    return {**result.to_dict(), "queue_s": round(queue_s, 6)}


def completion(job_id: str, created: int, model: str, result: Result, queue_s: float) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": content(result)}
    if result.thinking_enabled:
        message["reasoning_content"] = result.thinking or ""
    return {
        "id": job_id, "object": "chat.completion", "created": created, "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish_reason(result), "logprobs": None}],
        "usage": usage(result),
        EXTRA_EVENT: extra_field(result, queue_s),
    }


class ChunkWriter:
    """SSE frames of one streamed completion."""

    def __init__(self, job_id: str, created: int, model: str) -> None:
        self._head = {"id": job_id, "object": "chat.completion.chunk", "created": created, "model": model}

    def _chunk(self, delta: dict[str, Any] | None, finish: str | None = None, **extra: Any) -> dict[str, Any]:
        choices = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}]
        return {**self._head, "choices": choices, **extra}

    @staticmethod
    def frame(data: dict[str, Any] | str, event: str | None = None) -> bytes:
        text = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
        return (f"event: {event}\n" if event else "").encode() + f"data: {text}\n\n".encode()

    def role(self) -> bytes:
        return self.frame(self._chunk({"role": "assistant", "content": ""}))

    def delta(self, field: str, text: str) -> bytes:
        return self.frame(self._chunk({field: text}))

    def extra(self, info: dict[str, Any]) -> bytes:
        return self.frame(self._chunk({}, **{EXTRA_EVENT: info}), event=EXTRA_EVENT)

    def finish(self, result: Result, queue_s: float) -> bytes:
        return self.frame(self._chunk({}, finish_reason(result), **{EXTRA_EVENT: extra_field(result, queue_s)}))

    def usage(self, result: Result) -> bytes:
        return self.frame(self._chunk(None, usage=usage(result)))

    @classmethod
    def error(cls, body: dict[str, Any]) -> bytes:
        return cls.frame(body)

    @classmethod
    def done(cls) -> bytes:
        return cls.frame("[DONE]")


def event_frames(writer: ChunkWriter, events: list[Event]) -> list[bytes]:
    """Runtime events -> frames; neighbouring tokens of one stage are sent as one delta."""
    frames: list[bytes] = []
    pending_stage, pending = None, []

    def flush() -> None:
        if pending:
            text = "".join(pending)
            if pending_stage in THINKING_STAGES:
                frames.append(writer.delta("reasoning_content", text))
            elif pending_stage in ANSWER_STAGES:
                frames.append(writer.delta("content", text))
            else:
                frames.append(writer.extra({"type": "token", "stage": pending_stage, "text": text}))
        pending.clear()

    for ev in events:
        if isinstance(ev, TokenEvent):
            if ev.stage != pending_stage:
                flush()
                pending_stage = ev.stage
            if ev.text:
                pending.append(ev.text)
            continue
        flush()
        pending_stage = None
        if isinstance(ev, (StageStarted, StageFinished, BudgetAction)):
            frames.append(writer.extra(event_to_dict(ev)))
    flush()
    return frames
