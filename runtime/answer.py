"""Reading the final answer out of what a model wrote.

The paper reads the answer with a case-insensitive `Answer\\s*:\\s*(...)` match on the last
line. We do that first, then fall back to the last `Answer:` anywhere (a model that keeps
talking after answering), and, only where the caller allows it (the end-to-end mode,
whose prompt asks for a bare letter or phrase), to the last line itself. For multiple
choice the answer becomes an option letter: a letter in range, or an option's text.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from runtime.prompts import LETTERS

_ANSWER_RE = re.compile(r".*answer\s*:\s*(.*)", re.IGNORECASE)
_BOXED_RE = re.compile(r"\\boxed\{([^{}]*)\}")
# An upper-case letter followed by a separator ("B", "B.", "(B) two", "B: two").
_LETTER_RE = re.compile(r"^\(?([A-J])\)?(?=$|[\s.,:;)\]])")
# A lower-case letter only when it stands alone ("b", "(b)", "b."), so "a cat" is not "A".
_LOWER_LETTER_RE = re.compile(r"^\(?([a-j])\)?[.:]?$")
_WORD_EDGE = r"(?<![\w]){}(?![\w])"


@dataclass(frozen=True)
class ParsedAnswer:
    value: str | None  # option letter for multiple choice, else the cleaned answer text
    found: bool
    source: str  # "answer_line" | "answer_anywhere" | "last_line" | "none"
    raw: str = ""  # the text the value was read from
    letter: str | None = None


def _clean(value: str) -> str:
    value = value.strip()
    boxed = _BOXED_RE.search(value)
    if boxed:
        value = boxed.group(1)
    value = value.strip().strip("*_`").strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        value = value[1:-1].strip()
    return value.rstrip(".").strip()


def _norm(text: str) -> str:
    return re.sub(r"[^\w]+", " ", text.lower()).strip()


def match_option(value: str, options: Sequence[str]) -> str | None:
    """The letter `value` names: an option's exact text, a letter in range (unless the text
    after it is another option's: "A cat" with options dog/cat is B), or the one option
    whose text it contains."""
    n = len(options)
    norms = [_norm(o) for o in options]
    norm = _norm(value)
    for i, o in enumerate(norms):
        if o and o == norm:
            return LETTERS[i]
    m = _LETTER_RE.match(value) or _LOWER_LETTER_RE.match(value)
    if m:
        letter = m.group(1).upper()
        idx = LETTERS.index(letter)
        if idx < n:
            rest = _norm(value[m.end():])
            if rest and rest != norms[idx] and rest in norms:
                return LETTERS[norms.index(rest)]
            return letter
    if not norm:
        return None
    contained = [i for i, o in enumerate(norms) if o and re.search(_WORD_EDGE.format(re.escape(o)), norm)]
    if len(contained) == 1:
        return LETTERS[contained[0]]
    return None


def _candidates(text: str, allow_bare: bool) -> list[tuple[str, str]]:
    """(source, raw value) pairs, best first: the last line, then earlier lines, bottom up."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    out: list[tuple[str, str]] = []
    for i in range(len(lines) - 1, -1, -1):
        m = _ANSWER_RE.search(lines[i])  # greedy prefix: the line's last "Answer:"
        if m is not None:
            out.append(("answer_line" if i == len(lines) - 1 else "answer_anywhere", m.group(1)))
    if allow_bare and lines:
        out.append(("last_line", lines[-1]))
    return out


def parse_answer(
    text: str, options: Sequence[str] | None = None, *, allow_bare: bool = False
) -> ParsedAnswer:
    """Parse a final answer; `found` is False when nothing usable is there."""
    first_raw = ""
    for source, raw in _candidates(text, allow_bare):
        value = _clean(raw)
        first_raw = first_raw or raw
        if not value:
            continue
        if options:
            letter = match_option(value, options)
            if letter is not None:
                return ParsedAnswer(letter, True, source, raw=raw.strip(), letter=letter)
            continue
        return ParsedAnswer(value, True, source, raw=raw.strip())
    return ParsedAnswer(None, False, "none", raw=first_raw.strip())


def has_answer(text: str, options: Sequence[str] | None = None) -> bool:
    return parse_answer(text, options).found
