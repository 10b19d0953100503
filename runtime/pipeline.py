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
from runtime.calibration import calibrate
from runtime.cancel import Cancellation, Flag
from runtime.control_tokens import ControlTokens
from runtime.deadline import DeadlinePlanner, Throughput
from runtime.defaults import default_bundle_path
from runtime.errors import InputError
from runtime.image_layout import LayoutSpec, resolve_layout
from runtime.lookup import check_lookup
from runtime.manifest import Budgets
from runtime.memory import MemoryPlan, available_for_models, current_rss_bytes, plan_memory
from runtime.model_slot import ModelSlot, ModelSlots, build_slots
from runtime.nowait import NOWAIT_KEYWORDS
from runtime.prefix_cache import PrefixCache
from runtime.prompt_store import PromptStore
from runtime.request import MODE_ROLES, MODES, Mode, Request, RequestSettings, make_request
from runtime.result import Done, Event, Result
from runtime.speeds import SpeedBook, SpeedStore
from runtime.stages import RequestRun, run_request
from runtime.threads import check_threads, default_threads

__all__ = ["MODES", "ExtractThink", "Mode"]

log = logging.getLogger(__name__)

TURN_POLL_S = 0.05  # how often a request waiting for its turn looks at its cancel flag


def _check_load_args(threads: object, context_length: object, residency: object, cache_mb: object,
                     prefix_cache_mb: object = 0, lookup: object = 0) -> None:
    check_threads(threads)
    check_lookup(lookup)
    lengths = context_length.items() if isinstance(context_length, Mapping) else [("", context_length)]
    for role, n in lengths:
        if role not in ("", "perception", "reasoner"):
            raise InputError(f"context lengths are per role (perception, reasoner), not {role!r}")
        if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 16):
            raise InputError(f"context length must be an integer >= 16, got {n!r}")
    if residency not in ("auto", "resident", "sequential"):
        raise InputError(f"residency must be auto, resident or sequential, not {residency!r}")
    if not isinstance(cache_mb, int) or cache_mb < 0:
        raise InputError(f"cache_mb must be an integer >= 0, got {cache_mb!r}")
    if isinstance(prefix_cache_mb, bool) or not isinstance(prefix_cache_mb, int) or prefix_cache_mb < 0:
        raise InputError(f"prefix_cache_mb must be an integer >= 0, got {prefix_cache_mb!r}")


