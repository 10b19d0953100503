"""Qwen3 ChatML, defined once for training, export and the runtime.

A prompt is a list of *segments*, never one string: template text and untrusted text
are `Text`, structural tokens are `Special` (emitted by id, never parsed from text) and
the image is an `Image` placeholder that a backend replaces with embeddings. Because
special tokens are only ever produced from `Special` segments, a question or an
extraction that contains "</think>" or "<|im_end|>" stays plain text and cannot end a
stage early.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

# Qwen3's 26 special tokens in id order, starting right after the 151,643 BPE ranks.
# `special` mirrors Qwen3's tokenizer.json: the think/tool tags are added tokens that
# are *not* special (they survive `skip_special_tokens`).
QWEN3_SPECIAL_TOKENS: tuple[tuple[str, bool], ...] = (
    ("<|endoftext|>", True),
    ("<|im_start|>", True),
    ("<|im_end|>", True),
    ("<|object_ref_start|>", True),
    ("<|object_ref_end|>", True),
    ("<|box_start|>", True),
    ("<|box_end|>", True),
    ("<|quad_start|>", True),
    ("<|quad_end|>", True),
    ("<|vision_start|>", True),
    ("<|vision_end|>", True),
    ("<|vision_pad|>", True),
    ("<|image_pad|>", True),
    ("<|video_pad|>", True),
    ("<tool_call>", False),
    ("</tool_call>", False),
    ("<|fim_prefix|>", True),
    ("<|fim_middle|>", True),
    ("<|fim_suffix|>", True),
    ("<|fim_pad|>", True),
    ("<|repo_name|>", True),
    ("<|file_sep|>", True),
    ("<tool_response>", False),
    ("</tool_response>", False),
    ("<think>", False),
    ("</think>", False),
)
QWEN3_BPE_SIZE = 151_643
QWEN3_VOCAB_SIZE = 151_936  # embedding rows in the published checkpoints (padded)

IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
END_OF_TEXT = "<|endoftext|>"
THINK_START = "<think>"
THINK_END = "</think>"
IMAGE_TOKEN = "<|image_pad|>"

# The names every bundle must map to ids; the runtime looks them up by these roles.
SPECIAL_ROLES: dict[str, str] = {
    "im_start": IM_START,
    "im_end": IM_END,
    "end_of_text": END_OF_TEXT,
    "think_start": THINK_START,
    "think_end": THINK_END,
    "image": IMAGE_TOKEN,
}


@dataclass(frozen=True)
class Text:
    """Text tokenized as plain BPE: special-token strings inside it stay text."""

    text: str


@dataclass(frozen=True)
class Special:
    """One special token, named by its string (e.g. "<|im_end|>")."""

    token: str


@dataclass(frozen=True)
class Image:
    """Where the image embeddings go (tokens_per_image positions)."""


Segment = Text | Special | Image


@dataclass(frozen=True)
class Message:
    role: str  # "system" | "user" | "assistant"
    content: str
    image: bool = False  # the image goes first in the turn, followed by a newline


def turn(message: Message) -> list[Segment]:
    """One complete ChatML turn: <|im_start|>role\\n[image\\n]content<|im_end|>\\n."""
    segs: list[Segment] = [Special(IM_START), Text(f"{message.role}\n")]
    if message.image:
        segs += [Image(), Text("\n")]
    segs += [Text(message.content), Special(IM_END), Text("\n")]
    return segs


def assistant_prefix(thinking: bool | None) -> list[Segment]:
    """The start of the assistant turn the model continues from.

    thinking=True opens the think block itself (so the budget controller knows exactly
    where thinking starts); thinking=False inserts the empty think block Qwen3 uses for
    non-thinking mode; None adds no think tags (perception model, stock chat models).
    """
    segs: list[Segment] = [Special(IM_START), Text("assistant\n")]
    if thinking is True:
        segs += [Special(THINK_START), Text("\n")]
    elif thinking is False:
        segs += [Special(THINK_START), Text("\n\n"), Special(THINK_END), Text("\n\n")]
    return segs


def render_prompt(
    messages: Sequence[Message], *, thinking: bool | None, system: str | None = None
) -> list[Segment]:
    """Segments for a generation prompt: optional system turn, the turns, assistant prefix."""
    segs: list[Segment] = []
    if system:
        segs += turn(Message("system", system))
    for m in messages:
        segs += turn(m)
    segs += assistant_prefix(thinking)
    return merge_text(segs)


def render_target(answer: str, *, thinking_text: str | None = None) -> list[Segment]:
    """The assistant continuation a model is trained to produce after `assistant_prefix`.

    With `thinking_text` the prefix was opened with thinking=True, so the target is the
    thinking, the closing tag and the answer.
    """
    segs: list[Segment] = []
    if thinking_text is not None:
        segs += [Text(thinking_text.strip() + "\n"), Special(THINK_END), Text("\n\n")]
    segs += [Text(answer), Special(IM_END)]
    return merge_text(segs)


def merge_text(segs: Iterable[Segment]) -> list[Segment]:
    """Join adjacent Text segments so BPE sees the same strings a whole-text encode would."""
    out: list[Segment] = []
    for s in segs:
        if isinstance(s, Text) and out and isinstance(out[-1], Text):
            out[-1] = Text(out[-1].text + s.text)
        elif not (isinstance(s, Text) and s.text == ""):
            out.append(s)
    return out


def to_string(segs: Iterable[Segment], image_text: str = IMAGE_TOKEN) -> str:
    """Human-readable rendering (logs, GGUF template checks). Not used for tokenizing."""
    parts = []
    for s in segs:
        if isinstance(s, Text):
            parts.append(s.text)
        elif isinstance(s, Special):
            parts.append(s.token)
        else:
            parts.append(image_text)
    return "".join(parts)


# Jinja chat template stored in exported GGUF / tokenizer files so that *stock* tools
# (llama.cpp server, transformers) format conversations the same way. The runtime never
# executes it: it renders prompts with the functions above.
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{{- '<|im_start|>' + message['role'] + '\\n' -}}"
    "{%- if message['content'] is string -%}{{- message['content'] -}}"
    "{%- else -%}{%- for part in message['content'] -%}"
    "{%- if part['type'] == 'text' -%}{{- part['text'] -}}"
    "{%- else -%}{{- '<__media__>\\n' -}}{%- endif -%}"
    "{%- endfor -%}{%- endif -%}"
    "{{- '<|im_end|>\\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}"
    "{%- if enable_thinking is defined and enable_thinking is false -%}"
    "{{- '<think>\\n\\n</think>\\n\\n' -}}{%- endif -%}"
    "{%- endif -%}"
)
