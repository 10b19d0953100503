"""The stages of one request: hint, vision, extraction (or caption), reasoning, answer.

Each stage is a generator: it yields the streaming events while it runs and returns what
the next stage needs (the focus phrase, the image embeddings, the description...).
`run_request` chains them for the request's mode. A `RequestRun` carries what the stages
of one request share: the request, the result being filled in, the models, the caches,
the speed book and the deadline planner.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass

import numpy as np

from runtime import prompts
from runtime.answer import ParsedAnswer, parse_answer
from runtime.budget import BudgetController, StageLimits
from runtime.cache import EmbeddingCache, ExtractionCache, ExtractionKey
from runtime.cancel import Cancellation
from runtime.chat_format import Segment
from runtime.deadline import DeadlinePlanner, StageSpec
from runtime.errors import BundleError, EdgeError
from runtime.generation import Generation, PrefixSave, generate, image_prefix_length, shared_length
from runtime.image_layout import LayoutSpec, encode_image
from runtime.memory import current_rss_mb, peak_rss_mb
from runtime.model_slot import ModelSlot, ModelSlots
from runtime.prefix_cache import PrefixCache, PrefixKey
from runtime.request import Request, clean_focus
from runtime.result import (
    BudgetAction,
    BudgetEvent,
    Done,
    Event,
    Result,
    StageFinished,
    StageStarted,
    StageStats,
)
from runtime.sampling import Sampler, SamplingConfig
from runtime.speeds import SpeedBook
from runtime.tokenizer import encode_segments

log = logging.getLogger(__name__)

Events = Generator[Event, None, None]
# Each stage samples from its own stream of the request's seed.
STAGE_SEEDS = {"hint": 1, "extraction": 2, "caption": 2, "answer": 3, "reasoning": 4}


@dataclass
class RequestRun:
    """What the stages of one request share."""

    req: Request
    result: Result
    slots: ModelSlots
    embeddings: EmbeddingCache
    extractions: ExtractionCache
    prefixes: PrefixCache
    speeds: SpeedBook
    planner: DeadlinePlanner | None
    thinking: bool  # the reasoner thinks (asked for, and its vocabulary can)
    t0: float
    cancel: Cancellation
    layout: LayoutSpec | None = None  # the perception model's image tokens (None: one view, unpooled)

    def image_tokens(self) -> int:
        """Image tokens this request's image takes (known before encoding)."""
        if self.req.image_plan is not None:
            return self.req.image_plan.tokens
        return self.slots["perception"].entry.vision.tokens_per_image

    def image_views(self) -> int:
        return self.req.image_plan.views if self.req.image_plan is not None else 1


def run_request(run: RequestRun) -> Events:
    """All stages of the request's mode, then `Done(result)`."""
    req = run.req
    focus = req.focus
    if req.mode == "extract-think":
        focus = yield from hint_stage(run)
    if req.mode == "end-to-end":
        parsed = yield from end_to_end_stage(run)
    else:
        description = None
        if req.mode in ("extract-think", "caption-think"):
            description = yield from extraction_stage(run, focus)
        parsed = yield from reasoning_stage(run, description)
    yield from finish(run, parsed)


# ---- stages ----------------------------------------------------------------------------


def hint_stage(run: RequestRun) -> Generator[Event, None, str | None]:
    """The reasoner, non-thinking, turns the question into a focus phrase."""
    req, b = run.req, run.req.budgets
    if not (req.hint and req.focus is None and b.hint > 0):
        return req.focus
    reasoner = run.slots["reasoner"]
    budget = b.hint
    if run.planner is not None:
        plan = run.planner.plan(remaining_specs(run, ["hint", "extraction", "thinking", "answer"]))
        budget = plan["hint"]
        yield from plan_event(run, "hint", plan)
    if budget <= 0:
        return None
    tags = reasoner.control.can_think
    gen, _ = yield from generate_stage(
        run, reasoner, prompts.hint_prompt(req.question, think_tags=tags),
        StageLimits("hint", budget), req.sampling.hint, "hint",
        shared=prompts.shared_start(lambda q: prompts.hint_prompt(q, think_tags=tags)),
    )
    focus = clean_focus(gen.texts.get("hint", "")) or None
    run.result.hint = focus
    run.result.budgets["hint"] = budget
    observe(run, reasoner.role, gen)
    return focus


