"""Extract+Think: focus hint -> perception extraction -> reasoning under a budget -> answer.

    et = ExtractThink.load("bundle/")            # or None: the shipped default bundle
    result = et.answer("photo.jpg", "How many cups are on the table?", ["1", "2", "3", "4"])
    for event in et.stream(...): ...             # the same, as events while it happens

Stages of the default mode ("extract-think"):
1. hint (optional): the reasoner, non-thinking, turns the question into a focus phrase;
2. vision: image -> embeddings (cached by image content and model);
3. extraction: the perception model describes the image with the stage-1 instruction
   (cached by image, model, focus, budget and sampling);
4. thinking + answer: the reasoner reasons from the description under the thinking
   budget (budget forcing + NoWait), then answers under the answer budget;
5. the answer is parsed from the `Answer:` line.
Other modes for evaluation: "end-to-end" (the perception model answers directly),
"caption-think" (a plain caption instead of a focused extraction), "blind" (no image).

The memory planner decides whether both models stay loaded or take turns.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Generator, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np

from runtime import prompts
from runtime.answer import parse_answer
from runtime.backends import artifact_id, choose_artifact, load_model
from runtime.backends.base import BackendOptions
from runtime.budget import BudgetController, StageLimits, control_tokens
from runtime.bundle import Bundle, open_bundle
from runtime.cache import EmbeddingCache, ExtractionCache, ExtractionKey
from runtime.deadline import DeadlinePlanner, StageSpec, Throughput
from runtime.errors import BundleError, InputError
from runtime.generation import Generation, Session, generate
from runtime.image import content_hash, load_image, preprocess
from runtime.manifest import Budgets
from runtime.memory import (
    MemoryPlan,
    ModelNeed,
    available_for_models,
    current_rss_mb,
    model_need,
    peak_rss_mb,
    plan_memory,
)
from runtime.nowait import NOWAIT_KEYWORDS, nowait_token_ids
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
from runtime.sampling import GREEDY, NON_THINKING, THINKING, Sampler, SamplingConfig
from runtime.tokenizer import BundleTokenizer, encode_segments

log = logging.getLogger(__name__)

Mode = Literal["extract-think", "end-to-end", "caption-think", "blind"]
MODES: tuple[str, ...] = ("extract-think", "end-to-end", "caption-think", "blind")
MAX_QUESTION_CHARS = 16_000
MAX_OPTION_CHARS = 2_000
MAX_FOCUS_CHARS = 200
_STAGE_SEEDS = {"hint": 1, "extraction": 2, "caption": 2, "answer": 3, "reasoning": 4}


@dataclass(frozen=True)
class _Sampling:
    hint: SamplingConfig
    perception: SamplingConfig
    thinking: SamplingConfig
    answer: SamplingConfig  # the reasoner without thinking


def _sampling_plan(sampling: str | SamplingConfig) -> _Sampling:
    if isinstance(sampling, SamplingConfig):
        return _Sampling(sampling, sampling, sampling, sampling)
    if sampling == "paper":
        # The paper's settings for the reasoner; perception decodes greedily as in its evals.
        return _Sampling(NON_THINKING, GREEDY, THINKING, NON_THINKING)
    if sampling == "greedy":
        return _Sampling(GREEDY, GREEDY, GREEDY, GREEDY)
    raise InputError(f"sampling must be 'paper', 'greedy' or a SamplingConfig, not {sampling!r}")


def _round_up(n: int, to: int) -> int:
    return -(-n // to) * to


class _Slot:
    """One role's model: what to load, and (while loaded) the loaded objects."""

    def __init__(self, role: str, backend: str, artifact: Any, options: BackendOptions,
                 tok: Any, entry: Any | None, bundle: Bundle | None, gguf_path: Path | None,
                 art_id: str, nowait_keywords: Sequence[str]) -> None:
        self.role, self.backend, self.artifact, self.options = role, backend, artifact, options
        self.tok, self.entry, self.bundle, self.gguf_path = tok, entry, bundle, gguf_path
        self.art_id = art_id
        self.control = control_tokens(tok)
        self.nowait_keywords = tuple(nowait_keywords)
        self.lm: Any = None
        self.vision: Any = None
        self.session: Session | None = None
        self._nowait: np.ndarray | None = None

    @property
    def loaded(self) -> bool:
        return self.lm is not None

    @property
    def label(self) -> str:
        if self.gguf_path is not None:
            return f"llamacpp gguf {self.gguf_path.name}"
        return f"{self.backend} {self.artifact.format}/{self.artifact.quant}"

    def nowait_ids(self) -> np.ndarray:
        if self._nowait is None:
            self._nowait = nowait_token_ids(self.tok, self.nowait_keywords)
        return self._nowait

    def load(self) -> float:
        if self.loaded:
            return 0.0
        t0 = time.perf_counter()
        if self.gguf_path is not None:
            from runtime.backends import backend_module

            self.lm, self.vision = backend_module("llamacpp").load_gguf(self.gguf_path, None, self.options)
        else:
            self.lm, self.vision = load_model(self.bundle, self.role, self.backend, self.artifact, self.options)
        self.session = Session(self.lm)
        dt = time.perf_counter() - t0
        log.info("loaded the %s model (%s) in %.2f s", self.role, self.label, dt)
        return dt

    def unload(self) -> None:
        if self.vision is not None:
            self.vision.close()
        if self.lm is not None:
            self.lm.close()
        self.lm = self.vision = self.session = None


