"""Multiple-choice options written into the question, as benchmark clients send them.

Two layouts are recognised (anything else is a free-form question):

    What is in the box?            What is in the box?
    A. a cat                       Options: A: a cat, B: a dog, C: a bird
    B. a dog
    C) a bird

Lines: a trailing run of lines "A. ...", "A) ...", "A: ..." or "(A) ..." with letters in
order from A (at least two). One line: MMStar's "Options: A: x, B: y" marker, read by the
same parser `edge eval` uses for MMStar files (`training.data.mmstar.split_options`).
"""

from __future__ import annotations

import re

from runtime.prompts import LETTERS
from training.data.mmstar import split_options

_LINE = re.compile(r"^\s*\(?([A-Z])\s*[.):]\s*(\S.*?)\s*$")


def _option_lines(question: str) -> tuple[str, tuple[str, ...]]:
    lines = question.rstrip().splitlines()
    found: list[tuple[str, str]] = []
    for line in reversed(lines):
        m = _LINE.match(line)
        if m is None:
            break
        found.append((m.group(1), m.group(2)))
    found.reverse()
    # keep the longest tail whose letters run A, B, C... (a stem line may look like "I. ...")
    while found and [letter for letter, _ in found] != list(LETTERS[: len(found)]):
        found.pop(0)
    if len(found) < 2:
        return question.strip(), ()
    stem = "\n".join(lines[: len(lines) - len(found)]).strip()
    return stem, tuple(text for _, text in found)


def parse_options(question: str) -> tuple[str, tuple[str, ...] | None]:
    """(stem, options) when the question carries its options, else (question, None)."""
    stem, options = _option_lines(question)
    if not options:
        stem, options = split_options(question)
    if len(options) < 2 or len(options) > len(LETTERS) or not stem:
        return question.strip(), None
    return stem, options
