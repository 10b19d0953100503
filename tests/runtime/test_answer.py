"""Answer parsing: the `Answer:` line, multiple-choice letters and option texts, free form."""

from __future__ import annotations

import pytest

from runtime.answer import has_answer, match_option, parse_answer

OPTS = ("one", "two", "three", "four")


@pytest.mark.parametrize(
    "text, letter",
    [
        ("Some reasoning.\nAnswer: B", "B"),
        ("answer:c", "C"),
        ("ANSWER :  (D)", "D"),
        ("Answer: B. two", "B"),
        ("Answer: **C**", "C"),
        ("Answer: b", "B"),
        ("Answer: three", "C"),
        ("Answer: The answer is two.", "B"),
        ("Answer: \\boxed{A}", "A"),
        ("So the final Answer: Answer: D", "D"),
    ],
)
def test_multiple_choice(text, letter):
    p = parse_answer(text, OPTS)
    assert p.found and p.value == letter and p.letter == letter


def test_last_line_wins_then_earlier_lines():
    assert parse_answer("Answer: A\nthinking more\nAnswer: C", OPTS).value == "C"
    p = parse_answer("Answer: A\nI am fairly sure.", OPTS)
    assert p.value == "A" and p.source == "answer_anywhere"


def test_out_of_range_or_unmatched_is_not_found():
    assert not parse_answer("Answer: E", OPTS).found
    assert not parse_answer("Answer: five", OPTS).found
    assert not parse_answer("Answer: one or two", OPTS).found  # ambiguous
    assert not parse_answer("no answer here", OPTS).found
    assert not parse_answer("", OPTS).found


def test_letter_followed_by_another_options_text():
    assert match_option("A cat", ["dog", "cat"]) == "B"
    assert match_option("B. cat", ["dog", "cat"]) == "B"
    assert match_option("a cat", ["a dog", "a cat"]) == "B"


def test_lowercase_article_is_not_a_letter():
    assert match_option("a", OPTS) == "A"
    assert match_option("a cat", ["x", "y"]) is None


def test_free_form():
    p = parse_answer("Let me see.\nAnswer: a red \"circle\".")
    assert p.found and p.value == 'a red "circle"'
    p = parse_answer("Answer: '42'")
    assert p.value == "42"
    assert not parse_answer("Answer:   ").found


def test_bare_answers_only_when_allowed():
    assert not parse_answer("B", OPTS).found
    p = parse_answer("B", OPTS, allow_bare=True)
    assert p.found and p.value == "B" and p.source == "last_line"
    assert parse_answer("blue\n", None, allow_bare=True).value == "blue"


def test_has_answer():
    assert has_answer("x\nAnswer: A", OPTS)
    assert not has_answer("x\nAnswer: banana", OPTS)
    assert has_answer("x\nAnswer: banana")
