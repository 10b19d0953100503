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

import logging
import time
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field

import numpy as np

from runtime.backends.base import LanguageModel, PrefixState, TokenizerLike
from runtime.budget import STOP, BudgetController, Verdict
from runtime.cancel import Cancellation
from runtime.errors import BundleError, ContextOverflowError, InputError
from runtime.lookup import PromptLookup
from runtime.memory import current_rss_mb
from runtime.result import BudgetAction, Event, StageFinished, StageStarted, StageStats, TokenEvent
from runtime.sampling import NothingToSample, Sampler
from runtime.tokenizer import StreamDecoder

logger = logging.getLogger(__name__)

# Prompt positions per backend call: the backends' own batch size, and how far apart the
# cancellation checks of a long prefill are.
PREFILL_CHUNK = 512


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

    def held(self, prompt: Sequence[int | None], image_key: str | None = None) -> int:
        """How many leading positions of `prompt` the KV cache already holds."""
        if self.lm.n_past != len(self._keys):
            return 0
        return shared_length(self._keys, prompt_keys(prompt, image_key))

    def restore(self, state: PrefixState, prompt: Sequence[int | None], image_key: str | None = None) -> None:
        """Replace the KV cache with `state`, a saved state of the first `state.n_past`
        positions of `prompt` (the image prefix), so `prefill` feeds only the rest."""
        keys = prompt_keys(prompt[: state.n_past], image_key)
        if len(keys) != state.n_past:
            raise InputError(f"the prefix state holds {state.n_past} positions, the prompt has {len(keys)}")
        self._keys = []
        self.lm.load_state(state)
        self._keys = keys

    def prefill(
        self,
        prompt: Sequence[int | None],
        image: np.ndarray | None = None,
        image_key: str | None = None,
        cancel: Cancellation | None = None,
        save: PrefixSave | None = None,
    ) -> tuple[np.ndarray, int]:
        """Feed `prompt` (None = next image embedding row); return (logits, reused positions).

        Fed in chunks of at most `PREFILL_CHUNK` positions, `cancel` checked before each.
        `image` may be None when every image position is already held (a restored prefix).
        `save`: once the first `save.length` positions are in the cache, `save.store` gets
        their state (`LanguageModel.save_state`)."""
        keys = prompt_keys(prompt, image_key)
        if not keys:
            raise InputError("empty prompt")
        if self.lm.n_past != len(self._keys):  # someone fed the model behind our back
            self.reset()
        common = self.held(prompt, image_key)
        common = min(common, len(keys) - 1)  # re-feed at least one position to get logits
        if save is not None and not 0 < save.length < len(keys):
            save = None
        if save is not None:
            common = min(common, save.length)  # the cache must hold exactly the prefix once
        n_img = sum(1 for t in prompt if t is None)
        need_rows = any(t is None for t in prompt[common:])
        if need_rows and (image is None or image.shape[0] != n_img):
            have = 0 if image is None else image.shape[0]
            raise InputError(f"the prompt has {n_img} image positions but {have} image embeddings were given")
        if common == 0:
            if self.lm.n_past:
                self.lm.reset()
        elif common < self.lm.n_past:
            self.lm.truncate(common)
        self._keys = keys[:common]
        logits = None
        i = common
        while i < len(prompt):
            if save is not None and i == save.length:
                save.store(self.lm.save_state())
                save = None
            if cancel is not None:
                cancel.check()
            image_run = prompt[i] is None
            stop = save.length if save is not None and i < save.length else len(prompt)
            j = i
            while j < stop and j - i < PREFILL_CHUNK and (prompt[j] is None) == image_run:
                j += 1
            if image_run:
                first_row = keys[i][2]  # type: ignore[index]
                logits = self.lm.feed_embeddings(np.ascontiguousarray(image[first_row : first_row + (j - i)]))
            else:
                logits = self.lm.feed_tokens([int(t) for t in prompt[i:j]])  # type: ignore[arg-type]
            self._keys.extend(keys[i:j])
            i = j
        assert logits is not None
        return logits, common

    def feed(self, token_id: int) -> np.ndarray:
        logits = self.lm.feed_tokens([token_id])
        self._keys.append(token_id)
        return logits

    def feed_all(self, ids: Sequence[int]) -> np.ndarray:
        """Feed `ids` in one batch; logits [len(ids), n_vocab] for every position."""
        logits = self.lm.feed_tokens_all(ids)
        self._keys.extend(int(t) for t in ids)
        return logits

    def truncate(self, n: int) -> None:
        """Keep the first `n` positions (drop rejected draft tokens)."""
        self.lm.truncate(n)
        del self._keys[n:]


