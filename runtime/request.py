"""One request to the pipeline, checked and frozen before any model runs.

`make_request` turns the arguments of `ExtractThink.stream` (its keywords gathered in
`RequestSettings`) into a `Request`: every argument is checked (a bad one raises an
`EdgeError` subclass naming it) and the image is decoded and preprocessed, so nothing can
fail for a user's mistake once the models start.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from runtime import prompts
from runtime.errors import BundleError, InputError
from runtime.image import load_and_preprocess
from runtime.image_layout import ImagePlan, LayoutSpec, load_views
from runtime.lookup import check_lookup
from runtime.manifest import Budgets, ImagePreprocess
from runtime.sampling import GREEDY, NON_THINKING, THINKING, SamplingConfig

Mode = Literal["extract-think", "end-to-end", "caption-think", "blind"]
MODES: tuple[str, ...] = ("extract-think", "end-to-end", "caption-think", "blind")
MODE_ROLES: dict[str, tuple[str, ...]] = {  # the models each mode runs
    "extract-think": ("reasoner", "perception"), "caption-think": ("reasoner", "perception"),
    "end-to-end": ("perception",), "blind": ("reasoner",),
}
MAX_QUESTION_CHARS = 16_000
MAX_OPTION_CHARS = 2_000
MAX_FOCUS_CHARS = 200


@dataclass(frozen=True)
class StageSampling:
    """The sampling of each kind of stage."""

    hint: SamplingConfig
    perception: SamplingConfig
    thinking: SamplingConfig
    answer: SamplingConfig  # the reasoner without thinking


def sampling_plan(sampling: str | SamplingConfig) -> StageSampling:
    if isinstance(sampling, SamplingConfig):
        return StageSampling(sampling, sampling, sampling, sampling)
    if sampling == "paper":
        # The paper's settings for the reasoner; perception decodes greedily as in its evals.
        return StageSampling(NON_THINKING, GREEDY, THINKING, NON_THINKING)
    if sampling == "greedy":
        return StageSampling(GREEDY, GREEDY, GREEDY, GREEDY)
    raise InputError(f"sampling must be 'paper', 'greedy' or a SamplingConfig, not {sampling!r}")


@dataclass(frozen=True)
class Request:
    """Everything one request asks for, checked. `pixels` is the preprocessed image."""

    question: str
    options: tuple[str, ...] | None
    mode: str
    focus: str | None  # the caller's focus phrase (skips the hint stage)
    budgets: Budgets  # what each stage may spend (before any deadline planning)
    deadline_s: float | None
    sampling: StageSampling
    seed: int
    thinking: bool
    hint: bool
    nowait: bool
    pixels: np.ndarray | None = field(default=None, repr=False, compare=False)
    image_hash: str | None = None
    # The image's views [n, size, size, 3] uint8 (pixels = views[0]) and their token count.
    views: np.ndarray | None = field(default=None, repr=False, compare=False)
    image_plan: ImagePlan | None = None
    lookup: int = 0  # prompt-lookup draft tokens per decode step (runtime.lookup; 0 = off)

    @property
    def needs_image(self) -> bool:
        return self.mode != "blind"


def clean_focus(text: str) -> str:
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


def _check_unicode(text: str, what: str) -> None:
    """Text that cannot be written as UTF-8 (a lone surrogate: invalid UTF-8 bytes from a
    command line, a broken JSON escape) would fail inside the tokenizer after models load."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InputError(
            f"{what} is not valid text: character {exc.start} is a lone surrogate "
            f"({text[exc.start]!r}; invalid UTF-8 in the input?)"
        ) from None


def check_text(question: Any, options: Sequence[str] | None = None,
               focus: str | None = None) -> tuple[str, tuple[str, ...] | None, str | None]:
    """The question, options and focus, stripped and checked; needs no model, so a caller
    (a CLI, a server) can check them before loading anything."""
    if not isinstance(question, str):
        raise InputError("the question must be text")
    _check_unicode(question, "the question")
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
        for i, o in enumerate(options):
            _check_unicode(o, f"option {prompts.LETTERS[i]}")
    if focus is not None:
        if not isinstance(focus, str):
            raise InputError("the focus must be text")
        _check_unicode(focus, "the focus")
        focus = clean_focus(focus)
    return question, options, focus