def vision_stage(run: RequestRun) -> Generator[Event, None, tuple[np.ndarray, str]]:
    """Image -> embeddings, from the cache when this image was encoded before."""
    slot = run.slots["perception"]
    key = run.req.image_hash
    embeds = run.embeddings.get_embeddings(key, slot.art_id)
    stats = StageStats("vision", "perception", budget=None)
    yield StageStarted("vision", "perception")
    t0 = time.perf_counter()
    if embeds is None:
        run.cancel.check()
        stats.load_s = run.slots.acquire(slot)
        run.cancel.check()
        t1 = time.perf_counter()
        if run.layout is not None and run.req.image_plan is not None:
            embeds = encode_image(slot.vision, run.req.views, run.req.image_plan, run.layout)
        else:
            embeds = np.asarray(slot.vision.encode(run.req.pixels), dtype=np.float32)
        dt = time.perf_counter() - t1
        want = (run.image_tokens(), slot.entry.text.hidden_size)
        if embeds.shape != want:
            raise BundleError(f"the vision encoder returned embeddings of shape {embeds.shape}, "
                              f"the manifest says {want} (mismatched shapes)")
        if not np.isfinite(embeds).all():
            raise BundleError(f"the perception vision encoder ({slot.label}) produced NaN or infinite "
                              "embeddings: its weights are damaged; re-export the bundle")
        run.embeddings.put_embeddings(key, slot.art_id, embeds)
        if run.planner is not None:
            run.planner.observe("perception", vision_s=dt / run.image_views())  # per view
        run.speeds.remember("perception", vision_s=dt / run.image_views())
    else:
        stats.cached = True
    run.result.cache_hits["embedding"] = stats.cached
    stats.tokens = embeds.shape[0]
    stats.seconds = time.perf_counter() - t0
    stats.rss_mb = current_rss_mb()
    run.result.stages["vision"] = stats
    yield StageFinished("vision", stats)
    return embeds, key


def prefix_key(run: RequestRun, slot: ModelSlot, prefix: Sequence[int | None]) -> PrefixKey:
    # the layout (views, pooling) decides what the image rows are
    return PrefixKey(run.req.image_hash, slot.art_id, slot.options.kv_cache_type, tuple(prefix),
                     variant=repr(run.layout))


def image_prefix_span(run: RequestRun, slot: ModelSlot, ids: Sequence[int | None],
                      shared: Sequence[Segment] | None = None) -> int:
    """How many of the prompt's first positions the image-prefix cache keys and keeps: the
    image prefix (system turn, user header, image rows), through `shared` when the prompt
    starts with it: the fixed text after the image that every prompt of this kind has (the
    extraction instruction), so a second question prefills only its own words."""
    length = image_prefix_length(ids)
    if shared is not None:
        start = encode_segments(slot.tok, shared, image_tokens=run.image_tokens())
        if length <= len(start) < len(ids) and shared_length(ids, start) >= len(start):
            return len(start)
    return length


def extraction_shared_start(slot: ModelSlot) -> list[Segment]:
    """The extraction prompt up to its focus: system turn, image, instruction (`shared_start`)."""
    return prompts.shared_start(lambda f: prompts.extraction_prompt(f, system=slot.entry.system_prompt))


def image_generate_stage(run: RequestRun, slot: ModelSlot, segs: Sequence[Segment], limits: StageLimits,
                         cfg: SamplingConfig, seed_stage: str, shared: Sequence[Segment] | None = None,
                         ) -> Generator[Event, None, tuple[Generation, BudgetController]]:
    """The vision stage, then a generation over a prompt with the image.

    With the prefix cache on, the KV state after the image prefix (system turn, user header,
    image rows, and `shared`'s fixed text after them: `image_prefix_span`) is restored when
    this image was seen before (the vision stage then only restores it: no encoder, no image
    prefill), or saved during this prefill."""
    ids = encode_segments(slot.tok, segs, image_tokens=run.image_tokens())
    length = image_prefix_span(run, slot, ids, shared)
    key = run.req.image_hash
    save = None
    if run.prefixes.enabled and 0 < length < len(ids):
        pkey = prefix_key(run, slot, ids[:length])
        restored = yield from restore_stage(run, slot, ids, length, pkey)
        run.result.cache_hits["prefix"] = restored
        if restored:
            run.result.cache_hits["embedding"] = True  # the vision encoder's work was not redone
            return (yield from generate_stage(run, slot, segs, limits, cfg, seed_stage, ids=ids, image_key=key))
        save = PrefixSave(length, lambda state: run.prefixes.put_state(pkey, state))
    embeds, key = yield from vision_stage(run)
    return (yield from generate_stage(run, slot, segs, limits, cfg, seed_stage, ids=ids, image=embeds,
                                      image_key=key, save=save))