@dataclass(frozen=True)
class PrefixSave:
    """Keep the KV state of a prompt's first `length` positions: `store(state)`."""

    length: int
    store: Callable[[PrefixState], None]


def prompt_keys(prompt: Sequence[int | None], image_key: str | None) -> list[object]:
    """What each position of `prompt` is, for comparing with what the cache holds: a token
    id, or ("image", key, row) for an image row (an image without a key is never shared)."""
    tag: object = image_key if image_key is not None else object()
    keys: list[object] = []
    row = 0
    for t in prompt:
        if t is None:
            keys.append(("image", tag, row))
            row += 1
        else:
            keys.append(t)
    return keys


def shared_length(a: Sequence[int | None], b: Sequence[int | None]) -> int:
    """How many leading positions `a` and `b` have in common."""
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def image_prefix_length(prompt: Sequence[int | None]) -> int:
    """Positions up to and including the prompt's last image position (0: no image)."""
    for i in range(len(prompt) - 1, -1, -1):
        if prompt[i] is None:
            return i + 1
    return 0


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
    drafted: int = 0  # prompt-lookup draft tokens verified (0 with lookup off)
    accepted: int = 0  # of which the model's own choice agreed


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
    cancel: Cancellation | None = None,
    model: str | None = None,
    save: PrefixSave | None = None,
    lookup: int = 0,
    restore: Callable[[], None] | None = None,
) -> Generator[Event, None, Generation]:
    """Run one generation stage; yields events, returns the `Generation`.

    `cancel` is checked between prefill chunks and before every token (raising
    `runtime.errors.Cancelled`); `save` keeps the state of a prompt prefix
    (`Session.prefill`); `restore()` loads a saved one into the session first (its time
    counts as prefill). `model` names the model in errors (default: the role):
    logits that are not finite (damaged weights) raise `BundleError` naming it.
    `lookup` > 0 drafts that many tokens per step by prompt lookup and verifies them in
    one batch (`decode_tokens_lookup`); 0 is the plain loop."""
    model = model or f"the {role} model"
    lm = session.lm
    n_prompt = len(prompt)
    room = lm.n_ctx - n_prompt
    first_stage = controller.last_stage
    if room < 1:
        raise ContextOverflowError(
            f"the {first_stage} prompt is {n_prompt} tokens but the {role} model's context holds "
            f"{lm.n_ctx}: shorten the question or description, or load with a larger context length"
        )
    controller.fit_context(room)

    if lookup and not lm.batch_invariant:
        _warn_not_invariant(model)
        lookup = 0
    tally = LookupTally() if lookup else None
    log = _StageLog(first_stage, role, tok, controller, n_prompt, load_s, tally)
    yield StageStarted(first_stage, role, _budget_of(controller, first_stage))
    yield from _new_events(controller, 0)
    n_events = len(controller.events)

    if restore is not None:
        restore()
    logits, log.reused = session.prefill(prompt, image, image_key, cancel, save)
    log.t_prefill = time.perf_counter()
    if not np.isfinite(logits).all():  # one pass per stage; later tokens are checked as chosen
        raise _damaged(model)
    if lookup:
        drafter = PromptLookup(prompt, lookup)
        steps = decode_tokens_lookup(controller, sampler, logits, session, drafter, tally,  # type: ignore[arg-type]
                                     cancel=cancel, model=model)
    else:
        steps = decode_tokens(controller, sampler, logits, session.feed, cancel=cancel, model=model)
    while True:
        try:
            step = next(steps)
        except StopIteration as stop:
            step, stop_reason = None, stop.value
        yield from _new_events(controller, n_events)
        n_events = len(controller.events)
        if step is None:
            break
        now = time.perf_counter()
        if step.stage != log.current:
            yield from log.switch(step.stage, now)
        yield log.token(step, now)
    yield from log.finish(time.perf_counter())
    return log.generation(stop_reason)


