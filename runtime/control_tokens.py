"""The token ids the budget controller steers by, read from a tokenizer.

`control_tokens` names the stop tokens, the control tokens that must never be
generated, the think tags and the newline; `scan_ids` finds the newline-bearing and
blank tokens (a one-off vocabulary scan, memoised per tokenizer).
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from runtime.backends.base import TokenizerLike
from runtime.chat_format import END_OF_TEXT, IM_END, QWEN3_SPECIAL_TOKENS, THINK_END, THINK_START
from runtime.errors import InputError


@dataclass(frozen=True)
class ControlTokens:
    """The ids the controller steers by, derived from a tokenizer."""

    stop: tuple[int, ...]
    never: tuple[int, ...]  # control tokens that must never be generated (incl. <think>)
    think_start: int | None
    think_end: int | None
    newline: int | None
    vocab_size: int  # ids at or above this are embedding padding rows: never generated

    @property
    def can_think(self) -> bool:
        return self.think_start is not None and self.think_end is not None


def control_tokens(tok: TokenizerLike, *, extra_stop: Sequence[int] = ()) -> ControlTokens:
    """Stop = `<|im_end|>`, `<|endoftext|>` (+ extra, e.g. a stock GGUF's EOS); every other
    Qwen3 special token except `</think>` is banned outright."""
    ids = {s: tok.token_id(s) for s, _ in QWEN3_SPECIAL_TOKENS}
    stop = tuple(dict.fromkeys(i for i in (ids.get(IM_END), ids.get(END_OF_TEXT), *extra_stop) if i is not None))
    if not stop:
        raise InputError("the tokenizer has neither <|im_end|> nor <|endoftext|>: cannot tell when a stage ends")
    think_end = ids.get(THINK_END)
    never = tuple(sorted({i for s, i in ids.items() if i is not None and s != THINK_END} - set(stop)))
    nl = tok.encode_plain("\n")
    return ControlTokens(
        stop=stop,
        never=never,
        think_start=ids.get(THINK_START),
        think_end=think_end,
        newline=nl[0] if len(nl) == 1 else None,
        vocab_size=tok.vocab_size,
    )


# Per-tokenizer id sets that need a vocabulary scan (newline-bearing and blank tokens).
_scan_memo: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def scan_ids(tok: TokenizerLike, kind: str) -> np.ndarray:
    try:
        memo = _scan_memo.setdefault(tok, {})
    except TypeError:
        memo = {}
    if kind not in memo:
        vocab = tok.vocab()
        if kind == "newline":
            memo[kind] = np.array(sorted(i for i, t in vocab.items() if "\n" in t or "\r" in t), dtype=np.int64)
        else:  # blank: decodes to whitespace only (or nothing)
            memo[kind] = np.array(sorted(i for i, t in vocab.items() if not t.strip()), dtype=np.int64)
    return memo[kind]


def single_token(tok: TokenizerLike, text: str) -> int | None:
    ids = tok.encode_plain(text)
    return ids[0] if len(ids) == 1 else None