def restore_stage(run: RequestRun, slot: ModelSlot, ids: list[int | None], length: int,
                  pkey: PrefixKey) -> Generator[Event, None, bool]:
    """The vision stage served by a saved image-prefix state: True when the model's KV
    cache holds the prefix afterwards (restored, or still there from the last request)."""
    state = run.prefixes.get_state(pkey)
    if state is None:
        return False
    run.cancel.check()
    t0 = time.perf_counter()  # as in `vision_stage`: the stage's seconds include a model load
    load_s = run.slots.acquire(slot)
    if slot.session.held(ids, run.req.image_hash) < length:
        try:
            slot.session.restore(state, ids, run.req.image_hash)
        except (EdgeError, RuntimeError):
            log.warning("a saved image-prefix state could not be restored; encoding the image again",
                        exc_info=True)
            run.prefixes.drop(pkey)
            slot.session.reset()
            return False
    stats = StageStats("vision", "perception", tokens=run.image_tokens(), cached=True, load_s=load_s)
    yield StageStarted("vision", "perception")
    stats.seconds = time.perf_counter() - t0
    stats.rss_mb = current_rss_mb()
    run.result.stages["vision"] = stats
    yield StageFinished("vision", stats)
    return True


def extraction_stage(run: RequestRun, focus: str | None) -> Generator[Event, None, str]:
    """The perception model describes the image (with the focus; a plain caption in the
    caption-think mode). The same image, focus, budget and sampling hit the cache."""
    req, stage = run.req, "extraction"
    budget = req.budgets.extraction
    if run.planner is not None:
        plan = run.planner.plan(remaining_specs(run, ["extraction", "thinking", "answer"]))
        budget = plan["extraction"]
        yield from plan_event(run, stage, plan)
    slot = run.slots["perception"]
    system = slot.entry.system_prompt
    segs = (prompts.extraction_prompt(focus, system=system) if req.mode == "extract-think"
            else prompts.caption_prompt(system=system))
    cfg = req.sampling.perception
    ckey = ExtractionKey.make(req.image_hash, slot.art_id, repr(segs), budget, cfg.key(), req.seed)
    hit = run.extractions.get_text(ckey)
    run.result.budgets[stage] = budget
    if hit is not None:
        text, tokens = hit
        run.result.cache_hits["extraction"] = True
        stats = StageStats(stage, "perception", tokens=tokens, budget=budget, cached=True)
        yield StageStarted(stage, "perception", budget)
        run.result.stages[stage] = stats
        yield StageFinished(stage, stats, text)
        return text
    run.result.cache_hits["extraction"] = False
    shared = extraction_shared_start(slot) if req.mode == "extract-think" else None
    gen, _ = yield from image_generate_stage(run, slot, segs, StageLimits(stage, budget), cfg, "extraction",
                                             shared=shared)
    observe(run, "perception", gen)
    text = gen.texts.get(stage, "").strip()
    run.extractions.put_text(ckey, text, gen.stats[stage].tokens)
    return text


def end_to_end_stage(run: RequestRun) -> Generator[Event, None, ParsedAnswer]:
    """The perception model answers the question directly (the end-to-end baseline)."""
    req, result = run.req, run.result
    perception = run.slots["perception"]
    budget = req.budgets.non_thinking_answer
    if run.planner is not None:
        spec = StageSpec("answer", "perception", e2e_prompt_len(run), budget, min(budget, 4), vision=True,
                         views=run.image_views())
        plan = run.planner.plan([spec])
        budget = plan["answer"]
        yield from plan_event(run, "answer", plan)
    segs = prompts.end_to_end_prompt(req.question, req.options, system=perception.entry.system_prompt)
    gen, _ = yield from image_generate_stage(run, perception, segs, StageLimits("answer", budget),
                                             req.sampling.perception, "answer")
    result.budgets["answer"] = budget
    observe(run, "perception", gen)
    result.answer_text = gen.texts.get("answer", "")
    return parse_answer(result.answer_text, req.options, allow_bare=True)