@dataclass(frozen=True)
class Step:
    """One token the decode loop emitted."""

    token_id: int
    stage: str  # the controller's stage for it ("thinking", "answer", ...)
    forced: bool  # dictated by the budget controller, not sampled


def decode_tokens(
    controller: BudgetController,
    sampler: Sampler,
    logits: np.ndarray,
    feed: Callable[[int], np.ndarray],
    *,
    cancel: Cancellation | None = None,
    model: str = "the model",
) -> Generator[Step, None, str]:
    """The decode loop: the controller's forced token or a sample from the masked logits,
    emitted (yielded), then fed (`feed(token_id)` returns the next logits).

    Returns why it stopped: "stop_token", "budget" or "forced_answer". The budget
    controller's events accumulate in `controller.events` as it goes; `cancel` is checked
    before every token. `generate` runs it over a model; tests drive it with logits they
    construct.
    """
    buf = np.empty(logits.shape[0], dtype=np.float32)  # the one per-token copy
    while True:
        step = _position(controller, sampler, buf, logits, cancel, model)
        if isinstance(step, str):
            return step
        yield step
        if controller.done:
            return "forced_answer" if controller.forced_answer else "budget"
        logits = feed(step.token_id)


def _position(controller: BudgetController, sampler: Sampler, buf: np.ndarray, logits: np.ndarray,
              cancel: Cancellation | None, model: str, draft: int | None = None) -> Step | str:
    """One position of the decode loop: the controller's forced token, or a sample from the
    masked logits (`draft`: a guessed token, kept by `Sampler.speculative`), accepted by the
    controller; a Step, or why the stage stopped."""
    while True:
        if cancel is not None:
            cancel.check()
        tid = controller.forced()
        if tid == STOP:
            return "forced_answer" if controller.forced_answer else "budget"
        forced = tid is not None
        if not forced:
            np.copyto(buf, logits)
            controller.apply(buf)
            tid = _choose(sampler, buf, logits, model, draft)
        verdict = controller.accept(int(tid), forced=forced)
        if verdict is Verdict.STOP:
            return "forced_answer" if controller.forced_answer else "stop_token"
        if verdict is not Verdict.RETRY:  # RETRY: the token was dropped, ask again
            return Step(int(tid), controller.last_stage, forced)


class LookupTally:
    """Prompt-lookup draft tokens verified and accepted, per stage."""

    def __init__(self) -> None:
        self.drafted: dict[str, int] = {}
        self.accepted: dict[str, int] = {}

    def add(self, stage: str, drafted: int = 0, accepted: int = 0) -> None:
        self.drafted[stage] = self.drafted.get(stage, 0) + drafted
        self.accepted[stage] = self.accepted.get(stage, 0) + accepted


