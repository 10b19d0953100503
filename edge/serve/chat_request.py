"""An OpenAI chat-completions body -> one checked, frozen `ChatRequest`.

Extract+Think answers one question about one image, so a conversation is read this way:
the last message must be the user's; its text parts are the question; the image is the
last `image_url` part of the latest user message that has one (a follow-up without an
image asks about the last image of the conversation). System and assistant messages are
not passed to the models.

Request controls, with the names clients already send:
- answer budget: `max_completion_tokens` (or the older `max_tokens`);
- thinking budget: `thinking_budget`, vLLM's `thinking_token_budget`, Anthropic-style
  `thinking: {"type": "enabled", "budget_tokens": N}`, or `reasoning_effort`
  (low / medium / high, see `config.effort_budgets`; "none" turns thinking off, as do
  `thinking: false` and `chat_template_kwargs: {"enable_thinking": false}`);
- `deadline_s`, `nowait`, `temperature`, `top_p`, `seed`, `stream`,
  `stream_options.include_usage`;
- multiple choice: `options` (a list), or options written into the question (`choices`);
- ours: `hint`, `focus`, `hint_budget`, `extraction_budget`, `mode`, `lookup` (prompt-lookup
  draft tokens per step, 0..32; default: the server's `--lookup`, 0 = off).
Unknown fields are ignored; a known field of the wrong type or range is a 400 naming it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from edge.serve.choices import parse_options
from edge.serve.config import ServeConfig
from edge.serve.errors import APIError, bad_request
from edge.serve.images import ImageSource, check_url
from runtime.errors import InputError
from runtime.lookup import MAX_LOOKUP
from runtime.request import MODES, check_text
from runtime.sampling import SamplingConfig

ROLES = ("system", "developer", "user", "assistant", "tool", "function")
MAX_MESSAGES = 256
MAX_BUDGET = 1_000_000  # the runtime shrinks budgets to the context anyway; this bounds the JSON


@dataclass(frozen=True)
class ChatRequest:
    question: str
    options: tuple[str, ...] | None
    image: ImageSource | None
    model: str | None
    stream: bool
    include_usage: bool
    mode: str
    thinking: bool
    hint: bool
    focus: str | None
    hint_budget: int
    extraction_budget: int
    thinking_budget: int
    answer_budget: int
    deadline_s: float | None
    sampling: str | SamplingConfig
    seed: int
    nowait: bool
    reasoning_effort: str | None
    lookup: int | None = None  # None: the pipeline's

    def stream_kwargs(self) -> dict[str, Any]:
        """The keyword arguments of `ExtractThink.stream` (besides image, question, options)."""
        return {"mode": self.mode, "thinking": self.thinking, "hint": self.hint, "focus": self.focus,
                "hint_budget": self.hint_budget, "extraction_budget": self.extraction_budget,
                "thinking_budget": self.thinking_budget, "answer_budget": self.answer_budget,
                "deadline_s": self.deadline_s, "sampling": self.sampling, "seed": self.seed,
                "nowait": self.nowait, "lookup": self.lookup}


# ---- typed field readers ------------------------------------------------------------------


def _int(body: Mapping[str, Any], name: str, *, minimum: int = 0, maximum: int = MAX_BUDGET) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise bad_request(f"{name} must be an integer, not {type(value).__name__}", name)
    if not minimum <= value <= maximum:
        raise bad_request(f"{name} must be between {minimum} and {maximum:,}, got {value}", name)
    return value


def _number(body: Mapping[str, Any], name: str) -> float | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise bad_request(f"{name} must be a number", name)
    return float(value)


def _bool(body: Mapping[str, Any], name: str) -> bool | None:
    value = body.get(name)
    if value is not None and not isinstance(value, bool):
        raise bad_request(f"{name} must be true or false", name)
    return value


def _str(body: Mapping[str, Any], name: str) -> str | None:
    value = body.get(name)
    if value is not None and not isinstance(value, str):
        raise bad_request(f"{name} must be a string", name)
    return value


def _object(body: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    value = body.get(name)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise bad_request(f"{name} must be an object", name)
    return value


# ---- messages -------------------------------------------------------------------------------


def _parts(content: Any, where: str) -> list[Mapping[str, Any]]:
    """A message's content as a list of parts (a plain string is one text part)."""
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if not isinstance(content, list):
        raise bad_request(f"{where}.content must be a string or a list of content parts", where + ".content")
    for i, part in enumerate(content):
        if not isinstance(part, dict) or not isinstance(part.get("type"), str):
            raise bad_request(f"{where}.content[{i}] must be an object with a type", f"{where}.content[{i}]")
    return content