def reasoning_stage(run: RequestRun, description: str | None) -> Generator[Event, None, ParsedAnswer]:
    """The reasoner thinks under the thinking budget (budget forcing, NoWait), then answers."""
    req, result, b = run.req, run.result, run.req.budgets
    reasoner = run.slots["reasoner"]
    thinking, tags = run.thinking, reasoner.control.can_think
    result.extraction = description
    if req.mode == "blind":
        segs = prompts.blind_prompt(req.question, req.options, thinking=thinking, think_tags=tags)
        shared = prompts.shared_start(lambda q: prompts.blind_prompt(q, req.options, thinking=thinking,
                                                                     think_tags=tags))
    else:
        segs = prompts.reasoning_prompt(description or "", req.question, req.options, thinking=thinking,
                                        think_tags=tags)
        shared = prompts.shared_start(lambda d: prompts.reasoning_prompt(d, req.question, req.options,
                                                                         thinking=thinking, think_tags=tags))
    think_b = b.thinking if thinking else None
    answer_b = b.answer if thinking else b.non_thinking_answer
    if run.planner is not None:
        n_prompt = len(encode_segments(reasoner.tok, segs))
        specs = [StageSpec("thinking", "reasoner", n_prompt, think_b or 0)] if thinking else []
        specs.append(StageSpec("answer", "reasoner", 0 if thinking else n_prompt, answer_b, min(answer_b, 8)))
        plan = run.planner.plan(specs)
        if thinking:
            think_b = plan["thinking"]
        answer_b = plan["answer"]
        yield from plan_event(run, "thinking" if thinking else "answer", plan)
    limits = StageLimits("answer", answer_b, thinking_budget=think_b, nowait=req.nowait, ensure_answer=True,
                         options=req.options)
    cfg = req.sampling.thinking if thinking else req.sampling.answer
    gen, ctl = yield from generate_stage(run, reasoner, segs, limits, cfg, "reasoning", shared=shared)
    observe(run, "reasoner", gen)
    if thinking:
        result.thinking = gen.texts.get("thinking", "").strip("\n")
        result.budgets["thinking"] = ctl.thinking_budget
    result.budgets["answer"] = ctl.answer_budget
    result.answer_text = gen.texts.get("answer", "").strip()
    return parse_answer(result.answer_text, req.options)


def finish(run: RequestRun, parsed: ParsedAnswer) -> Events:
    result = run.result
    result.answer = parsed.value
    result.answer_found = parsed.found
    result.answer_source = parsed.source
    result.peak_rss_mb = peak_rss_mb()
    result.seconds = time.perf_counter() - run.t0
    if run.planner is not None:
        run.speeds.update(run.planner.measured())
    run.speeds.save()
    yield Done(result)


# ---- one generation ------------------------------------------------------------------------


def generate_stage(run: RequestRun, slot: ModelSlot, segs: Sequence[Segment], limits: StageLimits,
                   cfg: SamplingConfig, seed_stage: str, *, ids: list[int | None] | None = None,
                   image: np.ndarray | None = None, image_key: str | None = None, save: PrefixSave | None = None,
                   shared: Sequence[Segment] | None = None,
                   ) -> Generator[Event, None, tuple[Generation, BudgetController]]:
    """One `generate` run on `slot` (loaded first), its stats and budget events kept in the result.
    `ids`: the prompt already encoded (with its image positions). `shared`: the start every
    prompt of this kind shares (`prompts.shared_start`), restored from or saved to the prefix cache."""
    run.cancel.check()
    load_s = run.slots.acquire(slot)
    if ids is None:
        ids = encode_segments(slot.tok, segs, image_tokens=image.shape[0] if image is not None else 0)
    restore = None
    if shared is not None and save is None:
        save, restore = reuse_shared_start(run, slot, ids, shared)
    nowait_ids = slot.nowait_ids() if (limits.thinking_budget is not None and limits.nowait) else None
    ctl = BudgetController(limits, slot.control, slot.tok, slot.lm.n_vocab, nowait_ids=nowait_ids)
    sampler = Sampler(cfg, np.random.default_rng([run.req.seed, STAGE_SEEDS[seed_stage]]))
    events = generate(slot.session, slot.tok, ids, ctl, sampler, role=slot.role, image=image,
                      image_key=image_key, load_s=load_s, cancel=run.cancel,
                      model=f"the {slot.role} model ({slot.label})", save=save, restore=restore,
                      lookup=run.req.lookup)
    while True:
        try:
            ev = next(events)
        except StopIteration as stop:
            return stop.value, ctl
        if isinstance(ev, StageFinished):
            run.result.stages[ev.stage] = ev.stats
        elif isinstance(ev, BudgetAction):
            run.result.budget_events.append(ev.event)
        yield ev