class ExtractThink:
    """The Extract+Think pipeline over a bundle. Not thread-safe per call: calls serialise."""

    def __init__(self, bundle: Bundle | None, slots: dict[str, _Slot], plan: MemoryPlan,
                 *, cache_bytes: int, prior: Mapping[str, Throughput] | None) -> None:
        self.bundle = bundle
        self._slots = slots
        self.memory_plan = plan
        self.embedding_cache = EmbeddingCache(cache_bytes // 2)
        self.extraction_cache = ExtractionCache(cache_bytes // 2)
        self._speed: dict[str, Throughput] = dict(prior or {})
        self._lock = threading.Lock()
        self._closed = False

    # ---- construction ---------------------------------------------------------------

    @classmethod
    def load(
        cls,
        bundle: str | os.PathLike[str] | Bundle | None = None,
        backend: str = "auto",
        quant: str | Mapping[str, str] | None = None,
        threads: int | None = None,
        max_memory: str | int | None = None,
        reasoner_gguf: str | os.PathLike[str] | None = None,
        *,
        context_length: int | None = None,
        residency: Literal["auto", "resident", "sequential"] = "auto",
        verify: Literal["full", "size", "none"] = "full",
        kv_cache_type: str = "f16",
        gpu_layers: int = 0,
        providers: Sequence[str] = (),
        cache_mb: int = 256,
        prior: Mapping[str, Throughput] | None = None,
        nowait_keywords: Sequence[str] = NOWAIT_KEYWORDS,
    ) -> ExtractThink:
        """Open and check a bundle, plan memory, and load the models the plan keeps resident."""
        if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
            raise InputError(f"threads must be a positive integer, got {threads!r}")
        if context_length is not None and (not isinstance(context_length, int) or context_length < 16):
            raise InputError(f"context length must be an integer >= 16, got {context_length!r}")
        if residency not in ("auto", "resident", "sequential"):
            raise InputError(f"residency must be auto, resident or sequential, not {residency!r}")
        if cache_mb < 0:
            raise InputError("cache_mb must be >= 0")
        if isinstance(bundle, Bundle):
            b = bundle
        else:
            if bundle is None:
                from runtime.defaults import default_bundle_path

                bundle = default_bundle_path()
            b = open_bundle(bundle, verify=verify)
        roles = [r for r in ("perception", "reasoner") if r in b.manifest.models]
        if reasoner_gguf is not None and "reasoner" not in roles:
            roles.append("reasoner")
        if not roles:
            raise BundleError(f"bundle {b.manifest.name!r} has no models")

        budgets = b.manifest.budgets
        slots: dict[str, _Slot] = {}
        needs: dict[str, ModelNeed] = {}
        alternatives: dict[str, list[ModelNeed]] = {}
        kv_bytes = 4 if kv_cache_type == "f32" else 2
        tokenizers: dict[str, Any] = {}
        for role in roles:
            opts = BackendOptions(threads=threads, gpu_layers=gpu_layers, providers=tuple(providers),
                                  kv_cache_type=kv_cache_type)
            if role == "reasoner" and reasoner_gguf is not None:
                slots[role], needs[role] = cls._stock_reasoner(Path(reasoner_gguf), opts, context_length,
                                                               nowait_keywords)
                continue
            entry = b.model(role)
            role_quant = quant.get(role) if isinstance(quant, Mapping) else quant
            name, art = choose_artifact(b, role, backend, role_quant)
            ctx = context_length or _default_context(role, entry, budgets)
            ctx = min(ctx, entry.text.context_length)
            opts = replace(opts, context_length=ctx)
            tok_rel = entry.tokenizer
            if tok_rel not in tokenizers:
                tokenizers[tok_rel] = BundleTokenizer(b.path(tok_rel))
            sizes = {rel: fe.size for rel, fe in b.manifest.files.items()}
            per_value = kv_bytes if art.format == "gguf" else 4  # ONNX keeps an fp32 cache
            needs[role] = model_need(role, art, sizes, entry.text, ctx, per_value)
            alternatives[role] = [
                model_need(role, a, sizes, entry.text, ctx, kv_bytes if a.format == "gguf" else 4)
                for a in entry.artifacts if a.format == art.format
            ]
            slots[role] = _Slot(role, name, art, opts, tokenizers[tok_rel], entry, b, None,
                                artifact_id(b, role, art), nowait_keywords)
        available, source = available_for_models(max_memory)
        plan = plan_memory(needs, available, source=source, residency=residency, alternatives=alternatives)
        log.info("memory plan: %s", plan.describe())
        et = cls(b, slots, plan, cache_bytes=cache_mb << 20, prior=prior)
        try:
            if plan.residency == "resident":
                for slot in slots.values():
                    slot.load()
            elif "reasoner" in slots:
                slots["reasoner"].load()  # the first stage of a request: fail early if it cannot load
        except BaseException:
            et.close()
            raise
        return et

    @staticmethod
    def _stock_reasoner(path: Path, opts: BackendOptions, context_length: int | None,
                        nowait_keywords: Sequence[str]) -> tuple[_Slot, ModelNeed]:
        from runtime.backends import backend_module
        from runtime.manifest import Artifact

        if not path.is_file():
            raise BundleError(f"{path}: no such GGUF file")
        module = backend_module("llamacpp")
        tok = module.GGUFTokenizer(path)
        ctx = context_length or module.DEFAULT_CONTEXT
        opts = replace(opts, context_length=context_length)
        art = Artifact(format="gguf", quant="stock", files={"model": path.name})
        need = model_need("reasoner", art, {path.name: path.stat().st_size}, None, ctx, 2)
        slot = _Slot("reasoner", "llamacpp", art, opts, tok, None, None, path,
                     f"gguf:{path.resolve()}:{path.stat().st_size}", nowait_keywords)
        return slot, need

    # ---- public API -------------------------------------------------------------------

    @property
    def residency(self) -> str:
        return self.memory_plan.residency

    @property
    def roles(self) -> tuple[str, ...]:
        return tuple(self._slots)

    def backends(self) -> dict[str, str]:
        return {role: slot.label for role, slot in self._slots.items()}

    def answer(self, image: Any = None, question: str = "", options: Sequence[str] | None = None,
               **kwargs: Any) -> Result:
        """Run one request to the end and return its `Result` (see `stream` for arguments)."""
        result = None
        for ev in self.stream(image, question, options, **kwargs):
            if isinstance(ev, Done):
                result = ev.result
        assert result is not None
        return result

    def stream(
        self,
        image: Any = None,
        question: str = "",
        options: Sequence[str] | None = None,
        *,
        mode: Mode = "extract-think",
        thinking: bool = True,
        hint: bool = True,
        focus: str | None = None,
        hint_budget: int | None = None,
        extraction_budget: int | None = None,
        thinking_budget: int | None = None,
        answer_budget: int | None = None,
        deadline_s: float | None = None,
        sampling: str | SamplingConfig = "paper",
        seed: int = 0,
        nowait: bool = True,
    ) -> Iterator[Event]:
        """Yield events (stage started, token, budget action, stage finished) and finally
        `Done(result)`. Arguments are checked before any model work starts."""
        req = self._check_request(image, question, options, mode, focus, hint_budget, extraction_budget,
                                  thinking_budget, answer_budget, deadline_s, sampling, seed)
        return self._run(req, thinking=thinking, hint=hint, nowait=nowait)

    def close(self) -> None:
        for slot in self._slots.values():
            slot.unload()
            close = getattr(slot.tok, "close", None)
            if close is not None:
                close()
        self._closed = True

    def __enter__(self) -> ExtractThink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- request checking ---------------------------------------------------------------

    def _check_request(self, image, question, options, mode, focus, hint_budget, extraction_budget,
                       thinking_budget, answer_budget, deadline_s, sampling, seed) -> dict[str, Any]:
        if self._closed:
            raise InputError("this ExtractThink was closed")
        if mode not in MODES:
            raise InputError(f"unknown mode {mode!r} (choose from {', '.join(MODES)})")
        if not isinstance(question, str):
            raise InputError("the question must be text")
        if len(question) > MAX_QUESTION_CHARS:
            raise InputError(f"the question is {len(question):,} characters; the limit is {MAX_QUESTION_CHARS:,}")
        question = question.strip()
        if not question:
            raise InputError("the question is empty")
        if options is not None:
            if isinstance(options, str) or not all(isinstance(o, str) for o in options):
                raise InputError("options must be a list of strings")
            options = tuple(o.strip() for o in options)
            if not 2 <= len(options) <= len(prompts.LETTERS):
                raise InputError(f"give between 2 and {len(prompts.LETTERS)} options, not {len(options)}")
            if any(not o for o in options):
                raise InputError("an option is empty")
            if any(len(o) > MAX_OPTION_CHARS for o in options):
                raise InputError(f"an option is longer than {MAX_OPTION_CHARS:,} characters")
        needs_image = mode != "blind"
        if needs_image and image is None:
            raise InputError(f"the {mode} mode needs an image")
        needs_perception = mode != "blind"
        if needs_perception and "perception" not in self._slots:
            raise BundleError(f"this bundle has no perception model, so the {mode} mode cannot run")
        if mode != "end-to-end" and "reasoner" not in self._slots:
            raise BundleError(f"this bundle has no reasoner model, so the {mode} mode cannot run")
        defaults = self.bundle.manifest.budgets if self.bundle is not None else None
        budgets = {}
        for name, value in (("hint", hint_budget), ("extraction", extraction_budget),
                            ("thinking", thinking_budget), ("answer", answer_budget)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
                raise InputError(f"the {name} budget must be an integer >= 0, got {value!r}")
            budgets[name] = value
        d = defaults or Budgets()
        b = Budgets(
            hint=budgets["hint"] if budgets["hint"] is not None else d.hint,
            extraction=budgets["extraction"] if budgets["extraction"] is not None else d.extraction,
            thinking=budgets["thinking"] if budgets["thinking"] is not None else d.thinking,
            answer=budgets["answer"] if budgets["answer"] is not None else d.answer,
            non_thinking_answer=budgets["answer"] if budgets["answer"] is not None else d.non_thinking_answer,
        )
        if deadline_s is not None and (isinstance(deadline_s, bool) or not isinstance(deadline_s, (int, float))
                                       or not deadline_s > 0 or not np.isfinite(deadline_s)):
            raise InputError(f"the deadline must be a positive number of seconds, got {deadline_s!r}")
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise InputError(f"the seed must be an integer >= 0, got {seed!r}")
        if focus is not None:
            focus = _clean_focus(focus)
        pixels = None
        if needs_image:
            # Decode and preprocess now, so a bad image fails before any model runs.
            perception = self._slots["perception"]
            prep = perception.entry.image
            pixels = preprocess(load_image(image), prep)
        return {
            "question": question, "options": options, "mode": mode, "focus": focus, "budgets": b,
            "deadline_s": float(deadline_s) if deadline_s is not None else None,
            "sampling": _sampling_plan(sampling), "seed": seed, "pixels": pixels,
            "image_hash": content_hash(pixels) if pixels is not None else None,
        }

    # ---- the request ----------------------------------------------------------------------

    def _run(self, req: dict[str, Any], *, thinking: bool, hint: bool, nowait: bool) -> Generator[Event, None, None]:
        with self._lock:
            yield from self._run_locked(req, thinking=thinking, hint=hint, nowait=nowait)

    def _run_locked(self, req, *, thinking: bool, hint: bool, nowait: bool) -> Generator[Event, None, None]:
        t0 = time.perf_counter()
        mode, question, options, b = req["mode"], req["question"], req["options"], req["budgets"]
        reasoner = self._slots.get("reasoner")
        thinking_on = bool(thinking) and mode != "end-to-end" and reasoner is not None and reasoner.control.can_think
        if thinking and reasoner is not None and not reasoner.control.can_think:
            log.warning("the reasoner's vocabulary has no <think>/</think>: thinking is off")
        result = Result(question=question, options=options, mode=mode, thinking_enabled=thinking_on,
                        deadline_s=req["deadline_s"], backend=self.backends(), residency=self.residency,
                        seed=req["seed"])
        planner = DeadlinePlanner(req["deadline_s"], prior=self._prior()) if req["deadline_s"] else None
        focus = req["focus"]

        # 1. focus hint
        run_hint = mode == "extract-think" and hint and focus is None and b.hint > 0
        if run_hint:
            hint_budget = b.hint
            if planner is not None:
                plan = planner.plan(self._specs(req, ["hint", "extraction", "thinking", "answer"], thinking_on))
                hint_budget = plan["hint"]
                yield from self._plan_event(result, "hint", planner, plan)
            if hint_budget > 0:
                gen, _ = yield from self._generate(
                    result, reasoner, prompts.hint_prompt(question, think_tags=reasoner.control.can_think),
                    StageLimits("hint", hint_budget), req["sampling"].hint, req["seed"], "hint",
                )
                focus = _clean_focus(gen.texts.get("hint", "")) or None
                result.hint = focus
                result.budgets["hint"] = hint_budget
                self._observe(planner, reasoner.role, gen)

        # 2-3. vision + extraction (or caption, or the end-to-end answer)
        description = None
        if mode in ("extract-think", "caption-think"):
            stage = "extraction"
            budget = b.extraction
            if planner is not None:
                plan = planner.plan(self._specs(req, ["extraction", "thinking", "answer"], thinking_on))
                budget = plan["extraction"]
                yield from self._plan_event(result, stage, planner, plan)
            perception = self._slots["perception"]
            segs = (prompts.extraction_prompt(focus, system=perception.entry.system_prompt)
                    if mode == "extract-think" else prompts.caption_prompt(system=perception.entry.system_prompt))
            description = yield from self._perceive(result, req, segs, stage, budget, planner)
        elif mode == "end-to-end":
            perception = self._slots["perception"]
            budget = b.non_thinking_answer
            if planner is not None:
                plan = planner.plan([StageSpec("answer", "perception", self._e2e_prompt_len(req), budget,
                                               min(budget, 4), vision=True)])
                budget = plan["answer"]
                yield from self._plan_event(result, "answer", planner, plan)
            embeds, key = yield from self._vision(result, req, planner)
            segs = prompts.end_to_end_prompt(question, options, system=perception.entry.system_prompt)
            gen, _ = yield from self._generate(
                result, perception, segs, StageLimits("answer", budget), req["sampling"].perception,
                req["seed"], "answer", image=embeds, image_key=key,
            )
            result.budgets["answer"] = budget
            self._observe(planner, "perception", gen)
            result.answer_text = gen.texts.get("answer", "")
            parsed = parse_answer(result.answer_text, options, allow_bare=True)
            return (yield from self._finish(result, parsed, t0, planner))

        # 4. reasoning
        result.extraction = description
        if mode == "blind":
            segs = prompts.blind_prompt(question, options, thinking=thinking_on,
                                        think_tags=reasoner.control.can_think)
        else:
            segs = prompts.reasoning_prompt(description or "", question, options, thinking=thinking_on,
                                            think_tags=reasoner.control.can_think)
        think_b = b.thinking if thinking_on else None
        answer_b = b.answer if thinking_on else b.non_thinking_answer
        if planner is not None:
            n_prompt = len(encode_segments(reasoner.tok, segs))
            specs = [StageSpec("thinking", "reasoner", n_prompt, think_b or 0)] if thinking_on else []
            specs.append(StageSpec("answer", "reasoner", 0 if thinking_on else n_prompt, answer_b,
                                   min(answer_b, 8)))
            plan = planner.plan(specs)
            if thinking_on:
                think_b = plan["thinking"]
            answer_b = plan["answer"]
            yield from self._plan_event(result, "thinking" if thinking_on else "answer", planner, plan)
        limits = StageLimits("answer", answer_b, thinking_budget=think_b, nowait=nowait, ensure_answer=True,
                             options=options)
        sampler_cfg = req["sampling"].thinking if thinking_on else req["sampling"].answer
        gen, ctl = yield from self._generate(result, reasoner, segs, limits, sampler_cfg, req["seed"], "reasoning")
        self._observe(planner, "reasoner", gen)
        if thinking_on:
            result.thinking = gen.texts.get("thinking", "").strip("\n")
            result.budgets["thinking"] = ctl.thinking_budget
        result.budgets["answer"] = ctl.answer_budget
        result.answer_text = gen.texts.get("answer", "").strip()
        parsed = parse_answer(result.answer_text, options)
        yield from self._finish(result, parsed, t0, planner)

    def _finish(self, result: Result, parsed, t0: float, planner) -> Generator[Event, None, None]:
        result.answer = parsed.value
        result.answer_found = parsed.found
        result.answer_source = parsed.source
        result.peak_rss_mb = peak_rss_mb()
        result.seconds = time.perf_counter() - t0
        if planner is not None:
            self._speed.update(planner.measured())
        yield Done(result)

    # ---- stages ---------------------------------------------------------------------------

    def _acquire(self, slot: _Slot) -> float:
        """Make `slot` loaded; under sequential residency free the other model first."""
        if slot.loaded:
            return 0.0
        if self.residency == "sequential":
            for other in self._slots.values():
                if other is not slot and other.loaded:
                    other.unload()
        return slot.load()

    def _generate(self, result: Result, slot: _Slot, segs, limits: StageLimits, cfg: SamplingConfig,
                  seed: int, seed_stage: str, *, image: np.ndarray | None = None,
                  image_key: str | None = None) -> Generator[Event, None, tuple[Generation, BudgetController]]:
        load_s = self._acquire(slot)
        image_tokens = image.shape[0] if image is not None else 0
        ids = encode_segments(slot.tok, segs, image_tokens=image_tokens)
        nowait_ids = slot.nowait_ids() if (limits.thinking_budget is not None and limits.nowait) else None
        ctl = BudgetController(limits, slot.control, slot.tok, slot.lm.n_vocab, nowait_ids=nowait_ids)
        sampler = Sampler(cfg, np.random.default_rng([seed, _STAGE_SEEDS[seed_stage]]))
        gen = yield from self._collect(result, generate(slot.session, slot.tok, ids, ctl, sampler, role=slot.role,
                                                        image=image, image_key=image_key, load_s=load_s))
        return gen, ctl

    def _collect(self, result: Result, gen_iter) -> Generator[Event, None, Generation]:
        """Pass events through, keeping stage stats and budget events in the result."""
        while True:
            try:
                ev = next(gen_iter)
            except StopIteration as stop:
                return stop.value
            if isinstance(ev, StageFinished):
                result.stages[ev.stage] = ev.stats
            elif isinstance(ev, BudgetAction):
                result.budget_events.append(ev.event)
            yield ev

    def _vision(self, result: Result, req: dict[str, Any], planner) -> Generator[Event, None, tuple[np.ndarray, str]]:
        slot = self._slots["perception"]
        key = req["image_hash"]
        embeds = self.embedding_cache.get_embeddings(key, slot.art_id)
        stats = StageStats("vision", "perception", budget=None)
        yield StageStarted("vision", "perception")
        t0 = time.perf_counter()
        if embeds is None:
            stats.load_s = self._acquire(slot)
            t1 = time.perf_counter()
            embeds = np.asarray(slot.vision.encode(req["pixels"]), dtype=np.float32)
            dt = time.perf_counter() - t1
            want = (slot.entry.vision.tokens_per_image, slot.entry.text.hidden_size)
            if embeds.shape != want:
                raise BundleError(f"the vision encoder returned embeddings of shape {embeds.shape}, "
                                  f"the manifest says {want} (mismatched shapes)")
            self.embedding_cache.put_embeddings(key, slot.art_id, embeds)
            if planner is not None:
                planner.observe("perception", vision_s=dt)
            self._remember("perception", vision_s=dt)
        else:
            stats.cached = True
        result.cache_hits["embedding"] = stats.cached
        stats.tokens = embeds.shape[0]
        stats.seconds = time.perf_counter() - t0
        stats.rss_mb = current_rss_mb()
        result.stages["vision"] = stats
        yield StageFinished("vision", stats)
        return embeds, key

    def _perceive(self, result: Result, req: dict[str, Any], segs, stage: str, budget: int,
                  planner) -> Generator[Event, None, str]:
        slot = self._slots["perception"]
        cfg = req["sampling"].perception
        ckey = ExtractionKey.make(req["image_hash"], slot.art_id, repr(segs), budget, cfg.key(), req["seed"])
        hit = self.extraction_cache.get_text(ckey)
        result.budgets[stage] = budget
        if hit is not None:
            text, tokens = hit
            result.cache_hits["extraction"] = True
            stats = StageStats(stage, "perception", tokens=tokens, budget=budget, cached=True)
            yield StageStarted(stage, "perception", budget)
            result.stages[stage] = stats
            yield StageFinished(stage, stats, text)
            return text
        result.cache_hits["extraction"] = False
        embeds, key = yield from self._vision(result, req, planner)
        gen, _ = yield from self._generate(result, slot, segs, StageLimits(stage, budget), cfg, req["seed"],
                                           "extraction", image=embeds, image_key=key)
        self._observe(planner, "perception", gen)
        text = gen.texts.get(stage, "").strip()
        self.extraction_cache.put_text(ckey, text, gen.stats[stage].tokens)
        return text

    # ---- deadline helpers -------------------------------------------------------------------

    def _prior(self) -> dict[str, Throughput]:
        return dict(self._speed)

    def _remember(self, role: str, *, gen: Generation | None = None, vision_s: float | None = None) -> None:
        from runtime.deadline import DEFAULT_PRIOR

        old = self._speed.get(role) or DEFAULT_PRIOR.get(role) or DEFAULT_PRIOR["reasoner"]
        prefill, decode, vis = old.prefill_tps, old.decode_tps, old.vision_s
        if gen is not None:
            fed = gen.prompt_tokens - gen.reused_tokens
            if fed >= 4 and gen.prefill_s > 0:
                prefill = fed / gen.prefill_s
            if gen.generated >= 4 and gen.decode_s > 0:
                decode = gen.generated / gen.decode_s
        if vision_s is not None:
            vis = vision_s
        self._speed[role] = Throughput(prefill, decode, vis)

    def _observe(self, planner: DeadlinePlanner | None, role: str, gen: Generation) -> None:
        self._remember(role, gen=gen)
        if planner is not None:
            planner.observe(role, prefill_tokens=gen.prompt_tokens - gen.reused_tokens, prefill_s=gen.prefill_s,
                            decode_tokens=gen.generated, decode_s=gen.decode_s)

    def _plan_event(self, result: Result, stage: str, planner: DeadlinePlanner, plan: dict[str, int]):
        detail = f"{planner.remaining():.2f} s left: " + ", ".join(f"{k} {v}" for k, v in plan.items())
        ev = BudgetEvent(stage, "deadline_plan", 0, detail)
        result.budget_events.append(ev)
        yield BudgetAction(ev)

    def _specs(self, req: dict[str, Any], stages: list[str], thinking_on: bool) -> list[StageSpec]:
        """Estimated remaining stages for the deadline planner."""
        b: Budgets = req["budgets"]
        reasoner = self._slots["reasoner"]
        out = []
        if "hint" in stages:
            n = len(encode_segments(reasoner.tok, prompts.hint_prompt(req["question"],
                                                                      think_tags=reasoner.control.can_think)))
            out.append(StageSpec("hint", "reasoner", n, b.hint, 0))
        if "extraction" in stages and req["mode"] in ("extract-think", "caption-think"):
            perception = self._slots["perception"]
            cached = self.embedding_cache.get_embeddings(req["image_hash"], perception.art_id) is not None
            n = perception.entry.vision.tokens_per_image + len(
                encode_segments(perception.tok, prompts.extraction_prompt(None), image_tokens=1))
            out.append(StageSpec("extraction", "perception", n, b.extraction, min(b.extraction, 16),
                                 vision=not cached))
        desc = b.extraction if req["mode"] != "blind" else 0
        n = len(encode_segments(reasoner.tok, prompts.reasoning_prompt(
            "", req["question"], req["options"], thinking=thinking_on,
            think_tags=reasoner.control.can_think))) + desc
        if thinking_on:
            out.append(StageSpec("thinking", "reasoner", n, b.thinking, 0))
            out.append(StageSpec("answer", "reasoner", 0, b.answer, min(b.answer, 8)))
        else:
            out.append(StageSpec("answer", "reasoner", n, b.non_thinking_answer, min(b.non_thinking_answer, 8)))
        return out

    def _e2e_prompt_len(self, req: dict[str, Any]) -> int:
        perception = self._slots["perception"]
        segs = prompts.end_to_end_prompt(req["question"], req["options"])
        return perception.entry.vision.tokens_per_image + len(encode_segments(perception.tok, segs, image_tokens=1))


def _default_context(role: str, entry: Any, budgets: Any) -> int:
    """Enough context for the default budgets (at least 4096), within the model's."""
    if role == "perception":
        tpi = entry.vision.tokens_per_image if entry.vision is not None else 0
        need = tpi + 256 + max(budgets.extraction, budgets.non_thinking_answer) + 64
    else:
        need = 768 + budgets.extraction + budgets.thinking + budgets.answer + 64
    return min(max(4096, _round_up(need, 1024)), entry.text.context_length)


def _clean_focus(text: str) -> str:
    """A focus phrase: first line, no label, quotes or trailing period, bounded length."""
    lines = [ln.strip() for ln in str(text).splitlines() if ln.strip()]
    if not lines:
        return ""
    focus = lines[0]
    for label in ("focus:", "answer:", "hint:"):
        if focus.lower().startswith(label):
            focus = focus[len(label):].strip()
    focus = focus.strip("\"'`*").rstrip(".").strip()
    return focus[:MAX_FOCUS_CHARS].strip()