def _image_url(part: Mapping[str, Any], where: str, allow_remote: bool) -> ImageSource:
    value = part.get("image_url")
    url = value.get("url") if isinstance(value, dict) else value
    if not isinstance(url, str) or not url:
        raise bad_request(f"{where}.image_url.url must be a string (a data: URL)", f"{where}.image_url")
    return check_url(url.strip(), allow_remote=allow_remote, param=f"{where}.image_url")


def _read_messages(body: Mapping[str, Any], allow_remote: bool) -> tuple[str, ImageSource | None]:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise bad_request("messages must be a non-empty list", "messages")
    if len(messages) > MAX_MESSAGES:
        raise bad_request(f"at most {MAX_MESSAGES} messages, got {len(messages)}", "messages")
    image: ImageSource | None = None
    question = ""
    for i, msg in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(msg, dict):
            raise bad_request(f"{where} must be an object", where)
        role = msg.get("role")
        if role not in ROLES:
            raise bad_request(f"{where}.role must be one of {', '.join(ROLES)}, not {role!r}", where + ".role")
        parts = _parts(msg.get("content"), where)
        if role != "user":
            continue
        texts, images = [], []
        for j, part in enumerate(parts):
            kind = part["type"]
            if kind == "text":
                if not isinstance(part.get("text"), str):
                    raise bad_request(f"{where}.content[{j}].text must be a string", f"{where}.content[{j}].text")
                texts.append(part["text"])
            elif kind == "image_url":
                images.append(_image_url(part, f"{where}.content[{j}]", allow_remote))
            else:
                raise bad_request(f"{where}.content[{j}]: content parts of type {kind!r} are not supported "
                                  "(text and image_url are)", f"{where}.content[{j}].type")
        if len(images) > 1 and i == len(messages) - 1:
            raise bad_request("Extract+Think answers about one image: send one image_url in the last message",
                              f"{where}.content")
        if images:
            image = images[-1]
        question = "\n".join(t for t in texts if t.strip())
    if messages[-1].get("role") != "user":
        raise bad_request("the last message must be the user's question", f"messages[{len(messages) - 1}].role")
    return question, image


# ---- controls --------------------------------------------------------------------------------


def _thinking(body: Mapping[str, Any], config: ServeConfig) -> tuple[bool, int, str | None]:
    """(thinking on?, thinking budget, effort) from every name a client may use."""
    thinking = config.thinking
    budget = None
    effort = _str(body, "reasoning_effort")
    if effort is not None:
        effort = effort.lower()
        if effort == "none":
            thinking = False
        elif effort in ("minimal", *config.effort):
            budget = config.effort["low" if effort == "minimal" else effort]
        else:
            raise bad_request("reasoning_effort must be none, minimal, low, medium or high", "reasoning_effort")
    flag = body.get("thinking")
    if isinstance(flag, bool):
        thinking = flag
    elif isinstance(flag, dict):  # Anthropic's form
        kind = flag.get("type")
        if kind not in ("enabled", "disabled"):
            raise bad_request('thinking.type must be "enabled" or "disabled"', "thinking.type")
        thinking = kind == "enabled"
        budget = _int(flag, "budget_tokens") if flag.get("budget_tokens") is not None else budget
    elif flag is not None:
        raise bad_request("thinking must be true, false or an object", "thinking")
    template = _object(body, "chat_template_kwargs")
    enable = _bool(template, "enable_thinking")
    if enable is not None:
        thinking = enable
    given = [(n, _int(body, n)) for n in ("thinking_budget", "thinking_token_budget")]
    given = [(n, v) for n, v in given if v is not None]
    if len({v for _, v in given}) > 1:
        raise bad_request("thinking_budget and thinking_token_budget disagree: send one", "thinking_budget")
    if given:
        budget = given[0][1]  # an explicit budget wins over reasoning_effort
    return thinking, config.budgets.thinking if budget is None else budget, effort