def reuse_shared_start(run: RequestRun, slot: ModelSlot, ids: list[int | None], shared: Sequence[Segment],
                       ) -> tuple[PrefixSave | None, Callable[[], None] | None]:
    """The KV state after the fixed start of a text prompt (the reasoner's user header and
    role or instruction line), kept in the prefix cache like an image prefix: (None, a
    restore for `generate` to run) when it is saved (the restore does nothing when the
    model still holds it), else (a `PrefixSave` that keeps it during this prefill, None).

    `cache_hits["reasoner_prefix"]` records whether a saved start served this request's
    prompts (all of them that have one)."""
    if not run.prefixes.enabled:
        return None, None
    start = encode_segments(slot.tok, shared)
    length = len(start)
    # a prompt whose tokens differ from the start's own (BPE joined the start's last piece with
    # what follows) is left alone: the key is the start's ids, the same for every request
    if not 0 < length < len(ids) or shared_length(ids, start) < length:
        return None, None
    pkey = PrefixKey("", slot.art_id, slot.options.kv_cache_type, tuple(ids[:length]), variant="text")
    state = run.prefixes.get_state(pkey)
    hits = run.result.cache_hits
    hits["reasoner_prefix"] = state is not None and hits.get("reasoner_prefix", True)
    if state is None:
        return PrefixSave(length, lambda st: run.prefixes.put_state(pkey, st)), None

    def restore() -> None:
        if slot.session.held(ids) >= length:
            return
        try:
            slot.session.restore(state, ids)
        except (EdgeError, RuntimeError):
            log.warning("a saved prompt-start state could not be restored; prefilling it again", exc_info=True)
            run.prefixes.drop(pkey)
            slot.session.reset()
            hits["reasoner_prefix"] = False

    return None, restore


# ---- deadline planning -----------------------------------------------------------------------


def observe(run: RequestRun, role: str, gen: Generation) -> None:
    run.speeds.remember(role, gen=gen)
    if run.planner is not None:
        run.planner.observe(role, prefill_tokens=gen.prompt_tokens - gen.reused_tokens, prefill_s=gen.prefill_s,
                            decode_tokens=gen.generated, decode_s=gen.decode_s)


def plan_event(run: RequestRun, stage: str, plan: dict[str, int]) -> Events:
    detail = f"{run.planner.remaining():.2f} s left: " + ", ".join(f"{k} {v}" for k, v in plan.items())
    ev = BudgetEvent(stage, "deadline_plan", 0, detail)
    run.result.budget_events.append(ev)
    yield BudgetAction(ev)


def remaining_specs(run: RequestRun, stages: list[str]) -> list[StageSpec]:
    """Estimates of the stages still to run, for the deadline planner."""
    req, b = run.req, run.req.budgets
    reasoner = run.slots["reasoner"]
    tags = reasoner.control.can_think
    out = []
    if "hint" in stages:
        n = len(encode_segments(reasoner.tok, prompts.hint_prompt(req.question, think_tags=tags)))
        out.append(StageSpec("hint", "reasoner", n, b.hint, 0))
    if "extraction" in stages and req.mode in ("extract-think", "caption-think"):
        perception = run.slots["perception"]
        cached = run.embeddings.get_embeddings(req.image_hash, perception.art_id) is not None
        ids = encode_segments(perception.tok, prompts.extraction_prompt(None, system=perception.entry.system_prompt),
                              image_tokens=run.image_tokens())
        n = len(ids)
        length = image_prefix_length(ids)
        if run.prefixes.enabled:
            # the extraction stage keys its prefix through the shared instruction (`image_prefix_span`)
            shared = extraction_shared_start(perception) if req.mode == "extract-think" else None
            spans = {length, image_prefix_span(run, perception, ids, shared)}
            if any(prefix_key(run, perception, ids[:k]) in run.prefixes for k in spans):
                cached, n = True, n - length  # a saved image prefix: no vision, no image prefill
        out.append(StageSpec("extraction", "perception", n, b.extraction, min(b.extraction, 16), vision=not cached,
                             views=run.image_views()))
    desc = b.extraction if req.mode != "blind" else 0
    n = len(encode_segments(reasoner.tok, prompts.reasoning_prompt(
        "", req.question, req.options, thinking=run.thinking, think_tags=tags))) + desc
    if run.thinking:
        out.append(StageSpec("thinking", "reasoner", n, b.thinking, 0))
        out.append(StageSpec("answer", "reasoner", 0, b.answer, min(b.answer, 8)))
    else:
        out.append(StageSpec("answer", "reasoner", n, b.non_thinking_answer, min(b.non_thinking_answer, 8)))
    return out


def e2e_prompt_len(run: RequestRun) -> int:
    perception = run.slots["perception"]
    segs = prompts.end_to_end_prompt(run.req.question, run.req.options)
    return run.image_tokens() + len(encode_segments(perception.tok, segs, image_tokens=1))
