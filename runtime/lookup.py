"""Prompt lookup: draft tokens by finding the text's last few tokens earlier in it.

A reasoner copies spans of its prompt (the description, the question, the options) and of
what it already wrote. When the last n tokens (n = 3, then 2, then 1) occurred before,
the tokens that followed their latest earlier occurrence are a cheap guess at what comes
next: no draft model, no extra weights. The decode loop verifies the guess in one batch
(`runtime.generation`) and keeps only what the model itself would have produced.

An index from each n-gram to the end of its latest occurrence makes a draft a few dict
look-ups, and each new token adds `ngram_max` entries: the per-token cost does not grow
with the text.
"""

from __future__ import annotations

from collections.abc import Iterable

from runtime.errors import InputError

# The most draft tokens a request may ask for: a verification batch is this plus one, and
# beyond ~16 a CPU batch costs clearly more than one token while acceptance runs out.
MAX_LOOKUP = 32
_IMAGE = -1  # an image position: never part of a match, ends a draft


def check_lookup(value: object) -> int:
    """`lookup` (draft tokens per step, 0 = off) checked: an int in 0..MAX_LOOKUP."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_LOOKUP:
        raise InputError(f"lookup must be an integer in 0..{MAX_LOOKUP} (draft tokens per step; 0 = off), "
                         f"got {value!r}")
    return value


class PromptLookup:
    """The n-gram drafter over one generation's prompt and output."""

    def __init__(self, prompt: Iterable[int | None], k: int, *, ngram_max: int = 3, ngram_min: int = 1) -> None:
        if k < 1 or not 1 <= ngram_min <= ngram_max:
            raise InputError(f"prompt lookup needs k >= 1 and 1 <= ngram_min <= ngram_max, got {k}, "
                             f"{ngram_min}, {ngram_max}")
        self.k, self.ngram_max, self.ngram_min = k, ngram_max, ngram_min
        self._seq: list[int] = []
        # n-gram -> end position of its latest occurrence, over positions before the last
        # one, so the current suffix never finds itself
        self._index: dict[tuple[int, ...], int] = {}
        for t in prompt:
            self.push(t)

    def push(self, token: int | None) -> None:
        """Append one token (None: an image position)."""
        seq = self._seq
        seq.append(_IMAGE if token is None else int(token))
        j = len(seq) - 2  # the position whose n-grams become findable now
        if j < 0:
            return
        index = self._index
        for n in range(1, min(self.ngram_max, j + 1) + 1):
            gram = tuple(seq[j - n + 1 : j + 1])
            if _IMAGE in gram:
                break  # longer grams ending here hold it too
            index[gram] = j

    def draft(self, limit: int | None = None) -> list[int]:
        """Up to `k` (and `limit`) tokens that followed the latest earlier occurrence of
        the longest suffix found; [] when none is found."""
        k = self.k if limit is None else min(self.k, limit)
        if k <= 0:
            return []
        seq = self._seq
        for n in range(min(self.ngram_max, len(seq)), self.ngram_min - 1, -1):
            j = self._index.get(tuple(seq[-n:]))
            if j is not None:
                out = seq[j + 1 : j + 1 + k]
                if _IMAGE in out:
                    out = out[: out.index(_IMAGE)]
                return out
        return []
