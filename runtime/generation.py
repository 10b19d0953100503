"""The decode loop over any backend's `LanguageModel`.

One loop for every stage and backend: feed the prompt (text runs with `feed_tokens`, the
image with `feed_embeddings`), then repeat: the budget controller's forced token or a
sample from the masked logits, emit it, feed it. It yields streaming events as it goes
and returns a `Generation` with per-stage texts and timings.

`Session` remembers what a model's KV cache holds, so a prompt that starts like the
previous one (the same image with another focus, the same system turn) only feeds the
part that differs.

Per-token work outside the backend is kept to a copy of the logits into a buffer
allocated once, the controller's precomputed index masks, and the sampler.
"""

from __future__ import annotations

import time
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field

import numpy as np

from runtime.backends.base import LanguageModel, TokenizerLike
from runtime.budget import STOP, BudgetController, Verdict
from runtime.errors import ContextOverflowError, InputError
from runtime.memory import current_rss_mb
from runtime.result import BudgetAction, Event, StageFinished, StageStarted, StageStats, TokenEvent
from runtime.sampling import Sampler
from runtime.tokenizer import StreamDecoder


class Session:
    """A language model plus a record of the positions its KV cache holds."""

    def __init__(self, lm: LanguageModel) -> None:
        self.lm = lm
        self._keys: list[object] = []

    @property
    def n_past(self) -> int:
        return len(self._keys)

    def reset(self) -> None:
        self.lm.reset()
        self._keys = []

    def prefill(
        self,
        prompt: Sequence[int | None],
        image: np.ndarray | None = None,
        image_key: str | None = None,
    ) -> tuple[np.ndarray, int]:
        """Feed `prompt` (None = next image embedding row); return (logits, reused positions)."""
        n_img = sum(1 for t in prompt if t is None)
        if n_img and (image is None or image.shape[0] != n_img):
            have = 0 if image is None else image.shape[0]
            raise InputError(f"the prompt has {n_img} image positions but {have} image embeddings were given")
        tag: object = image_key if image_key is not None else object()  # no key: never shared
        keys: list[object] = []
        row = 0
        for t in prompt:
            if t is None:
                keys.append(("image", tag, row))
                row += 1
            else:
                keys.append(t)
        if not keys:
            raise InputError("empty prompt")
        if self.lm.n_past != len(self._keys):  # someone fed the model behind our back
            self.reset()
        common = 0
        for a, b in zip(self._keys, keys, strict=False):
            if a != b:
                break
            common += 1
        common = min(common, len(keys) - 1)  # re-feed at least one position to get logits
        if common == 0:
            if self.lm.n_past:
                self.lm.reset()
        elif common < self.lm.n_past:
            self.lm.truncate(common)
        self._keys = keys[:common]
        logits = None
        i = common
        while i < len(prompt):
            j = i
            if prompt[i] is None:
                while j < len(prompt) and prompt[j] is None:
                    j += 1
                first_row = keys[i][2]  # type: ignore[index]
                logits = self.lm.feed_embeddings(np.ascontiguousarray(image[first_row : first_row + (j - i)]))
            else:
                while j < len(prompt) and prompt[j] is not None:
                    j += 1
                logits = self.lm.feed_tokens([int(t) for t in prompt[i:j]])  # type: ignore[arg-type]
            self._keys.extend(keys[i:j])
            i = j
        assert logits is not None
        return logits, common

    def feed(self, token_id: int) -> np.ndarray:
        logits = self.lm.feed_tokens([token_id])
        self._keys.append(token_id)
        return logits


@dataclass
class Generation:
    token_ids: list[int]
    texts: dict[str, str]  # stage name -> text (control tokens left out)
    stats: dict[str, StageStats]
    prompt_tokens: int
    reused_tokens: int
    prefill_s: float
    decode_s: float
    generated: int
    stop_reason: str  # "stop_token" | "budget" | "forced_answer"
    stages: list[str] = field(default_factory=list)


