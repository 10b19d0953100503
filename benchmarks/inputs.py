"""The fixed inputs every benchmark run uses: stage token counts, prompts and images.

Speed does not depend on what the words say, but it does depend on how many tokens each
stage reads and writes, so those counts are fixed (`TokenCounts`) and the prompts are
the runtime's real prompts (runtime.prompts) for a fixed question, focus and a
description of exactly `extraction` tokens. Images are deterministic pictures at the
bundle's input size, a different one per repetition so no cache can serve a repeat.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from runtime import prompts
from runtime.errors import InputError
from runtime.tokenizer import decode, encode_segments

# the stages of one request, in the order they run (reports and plots list them so)
PIPELINE_STAGES = ("vision", "hint", "extraction", "thinking", "answer")
QUESTION = "Which shape is directly to the left of the red circle, and what colour is it?"
OPTIONS = ("a blue square", "a green triangle", "a yellow star", "a purple hexagon")
FOCUS = "the shapes next to the red circle and their colours"
# Varied questions of similar length for pipeline repetitions (the hint prompt of a new
# question cannot be served from the KV cache of the previous one).
QUESTIONS = (
    QUESTION,
    "How many green triangles are above the large blue square in this picture?",
    "What is written on the sign in the top right corner, and in which colour?",
    "Is the small yellow star closer to the left edge or to the right edge?",
    "Which object is the largest one in the image, and where is it located?",
)
DESCRIPTION_SEED = (
    "The image shows eight shapes on a light grey background. In the top left there is a small "
    "purple hexagon, and to its right a medium orange diamond. A large red circle sits in the "
    "centre; directly to its left is a blue square of medium size, and below it a green "
    "triangle. The word STOP is written in black letters in the top right corner. A yellow "
    "star is in the bottom right, next to a brown cross. "
)


@dataclass(frozen=True)
class TokenCounts:
    """Tokens generated per stage (the thinking stage is followed by the answer stage)."""

    hint: int = 16
    extraction: int = 128
    thinking: int = 256
    answer: int = 16

    def __post_init__(self) -> None:
        for name in ("hint", "extraction", "thinking", "answer"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise InputError(f"the {name} token count must be an integer >= 1, got {v!r}")

    @classmethod
    def parse(cls, text: str) -> TokenCounts:
        """'hint=16,extraction=128,thinking=256,answer=16' (any subset)."""
        values: dict[str, int] = {}
        for part in filter(None, (p.strip() for p in text.split(","))):
            key, _, val = part.partition("=")
            if key.strip() not in cls.__dataclass_fields__ or not val.strip().isdigit():
                raise InputError(f"bad token count {part!r}: use e.g. hint=16,extraction=128,thinking=256,answer=16")
            values[key.strip()] = int(val)
        return cls(**values)

    def to_dict(self) -> dict[str, int]:
        return {"hint": self.hint, "extraction": self.extraction, "thinking": self.thinking, "answer": self.answer}


def description_text(tok: Any, n_tokens: int) -> str:
    """A plausible image description that is exactly `n_tokens` tokens long (or close)."""
    seed_ids = tok.encode_plain(DESCRIPTION_SEED)
    ids = (seed_ids * (n_tokens // max(1, len(seed_ids)) + 1))[:n_tokens]
    return decode(tok, ids)


def stage_prompts(reasoner_tok: Any | None, perception_tok: Any | None, tokens_per_image: int,
                  counts: TokenCounts) -> dict[str, list[int | None]]:
    """Prompt ids per stage shape: hint and reasoning (reasoner), extraction (perception)."""
    out: dict[str, list[int | None]] = {}
    if reasoner_tok is not None:
        out["hint"] = encode_segments(reasoner_tok, prompts.hint_prompt(QUESTION))
        desc = description_text(reasoner_tok, counts.extraction)
        out["reasoning"] = encode_segments(
            reasoner_tok, prompts.reasoning_prompt(desc, QUESTION, OPTIONS, thinking=True))
    if perception_tok is not None:
        out["extraction"] = encode_segments(perception_tok, prompts.extraction_prompt(FOCUS),
                                            image_tokens=tokens_per_image)
    return out


def prompt_runs(prompt: Sequence[int | None], image_embeds: Any) -> Iterator[tuple[list[int] | None, Any]]:
    """A prompt's runs, in order: (token ids, None) for text and (None, rows) for a run of
    None entries, which stand for the next rows of `image_embeds`."""
    row = 0
    for is_image, group in itertools.groupby(prompt, key=lambda t: t is None):
        run = list(group)
        if is_image:
            yield None, image_embeds[row:row + len(run)]
            row += len(run)
        else:
            yield [int(t) for t in run], None


def bench_image(size: int, seed: int = 0) -> np.ndarray:
    """A deterministic RGB uint8 picture: coloured blocks on a gradient, different per seed."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / max(1, size - 1)
    img = np.stack([x * 200 + 30, y * 180 + 40, (1 - x) * 150 + 60], axis=-1)
    for _ in range(6):
        c = rng.integers(0, 256, 3)
        x0, y0 = rng.integers(0, max(1, size - size // 4), 2)
        w, h = rng.integers(max(1, size // 10), max(2, size // 3), 2)
        img[y0:y0 + h, x0:x0 + w] = c
    return np.clip(img, 0, 255).astype(np.uint8)