class ExtractThink:
    """The Extract+Think pipeline over a bundle.

    Requests from several threads take turns (one runs at a time). `close()` may be called
    from any thread: a running request is cancelled (it raises `Cancelled`) and the models
    are freed once it has left native code.
    """

    def __init__(self, bundle: Bundle | None, slots: Mapping[str, ModelSlot], plan: MemoryPlan,
                 *, cache_bytes: int, prior: Mapping[str, Throughput] | None,
                 speed_store: SpeedStore | None = None, image_layout: LayoutSpec | None = None,
                 prefix_cache_bytes: int = 0, lookup: int = 0, prompt_store: PromptStore | None = None) -> None:
        self.bundle = bundle
        self.lookup = check_lookup(lookup)  # the requests' default (`stream(lookup=...)` overrides it)
        self.image_layout = image_layout  # how the perception model's image tokens are laid out
        self._slots = ModelSlots(slots, plan.residency)
        self.memory_plan = plan
        self.embedding_cache = EmbeddingCache(cache_bytes // 2)
        self.extraction_cache = ExtractionCache(cache_bytes // 2)
        self.prefix_cache = PrefixCache(prefix_cache_bytes, store=prompt_store)
        self._speeds = SpeedBook(prior, store=speed_store,
                                 keys={role: slot.speed_key for role, slot in slots.items()})
        self._turn = threading.Lock()  # one request at a time
        self._turn_owner: int | None = None  # the thread consuming the request that holds _turn
        # Held while request code runs (backend calls included), released while a stream
        # waits for its consumer: close() takes it, so it never frees a model in use.
        self._native = threading.Lock()
        self._native_owner: int | None = None  # the thread holding _native
        self._closing = threading.Event()
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
        context_length: int | Mapping[str, int] | None = None,
        residency: Literal["auto", "resident", "sequential"] = "auto",
        verify: Literal["full", "size", "none"] = "full",
        kv_cache_type: str = "f16",
        gpu_layers: int = 0,
        providers: Sequence[str] = (),
        cache_mb: int = 256,
        prefix_cache_mb: int = 256,
        prior: Mapping[str, Throughput] | None = None,
        nowait_keywords: Sequence[str] = NOWAIT_KEYWORDS,
        speed_cache: bool | str | os.PathLike[str] = True,
        image_tokens: int | None = None,
        input_mode: str | None = None,
        max_image_tokens: int | None = None,
        lookup: int = 0,
        vision_backend: str | None = None,
        prompt_cache: str | os.PathLike[str] | None = None,
    ) -> ExtractThink:
        """Open and check a bundle, plan memory, and load the models the plan keeps resident.

        `cache_mb`: memory for the image-embedding and extraction caches; `prefix_cache_mb`:
        memory for the perception model's KV state after each image (`runtime.prefix_cache`:
        a second question on the same image skips the vision encoder and the image prefill;
        0 turns it off).

        Image tokens (`runtime.image_layout`), overriding the manifest's `image_layout`:
        `image_tokens` per view (729, 196 or 81 at 27x27: LLaVA-OneVision pooling),
        `input_mode` ("single" or "anyres"), `max_image_tokens` (anyres: fewer tiles).

        `lookup`: prompt-lookup decoding (`runtime.lookup`), draft tokens per step, 0 = off
        (the default); greedy outputs are unchanged and sampling keeps its distribution.

        `vision_backend`: "onnx" runs the perception model's ONNX vision graph beside its
        llama.cpp text model (the bundle needs both artifacts; on x86 CPUs ONNX Runtime
        encodes a SigLIP-so400m image faster than llama.cpp's clip: docs/runtime.md).

        `context_length`: positions per model, one number for both or per role
        ({"reasoner": 768}; a role left out gets the default: enough for the budgets).

        `prompt_cache`: a folder where the reasoner's prompt-start states are kept for later
        processes (`runtime.prompt_store`; needs the prefix cache on). Off by default.

        `speed_cache`: remember measured speeds per machine and model for later processes'
        deadline plans, in `runtime.speeds.cache_dir()` (True), in this file, or not (False).
        """
        _check_load_args(threads, context_length, residency, cache_mb, prefix_cache_mb, lookup)  # before a bundle is hashed
        b = bundle if isinstance(bundle, Bundle) else open_bundle(
            default_bundle_path() if bundle is None else bundle, verify=verify)
        if threads is None:
            threads = default_threads()  # once, so every load of this pipeline uses the same count
            log.info("threads: %d (physical cores less those other processes keep busy)", threads)
        if vision_backend not in (None, "llamacpp", "onnx"):
            raise InputError(f"vision_backend must be llamacpp or onnx, not {vision_backend!r}")
        opts = BackendOptions(threads=threads, gpu_layers=gpu_layers, providers=tuple(providers),
                              kv_cache_type=kv_cache_type, vision_backend=vision_backend)
        layout = None
        if "perception" in b.manifest.models:
            layout = resolve_layout(b, b.manifest.models["perception"], image_tokens=image_tokens,
                                    input_mode=input_mode, max_image_tokens=max_image_tokens)
        elif (image_tokens, input_mode, max_image_tokens) != (None, None, None):
            raise InputError("image token options need a bundle with a perception model")
        slots, needs, alternatives = build_slots(
            b, backend=backend, quant=quant, options=opts, context_length=context_length,
            kv_cache_type=kv_cache_type, nowait_keywords=nowait_keywords,
            reasoner_gguf=Path(reasoner_gguf) if reasoner_gguf is not None else None,
            image_tokens=layout.max_tokens() if layout is not None else None)
        # after the tokenizers are loaded (a Qwen3 one holds 75 MiB after the heap trim): a cap is a whole-process figure
        available, source = available_for_models(max_memory, threads=threads, process_bytes=current_rss_bytes())
        plan = plan_memory(needs, available, source=source, residency=residency, alternatives=alternatives)
        log.info("memory plan: %s", plan.describe())
        store = None
        if speed_cache is not False:
            store = SpeedStore(None if speed_cache is True else Path(speed_cache))
        et = cls(b, slots, plan, cache_bytes=cache_mb << 20, prior=prior, speed_store=store, image_layout=layout,
                 prefix_cache_bytes=prefix_cache_mb << 20, lookup=lookup,
                 prompt_store=PromptStore(prompt_cache) if prompt_cache is not None else None)
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
        cancel: Flag | None = None,
        **settings: Any,
    ) -> Iterator[Event]:
        """Yield events (stage started, token, budget action, stage finished) and finally
        `Done(result)`. Arguments are checked before any model work starts.

        The keywords `settings` are the fields of `runtime.request.RequestSettings` (mode,
        thinking, hint, focus, the four budgets, deadline_s, sampling, seed, nowait, lookup:
        prompt-lookup draft tokens per step for this request, None or left out: the
        pipeline's `load(lookup=...)`).

        `cancel` (a `threading.Event`): once set, the request stops at its next check
        (before every token, between prefill chunks and stages) and the iterator raises
        `runtime.errors.Cancelled`; the pipeline stays usable. `close()` cancels the same way.
        """
        if self._closed or self._closing.is_set():
            raise InputError("this ExtractThink was closed")
        cancellation = Cancellation().watch(self._closing, "the pipeline was closed while the request ran")
        if cancel is not None:
            cancellation.watch(cancel, "the request was cancelled")
        perception = self._slots.get("perception")
        req = make_request(
            image, question, options, RequestSettings(**self._with_lookup(settings)), roles=tuple(self._slots),
            defaults=self.bundle.manifest.budgets if self.bundle is not None else Budgets(),
            image_prep=perception.entry.image if perception is not None else None,
            layout=self.image_layout,
        )
        return self._run(req, cancellation)

    def _with_lookup(self, settings: dict[str, Any]) -> dict[str, Any]:
        if settings.get("lookup") is None:
            return {**settings, "lookup": self.lookup}
        return settings

    def close(self) -> None:
        """Free the models (and native tokenizers); the pipeline cannot be used afterwards.

        Safe from any thread and more than once. A request running in another thread is
        cancelled (its stream raises `Cancelled`); this waits until it has left native code
        (at most one backend call: a token, a prefill chunk, an image encode) before freeing.
        """
        self._closing.set()
        if self._native_owner == threading.get_ident():
            # Called from inside the running request (a signal handler on its thread):
            # waiting would deadlock; the request frees the models as it leaves.
            return
        with self._native:
            self._free()

    def _free(self) -> None:
        if not self._closed:
            self._closed = True
            self._slots.close()

    def __enter__(self) -> ExtractThink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- the request ----------------------------------------------------------------------

    def _run(self, req: Request, cancel: Cancellation) -> Iterator[Event]:
        """The request's events; its code (and so every backend call) runs only while
        `_native` is held, so `close()` waits for it and the next check sees the close."""
        if self._turn_owner == threading.get_ident():
            # this thread's own unfinished stream holds the turn: waiting for it never ends
            raise InputError("a request is already running on this thread: finish or close its stream first")
        while not self._turn.acquire(timeout=TURN_POLL_S):  # waiting for another request
            cancel.check()  # a queued request can be cancelled (or the pipeline closed) too
        events = None
        try:
            while True:
                self._turn_owner = threading.get_ident()
                with self._native:
                    self._native_owner = threading.get_ident()
                    try:
                        cancel.check()
                        if events is None:
                            events = run_request(self._start(req, cancel))
                        ev = next(events, None)
                    finally:
                        self._native_owner = None
                if ev is None:
                    return
                yield ev
        finally:
            if events is not None:
                events.close()
            if self._closing.is_set():  # closed from inside this request: free on the way out
                with self._native:
                    self._free()
            self._turn_owner = None
            self._turn.release()

    def _start(self, req: Request, cancel: Cancellation) -> RequestRun:
        reasoner = self._slots.get("reasoner")
        can_think = reasoner is not None and reasoner.control.can_think
        if req.thinking and reasoner is not None and not can_think:
            log.warning("the reasoner's vocabulary has no <think>/</think>: thinking is off")
        thinking = req.thinking and req.mode != "end-to-end" and can_think
        result = Result(question=req.question, options=req.options, mode=req.mode, thinking_enabled=thinking,
                        deadline_s=req.deadline_s, backend=self.backends(), residency=self.residency,
                        seed=req.seed)
        planner = None
        if req.deadline_s:
            started = time.monotonic()  # the probe's time counts against the deadline
            calibrate(self._speeds, self._slots, MODE_ROLES[req.mode])
            planner = DeadlinePlanner(req.deadline_s, prior=self._speeds.snapshot(), started=started)
        return RequestRun(req=req, result=result, slots=self._slots, embeddings=self.embedding_cache,
                          extractions=self.extraction_cache, prefixes=self.prefix_cache,
                          speeds=self._speeds, planner=planner,
                          thinking=thinking, t0=time.perf_counter(), cancel=cancel, layout=self.image_layout)