def decode_tokens_lookup(
    controller: BudgetController,
    sampler: Sampler,
    logits: np.ndarray,
    session: Session,
    drafter: PromptLookup,
    tally: LookupTally,
    *,
    cancel: Cancellation | None = None,
    model: str = "the model",
) -> Generator[Step, None, str]:
    """`decode_tokens` with prompt-lookup drafts verified in one batch per step.

    After each emitted token t the drafter guesses d1..dk; [t, d1..dk] is fed in one batch
    whose k+1 logit rows are the model's next-token logits after t, d1, ..., dk. Each
    row then goes through exactly what the plain loop does for one position (the
    controller's forced token, or its mask and the sampler) with the draft as the guess
    (`Sampler.speculative`): a draft is kept only if that choice agrees, so greedy tokens
    are the plain loop's, sampling draws from the same distribution, and the budget
    controller (budgets, forcing, NoWait, forced answers) sees every position once and in
    order. The first disagreement is emitted instead of the draft, the KV positions of the
    rejected drafts are dropped, and the next step starts from it; when all k are kept
    the last row gives one more token. Counts go to `tally` per stage.
    """
    buf = np.empty(logits.shape[0], dtype=np.float32)
    lm = session.lm

    def choose(row: np.ndarray, draft: int | None) -> Step | str:
        return _position(controller, sampler, buf, row, cancel, model, draft)

    def finished() -> str:
        return "forced_answer" if controller.forced_answer else "budget"

    step = choose(logits, None)
    while not isinstance(step, str):
        yield step
        drafter.push(step.token_id)
        if controller.done:
            return finished()
        draft = drafter.draft(lm.n_ctx - lm.n_past - 1)
        if not draft:
            step = choose(session.feed(step.token_id), None)
            continue
        base = lm.n_past + 1  # positions once t is in
        rows = session.feed_all([step.token_id, *draft])
        tally.add(step.stage, drafted=len(draft))
        for i, row in enumerate(rows):
            guess = draft[i] if i < len(draft) else None
            nxt = choose(row, guess)
            if isinstance(nxt, str):
                session.truncate(base + i)
                return nxt
            if guess is None or nxt.token_id != guess:
                session.truncate(base + i)  # drop the drafts from i on
                step = nxt
                break
            tally.add(nxt.stage, accepted=1)
            yield nxt
            drafter.push(guess)
            if controller.done:
                session.truncate(base + i + 1)
                return finished()
    return step


def _choose(sampler: Sampler, masked: np.ndarray, logits: np.ndarray, model: str, draft: int | None = None) -> int:
    """The sampler's token, checked: a chosen logit that is not finite means the model
    produced NaN or infinity (greedy's argmax picks NaN first), or nothing was left.
    `draft`: a guessed token, kept by the speculative rule (`Sampler.speculative`)."""
    try:
        tid = sampler(masked) if draft is None else sampler.speculative(masked, draft)
        if np.isfinite(masked[tid]):
            return tid
    except NothingToSample:
        pass
    if not np.isfinite(logits).all():
        raise _damaged(model)
    raise NothingToSample("every token is masked: nothing can be sampled")  # a controller bug


_warned: set[str] = set()


def _warn_not_invariant(model: str) -> None:
    if model not in _warned:
        _warned.add(model)
        logger.warning("prompt lookup is off for %s: its logits depend on the batch (per-call activation "
                    "quantization), so verified drafts could change greedy tokens", model)


def _damaged(model: str) -> BundleError:
    return BundleError(f"{model} produced NaN or infinite logits: its weights are damaged "
                       "(their hash matches the manifest, so the bundle was exported that way); re-export it")


def _new_events(controller: BudgetController, seen: int) -> Generator[Event, None, None]:
    for ev in controller.events[seen:]:
        yield BudgetAction(ev)


def _budget_of(controller: BudgetController, stage: str) -> int:
    if controller.limits.thinking_budget is not None and stage == controller.limits.thinking_stage:
        return controller.thinking_budget
    return controller.answer_budget


