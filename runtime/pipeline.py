"""Extract+Think: focus hint -> perception extraction -> reasoning under a budget -> answer.

    et = ExtractThink.load("bundle/")            # or None: the shipped default bundle
    result = et.answer("photo.jpg", "How many cups are on the table?", ["1", "2", "3", "4"])
    for event in et.stream(...): ...             # the same, as events while it happens

Stages of the default mode ("extract-think"), in `runtime.stages`:
1. hint (optional): the reasoner, non-thinking, turns the question into a focus phrase;
2. vision: image -> embeddings (cached by image content and model);
3. extraction: the perception model describes the image with the stage-1 instruction
   (cached by image, model, focus, budget and sampling);
4. thinking + answer: the reasoner reasons from the description under the thinking
   budget (budget forcing + NoWait), then answers under the answer budget;
5. the answer is parsed from the `Answer:` line.
Other modes for evaluation: "end-to-end" (the perception model answers directly),
"caption-think" (a plain caption instead of a focused extraction), "blind" (no image).

A request is checked into a frozen `runtime.request.Request` before any model runs. The
memory planner decides whether both models stay loaded or take turns
(`runtime.model_slot`).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from runtime.backends.base import BackendOptions, TokenizerLike
from runtime.bundle import Bundle, open_bundle
from runtime.cache import EmbeddingCache, ExtractionCache
from runtime.control_tokens import ControlTokens
from runtime.deadline import DeadlinePlanner, Throughput
from runtime.defaults import default_bundle_path
from runtime.errors import BundleError, InputError
from runtime.manifest import Budgets
from runtime.memory import MemoryPlan, ModelNeed, available_for_models, plan_memory
from runtime.model_slot import ModelSlot, ModelSlots, bundle_slot, stock_reasoner_slot
from runtime.nowait import NOWAIT_KEYWORDS
from runtime.request import MODES, Mode, Request, make_request
from runtime.result import Done, Event, Result
from runtime.sampling import SamplingConfig
from runtime.speeds import SpeedBook
from runtime.stages import RequestRun, run_request

__all__ = ["MODES", "ExtractThink", "Mode"]

log = logging.getLogger(__name__)


class ExtractThink:
    """The Extract+Think pipeline over a bundle. Requests from several threads take turns."""

    def __init__(self, bundle: Bundle | None, slots: Mapping[str, ModelSlot], plan: MemoryPlan,
                 *, cache_bytes: int, prior: Mapping[str, Throughput] | None) -> None:
        self.bundle = bundle
        self._slots = ModelSlots(slots, plan.residency)
        self.memory_plan = plan
        self.embedding_cache = EmbeddingCache(cache_bytes // 2)
        self.extraction_cache = ExtractionCache(cache_bytes // 2)
        self._speeds = SpeedBook(prior)
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
            b = open_bundle(default_bundle_path() if bundle is None else bundle, verify=verify)
        roles = [r for r in ("perception", "reasoner") if r in b.manifest.models]
        if reasoner_gguf is not None and "reasoner" not in roles:
            roles.append("reasoner")
        if not roles:
            raise BundleError(f"bundle {b.manifest.name!r} has no models")

        opts = BackendOptions(threads=threads, gpu_layers=gpu_layers, providers=tuple(providers),
                              kv_cache_type=kv_cache_type)
        slots: dict[str, ModelSlot] = {}
        needs: dict[str, ModelNeed] = {}
        alternatives: dict[str, list[ModelNeed]] = {}
        tokenizers: dict[str, Any] = {}
        for role in roles:
            if role == "reasoner" and reasoner_gguf is not None:
                slots[role], needs[role] = stock_reasoner_slot(Path(reasoner_gguf), opts, context_length,
                                                               nowait_keywords)
                continue
            role_quant = quant.get(role) if isinstance(quant, Mapping) else quant
            slots[role], needs[role], alternatives[role] = bundle_slot(
                b, role, backend, role_quant, opts, context_length, kv_cache_type, nowait_keywords, tokenizers)
        available, source = available_for_models(max_memory)
        plan = plan_memory(needs, available, source=source, residency=residency, alternatives=alternatives)
        log.info("memory plan: %s", plan.describe())
        et = cls(b, slots, plan, cache_bytes=cache_mb << 20, prior=prior)
        try:
            et._slots.load_initial()
        except BaseException:
            et.close()
            raise
        return et

    # ---- what it holds -------------------------------------------------------------------

    @property
    def residency(self) -> str:
        return self.memory_plan.residency

    @property
    def roles(self) -> tuple[str, ...]:
        return tuple(self._slots)

    def backends(self) -> dict[str, str]:
        """role -> what runs it, e.g. "llamacpp gguf/q8_0"."""
        return {role: slot.label for role, slot in self._slots.items()}

    def loaded_roles(self) -> tuple[str, ...]:
        """The roles whose model is loaded now (both when resident; one at a time when sequential)."""
        return self._slots.loaded_roles()

    def tokenizer(self, role: str) -> TokenizerLike:
        """The tokenizer `role`'s prompts are encoded with."""
        return self._slot(role).tok

    def control_tokens(self, role: str) -> ControlTokens:
        """The stop, banned and think ids the budget controller steers `role` by."""
        return self._slot(role).control

    def nowait_ids(self, role: str = "reasoner") -> np.ndarray:
        """The token ids NoWait bans while `role` thinks."""
        return self._slot(role).nowait_ids()

    def speeds(self) -> dict[str, Throughput]:
        """The speeds the next deadline request plans from (the prior, then measurements)."""
        return self._speeds.snapshot()

    def _slot(self, role: str) -> ModelSlot:
        if role not in self._slots:
            raise InputError(f"this pipeline has no {role} model (it has {', '.join(self._slots)})")
        return self._slots[role]

    # ---- requests ----------------------------------------------------------------------

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
        if self._closed:
            raise InputError("this ExtractThink was closed")
        perception = self._slots.get("perception")
        req = make_request(
            image, question, options, roles=tuple(self._slots),
            defaults=self.bundle.manifest.budgets if self.bundle is not None else Budgets(),
            image_prep=perception.entry.image if perception is not None else None,
            mode=mode, thinking=thinking, hint=hint, focus=focus, hint_budget=hint_budget,
            extraction_budget=extraction_budget, thinking_budget=thinking_budget, answer_budget=answer_budget,
            deadline_s=deadline_s, sampling=sampling, seed=seed, nowait=nowait,
        )
        return self._run(req)

    def close(self) -> None:
        """Free the models (and native tokenizers). The pipeline cannot be used afterwards."""
        self._slots.close()
        self._closed = True

    def __enter__(self) -> ExtractThink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- the request ----------------------------------------------------------------------

    def _run(self, req: Request) -> Iterator[Event]:
        with self._lock:
            yield from run_request(self._start(req))

    def _start(self, req: Request) -> RequestRun:
        reasoner = self._slots.get("reasoner")
        can_think = reasoner is not None and reasoner.control.can_think
        if req.thinking and reasoner is not None and not can_think:
            log.warning("the reasoner's vocabulary has no <think>/</think>: thinking is off")
        thinking = req.thinking and req.mode != "end-to-end" and can_think
        result = Result(question=req.question, options=req.options, mode=req.mode, thinking_enabled=thinking,
                        deadline_s=req.deadline_s, backend=self.backends(), residency=self.residency,
                        seed=req.seed)
        planner = DeadlinePlanner(req.deadline_s, prior=self._speeds.snapshot()) if req.deadline_s else None
        return RequestRun(req=req, result=result, slots=self._slots, embeddings=self.embedding_cache,
                          extractions=self.extraction_cache, speeds=self._speeds, planner=planner,
                          thinking=thinking, t0=time.perf_counter())
