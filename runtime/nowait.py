"""NoWait: the "reflexive" tokens banned while a model thinks.

The set is derived from the tokenizer's vocabulary, never hard-coded: a token is banned
when its text, with surrounding spaces and punctuation removed, is one of the keywords
in any casing. That covers "wait", "Wait", " Wait", " WAIT", ".wait", "—but" and so on,
and leaves words that merely contain a keyword ("await", "company", "known") alone.
On Qwen3's vocabulary the paper's keyword list gives 140 ids (the paper quotes ~190 for
its own matching rules; keyword phrases that are not single tokens, like "double-check",
contribute none rather than banning their first piece).
"""

from __future__ import annotations

import contextlib
import re
import weakref
from collections.abc import Iterable, Mapping

import numpy as np

from runtime.backends.base import TokenizerLike
from runtime.chat_format import QWEN3_SPECIAL_TOKENS

NOWAIT_KEYWORDS: tuple[str, ...] = (
    "wait", "hmm", "alternatively", "but", "however", "check", "double-check", "verify",
    "maybe", "again", "oh", "ah", "other", "another", "now", "any",
)

_CONTROL_TEXTS = frozenset(t for t, _ in QWEN3_SPECIAL_TOKENS)
_EDGES = re.compile(r"^[\W_]+|[\W_]+\Z")

# Derived sets per tokenizer and keyword list: computing one scans the whole vocabulary.
_memo: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def normalize_piece(text: str) -> str:
    """A token's text reduced to what the keyword match compares: core letters, lower case."""
    return _EDGES.sub("", text).lower()


def nowait_token_ids(
    source: TokenizerLike | Mapping[int, str], keywords: Iterable[str] = NOWAIT_KEYWORDS
) -> np.ndarray:
    """Sorted int64 ids of every token that spells a keyword (see the module doc)."""
    words = tuple(sorted({k.strip().lower() for k in keywords if k.strip()}))
    cached = _cached(source, words)
    if cached is not None:
        return cached
    vocab = source if isinstance(source, Mapping) else source.vocab()
    wanted = set(words)
    ids = sorted(i for i, text in vocab.items() if normalize_piece(text) in wanted and not _is_control(text))
    out = np.asarray(ids, dtype=np.int64)
    if not isinstance(source, Mapping):  # plain dicts may be mutated by their owner
        with contextlib.suppress(TypeError):  # not weak-referenceable: just do not cache
            _memo.setdefault(source, {})[words] = out
    return out


def _is_control(text: str) -> bool:
    """Chat-format tokens ("<think>", "<|im_end|>") are never reflexive words."""
    return text in _CONTROL_TEXTS or (text.startswith("<|") and text.endswith("|>"))


def _cached(source: object, words: tuple[str, ...]) -> np.ndarray | None:
    if isinstance(source, Mapping):
        return None
    try:
        return _memo.get(source, {}).get(words)
    except TypeError:
        return None