class _StageLog:
    """Token ids, text and timings per stage of one generation, and the events that close
    one stage and open the next."""

    def __init__(self, first: str, role: str, tok: TokenizerLike, controller: BudgetController,
                 n_prompt: int, load_s: float, tally: LookupTally | None = None) -> None:
        self.role, self.controller, self.n_prompt, self.load_s = role, controller, n_prompt, load_s
        self.tally = tally
        self.t0 = time.perf_counter()
        self.t_prefill = self.t0
        self.reused = 0
        self.order = [first]
        self.ids: dict[str, list[int]] = {first: []}
        self.texts: dict[str, list[str]] = {first: []}
        self.start = {first: self.t0}
        self.first_token: dict[str, float] = {}
        self.end: dict[str, float] = {}
        self.stats: dict[str, StageStats] = {}
        self.all_ids: list[int] = []
        self.decoder = StreamDecoder(tok)
        # the think tags are emitted (the stream shows them) but add no text and no token count
        self.special = {controller.control.think_end, controller.control.think_start} - {None}
        self.t_end = self.t0

    @property
    def current(self) -> str:
        return self.order[-1]

    def token(self, step: Step, now: float) -> TokenEvent:
        stage, tid = step.stage, step.token_id
        self.all_ids.append(tid)
        self.ids[stage].append(tid)
        self.first_token.setdefault(stage, now)
        self.end[stage] = now
        piece = "" if tid in self.special else self.decoder.push(tid)
        if piece:
            self.texts[stage].append(piece)
        return TokenEvent(stage, tid, piece, step.forced)

    def switch(self, stage: str, now: float) -> Generator[Event, None, None]:
        yield from self.finish(now)
        self.order.append(stage)
        self.ids[stage], self.texts[stage] = [], []
        self.start[stage] = now
        yield StageStarted(stage, self.role, _budget_of(self.controller, stage))

    def finish(self, now: float) -> Generator[Event, None, None]:
        """Close the current stage: leftover bytes, its stats, `StageFinished`."""
        name = self.current
        tail = self.decoder.flush()
        if tail:
            self.texts[name].append(tail)
            yield TokenEvent(name, -1, tail)
        self.end[name] = self.t_end = now
        self.stats[name] = self._stats(name)
        yield StageFinished(name, self.stats[name], "".join(self.texts[name]))

    def generation(self, stop_reason: str) -> Generation:
        return Generation(
            token_ids=self.all_ids,
            texts={name: "".join(self.texts[name]) for name in self.order},
            stats=self.stats,
            prompt_tokens=self.n_prompt,
            reused_tokens=self.reused,
            prefill_s=self.t_prefill - self.t0,
            decode_s=self.t_end - self.t_prefill,
            generated=len(self.all_ids),
            stop_reason=stop_reason,
            stages=self.order,
            drafted=sum(self.tally.drafted.values()) if self.tally is not None else 0,
            accepted=sum(self.tally.accepted.values()) if self.tally is not None else 0,
        )

    def _stats(self, name: str) -> StageStats:
        is_first = name == self.order[0]
        ids = self.ids[name]
        t_start = self.start[name]
        t_end = self.end.get(name, t_start)
        decode_s = max(t_end - (self.t_prefill if is_first else t_start), 0.0)
        prefill_s = self.t_prefill - self.t0
        fed = self.n_prompt - self.reused
        return StageStats(
            name=name,
            model=self.role,
            prompt_tokens=self.n_prompt if is_first else 0,
            reused_prompt_tokens=self.reused if is_first else 0,
            tokens=sum(1 for t in ids if t not in self.special),
            ttft_s=(self.first_token[name] - t_start) if name in self.first_token else 0.0,
            tokens_per_s=(len(ids) / decode_s) if decode_s > 0 and ids else 0.0,
            prefill_tokens_per_s=(fed / prefill_s) if is_first and prefill_s > 0 else 0.0,
            prefill_s=prefill_s if is_first else 0.0,
            seconds=t_end - t_start,
            load_s=self.load_s if is_first else 0.0,
            budget=_budget_of(self.controller, name),
            rss_mb=current_rss_mb(),
            drafted=self.tally.drafted.get(name, 0) if self.tally is not None else 0,
            accepted=self.tally.accepted.get(name, 0) if self.tally is not None else 0,
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
