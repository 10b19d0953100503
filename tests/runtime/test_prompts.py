"""`prompts.shared_start`: the fixed start of a kind of prompt, the same for every request."""

from __future__ import annotations

import pytest

from runtime import prompts
from runtime.chat_format import Special, Text


def test_shared_start_stops_before_the_requests_own_text():
    start = prompts.shared_start(lambda q: prompts.hint_prompt(q))
    assert start[0] == Special("<|im_start|>")
    assert start[-1].text.startswith("user\nA question about an image follows.")
    assert start[-1].text.endswith("\nQuestion:")  # the space before the question is left out
    reasoning = prompts.shared_start(lambda d: prompts.reasoning_prompt(d, "q", ["a", "b"], thinking=True))
    assert reasoning[-1] == Text(f"user\n{prompts.REASONER_ROLE}\n\nDescription:")
    # every prompt of the kind starts with it, whatever the request's text
    for question in ("How many?", "(a) or (b)?", "  x  "):
        full = prompts.hint_prompt(question)
        assert full[0] == start[0] and full[1].text.startswith(start[1].text)


def test_a_builder_that_ignores_its_text_is_refused():
    with pytest.raises(ValueError, match="does not contain"):
        prompts.shared_start(lambda _: prompts.hint_prompt("fixed"))
