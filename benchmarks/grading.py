"""Grading an answer: option letters for multiple choice, normalised text otherwise."""

from __future__ import annotations

import re
from collections.abc import Sequence

from runtime.prompts import LETTERS

_NUMBER_WORDS = {w: str(i) for i, w in enumerate((
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
    "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen", "twenty"))}
_ARTICLES = {"a", "an", "the"}


def normalize_answer(text: str) -> str:
    """Lower case, punctuation and articles dropped, number words as digits."""
    words = re.sub(r"[^\w\s]", " ", str(text).lower()).split()
    return " ".join(_NUMBER_WORDS.get(w, w) for w in words if w not in _ARTICLES)


def option_letter(answer: str, options: Sequence[str]) -> str | None:
    """The letter `answer` names among `options` ("B", "b)", or an option's text), or None."""
    a = answer.strip()
    if len(a) == 1 and a.upper() in LETTERS[: len(options)]:
        return a.upper()
    if len(a) == 2 and a[1] in ".):" and a[0].upper() in LETTERS[: len(options)]:
        return a[0].upper()
    norm = [normalize_answer(o) for o in options]
    if normalize_answer(a) in norm:
        return LETTERS[norm.index(normalize_answer(a))]
    return None


def is_correct(answer: str, prediction: str | None, *, multiple_choice: bool,
               aliases: Sequence[str] = ()) -> bool:
    """Multiple choice: the predicted letter is the answer's. Open: the normalised
    prediction equals the normalised answer or one of its aliases."""
    if prediction is None:
        return False
    if multiple_choice:
        return prediction.strip().upper() == answer
    pred = normalize_answer(prediction)
    return bool(pred) and pred in {normalize_answer(a) for a in (answer, *aliases)}