def request_budgets(defaults: Budgets, *, hint: int | None = None, extraction: int | None = None,
                    thinking: int | None = None, answer: int | None = None) -> Budgets:
    """The request's budgets: the ones given, the bundle's defaults for the rest."""
    given = {"hint": hint, "extraction": extraction, "thinking": thinking, "answer": answer}
    for name, value in given.items():
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            raise InputError(f"the {name} budget must be an integer >= 0, got {value!r}")
    d = defaults
    return Budgets(
        hint=d.hint if hint is None else hint,
        extraction=d.extraction if extraction is None else extraction,
        thinking=d.thinking if thinking is None else thinking,
        answer=d.answer if answer is None else answer,
        non_thinking_answer=d.non_thinking_answer if answer is None else answer,
    )


@dataclass(frozen=True)
class RequestSettings:
    """The keyword arguments of `ExtractThink.stream` that shape a request, with their
    defaults (the bundle's budgets stand in for the budgets left None)."""

    mode: Mode = "extract-think"
    thinking: bool = True
    hint: bool = True
    focus: str | None = None
    hint_budget: int | None = None
    extraction_budget: int | None = None
    thinking_budget: int | None = None
    answer_budget: int | None = None
    deadline_s: float | None = None
    sampling: str | SamplingConfig = "paper"
    seed: int = 0
    nowait: bool = True
    lookup: int = 0  # prompt-lookup draft tokens per step (runtime.lookup); 0 = off


def make_request(
    image: Any,
    question: Any,
    options: Sequence[str] | None,
    settings: RequestSettings,
    *,
    roles: Collection[str],
    defaults: Budgets,
    image_prep: ImagePreprocess | None,
    layout: LayoutSpec | None = None,
) -> Request:
    """Check every argument (see `ExtractThink.stream`), decode the image, freeze them.

    `roles` are the models the pipeline has; `image_prep` is how the perception model
    takes its pixels; `layout` how its views become image tokens (None: one view).
    """
    s = settings
    mode, deadline_s, seed = s.mode, s.deadline_s, s.seed
    if mode not in MODES:
        raise InputError(f"unknown mode {mode!r} (choose from {', '.join(MODES)})")
    question, options, focus = check_text(question, options, s.focus)
    needs_image = mode != "blind"
    if needs_image and image is None:
        raise InputError(f"the {mode} mode needs an image")
    if needs_image and "perception" not in roles:
        raise BundleError(f"this bundle has no perception model, so the {mode} mode cannot run")
    if mode != "end-to-end" and "reasoner" not in roles:
        raise BundleError(f"this bundle has no reasoner model, so the {mode} mode cannot run")
    budgets = request_budgets(defaults, hint=s.hint_budget, extraction=s.extraction_budget,
                              thinking=s.thinking_budget, answer=s.answer_budget)
    if deadline_s is not None and (isinstance(deadline_s, bool) or not isinstance(deadline_s, (int, float))
                                   or not deadline_s > 0 or not math.isfinite(deadline_s)):
        raise InputError(f"the deadline must be a positive number of seconds, got {deadline_s!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise InputError(f"the seed must be an integer >= 0, got {seed!r}")
    check_lookup(s.lookup)
    plan = sampling_plan(s.sampling)
    pixels = image_hash = views = image_plan = None
    if needs_image:
        if image_prep is None:
            raise BundleError("the perception model has no image preprocessing settings")
        # Decode and preprocess now, so a bad image fails before any model runs (and decode
        # no more pixels than the model's input size needs).
        if layout is None:
            pixels, image_hash = load_and_preprocess(image, image_prep)
            views = pixels[None]
        else:
            views, image_plan, image_hash = load_views(image, layout, image_prep)
            pixels = views[0]
    return Request(
        question=question, options=options, mode=mode, focus=focus, budgets=budgets,
        deadline_s=float(deadline_s) if deadline_s is not None else None, sampling=plan, seed=seed,
        thinking=bool(s.thinking), hint=bool(s.hint), nowait=bool(s.nowait), pixels=pixels,
        image_hash=image_hash, views=views, image_plan=image_plan, lookup=s.lookup,
    )