def _sampling(body: Mapping[str, Any]) -> str | SamplingConfig:
    """No temperature/top_p: the paper's per-stage settings; temperature 0: greedy
    everywhere; otherwise one setting for every stage."""
    temperature, top_p = _number(body, "temperature"), _number(body, "top_p")
    if temperature is not None and not 0 <= temperature <= 2:
        raise bad_request("temperature must be between 0 and 2", "temperature")
    if top_p is not None and not 0 < top_p <= 1:
        raise bad_request("top_p must be in (0, 1]", "top_p")
    if temperature is None and top_p is None:
        return "paper"
    if temperature == 0:
        return "greedy"
    return SamplingConfig(temperature=0.6 if temperature is None else temperature,
                          top_p=1.0 if top_p is None else top_p)


def _options(body: Mapping[str, Any], question: str) -> tuple[str, tuple[str, ...] | None]:
    options = body.get("options")
    if options is None:
        return parse_options(question)
    if not isinstance(options, list) or not all(isinstance(o, str) for o in options):
        raise bad_request("options must be a list of strings", "options")
    return question, tuple(options)


def parse_chat_request(body: Any, config: ServeConfig) -> ChatRequest:
    """Check a chat-completions body; raises `APIError` (400) naming the field at fault."""
    if not isinstance(body, dict):
        raise bad_request("the request body must be a JSON object")
    model = _str(body, "model")
    n = _int(body, "n", minimum=1, maximum=MAX_BUDGET)
    if n not in (None, 1):
        raise bad_request("n must be 1: one answer per request", "n")
    stream = bool(_bool(body, "stream"))
    include_usage = bool(_bool(_object(body, "stream_options"), "include_usage"))
    question, image = _read_messages(body, config.allow_remote_images)
    question, options = _options(body, question)
    thinking, thinking_budget, effort = _thinking(body, config)
    answer = _int(body, "max_completion_tokens")
    if answer is None:
        answer = _int(body, "max_tokens")
    b = config.budgets
    hint = _bool(body, "hint")
    mode = _str(body, "mode") or "extract-think"
    if mode not in MODES:
        raise bad_request(f"mode must be one of {', '.join(MODES)}", "mode")
    if mode != "blind" and image is None:
        raise bad_request("no image: add an image_url part (a data: URL) to a user message", "messages")
    deadline = _number(body, "deadline_s")
    if deadline is None:
        deadline = config.deadline_s
    elif not deadline > 0:
        raise bad_request("deadline_s must be a positive number of seconds", "deadline_s")
    seed = _int(body, "seed", maximum=2**63 - 1)
    focus = _str(body, "focus")
    try:  # text that cannot reach a tokenizer (lone surrogates) is refused before any work
        question, options, focus = check_text(question, options, focus)
    except InputError as exc:
        raise APIError(400, str(exc), param="options" if "option" in str(exc) else "messages") from None
    return ChatRequest(
        question=question, options=options, image=image, model=model, stream=stream,
        include_usage=include_usage, mode=mode, thinking=thinking,
        hint=(b.hint > 0) if hint is None else hint, focus=focus,
        hint_budget=_pick(_int(body, "hint_budget"), b.hint),
        extraction_budget=_pick(_int(body, "extraction_budget"), b.extraction),
        thinking_budget=thinking_budget,
        answer_budget=_pick(answer, b.answer if thinking else b.non_thinking_answer),
        deadline_s=deadline, sampling=_sampling(body), seed=0 if seed is None else seed,
        nowait=_pick(_bool(body, "nowait"), True), reasoning_effort=effort,
        lookup=_int(body, "lookup", maximum=MAX_LOOKUP),
    )


def _pick(value: Any, default: Any) -> Any:
    return default if value is None else value