def generate(
    session: Session,
    tok: TokenizerLike,
    prompt: Sequence[int | None],
    controller: BudgetController,
    sampler: Sampler,
    *,
    role: str,
    image: np.ndarray | None = None,
    image_key: str | None = None,
    load_s: float = 0.0,
) -> Generator[Event, None, Generation]:
    """Run one generation stage; yields events, returns the `Generation`."""
    lm = session.lm
    n_prompt = len(prompt)
    room = lm.n_ctx - n_prompt
    first_stage = controller.last_stage
    if room < 1:
        raise ContextOverflowError(
            f"the {first_stage} prompt is {n_prompt} tokens but the {role} model's context holds "
            f"{lm.n_ctx}: shorten the question or description, or load with a larger context length"
        )
    n_events = 0
    controller.fit_context(room)

    t0 = time.perf_counter()
    yield StageStarted(first_stage, role, _budget_of(controller, first_stage))
    for ev in controller.events[n_events:]:
        yield BudgetAction(ev)
    n_events = len(controller.events)

    logits, reused = session.prefill(prompt, image, image_key)
    t_prefill = time.perf_counter()
    buf = np.empty(lm.n_vocab, dtype=np.float32)
    control_ids = {controller.control.think_end, controller.control.think_start}
    special = control_ids - {None}

    order = [first_stage]
    ids_by_stage: dict[str, list[int]] = {first_stage: []}
    text_by_stage: dict[str, list[str]] = {first_stage: []}
    start = {first_stage: t0}
    first_tok: dict[str, float] = {}
    end: dict[str, float] = {}
    decoder = StreamDecoder(tok)
    all_ids: list[int] = []
    stop_reason = "stop_token"
    current = first_stage
    finished: dict[str, StageStats] = {}

    while True:
        tid = controller.forced()
        if tid == STOP:
            stop_reason = "forced_answer" if controller.forced_answer else "budget"
            break
        forced = tid is not None
        if not forced:
            np.copyto(buf, logits)
            controller.apply(buf)
            tid = sampler(buf)
        verdict = controller.accept(int(tid), forced=forced)
        if len(controller.events) > n_events:
            for ev in controller.events[n_events:]:
                yield BudgetAction(ev)
            n_events = len(controller.events)
        if verdict is Verdict.STOP:
            stop_reason = "forced_answer" if controller.forced_answer else "stop_token"
            break
        if verdict is Verdict.RETRY:
            continue
        tid = int(tid)
        stage = controller.last_stage
        now = time.perf_counter()
        if stage != current:
            tail = decoder.flush()
            if tail:
                text_by_stage[current].append(tail)
                yield TokenEvent(current, -1, tail)
            end[current] = now
            finished[current] = _stats(current, role, order, ids_by_stage, start, first_tok, end,
                                       t_prefill, n_prompt, reused, controller, load_s, special)
            yield StageFinished(current, finished[current], "".join(text_by_stage[current]))
            current = stage
            order.append(stage)
            ids_by_stage[stage], text_by_stage[stage] = [], []
            start[stage] = now
            yield StageStarted(stage, role, _budget_of(controller, stage))
        all_ids.append(tid)
        ids_by_stage[stage].append(tid)
        first_tok.setdefault(stage, now)
        end[stage] = now
        piece = "" if tid in special else decoder.push(tid)
        if piece:
            text_by_stage[stage].append(piece)
        yield TokenEvent(stage, tid, piece, forced)
        if controller.done:
            stop_reason = "forced_answer" if controller.forced_answer else "budget"
            break
        logits = session.feed(tid)

    t_end = time.perf_counter()
    tail = decoder.flush()
    if tail:
        text_by_stage[current].append(tail)
        yield TokenEvent(current, -1, tail)
    end[current] = t_end
    for ev in controller.events[n_events:]:
        yield BudgetAction(ev)
    finished[current] = _stats(current, role, order, ids_by_stage, start, first_tok, end, t_prefill,
                               n_prompt, reused, controller, load_s, special)
    yield StageFinished(current, finished[current], "".join(text_by_stage[current]))

    return Generation(
        token_ids=all_ids,
        texts={name: "".join(text_by_stage[name]) for name in order},
        stats=finished,
        prompt_tokens=n_prompt,
        reused_tokens=reused,
        prefill_s=t_prefill - t0,
        decode_s=t_end - t_prefill,
        generated=len(all_ids),
        stop_reason=stop_reason,
        stages=order,
    )


def _budget_of(controller: BudgetController, stage: str) -> int:
    if controller.limits.thinking_budget is not None and stage == controller.limits.thinking_stage:
        return controller.thinking_budget
    return controller.answer_budget


def _stats(name, role, order, ids_by_stage, start, first_tok, end, t_prefill,
           n_prompt, reused, controller, load_s, special) -> StageStats:
    is_first = name == order[0]
    tokens = sum(1 for t in ids_by_stage[name] if t not in special)
    t_start = start[name]
    t_end = end.get(name, t_start)
    decode_from = t_prefill if is_first else t_start
    decode_s = max(t_end - decode_from, 0.0)
    fed = n_prompt - reused
    prefill_s = t_prefill - start[order[0]]
    return StageStats(
        name=name,
        model=role,
        prompt_tokens=n_prompt if is_first else 0,
        reused_prompt_tokens=reused if is_first else 0,
        tokens=tokens,
        ttft_s=(first_tok[name] - t_start) if name in first_tok else 0.0,
        tokens_per_s=(len(ids_by_stage[name]) / decode_s) if decode_s > 0 and ids_by_stage[name] else 0.0,
        prefill_tokens_per_s=(fed / prefill_s) if is_first and prefill_s > 0 else 0.0,
        seconds=t_end - t_start,
        load_s=load_s if is_first else 0.0,
        budget=_budget_of(controller, name),
        rss_mb=current_rss_mb(),
    )


def run_to_end(gen: Generator[Event, None, Generation], on_event=None) -> Generation:
    """Drain a `generate` generator (optionally passing each event to `on_event`)."""
    while True:
        try:
            ev = next(gen)
        except StopIteration as stop:
            return stop.value
        if on_event is not None:
            on_event(ev)
