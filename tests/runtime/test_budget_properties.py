"""Property-based: the budget controller over random budgets, seeds and model behaviour.

A made-up model (`Script`) wants, at each step, one of the tokens that matter to the
controller (an ordinary word, a newline, `</think>`, a stop token, a NoWait word, an option
letter, "Answer", noise) drawn by hypothesis, with random logits underneath; the real decode
loop (`runtime.generation.decode_tokens`) runs it greedily or sampled. Whatever it wants:

- thinking holds at most B tokens before its `</think>`, and ends with `</think>`;
- the answer phase writes at most the answer budget plus the forced `Answer:` line;
- with `ensure_answer`, the answer text always parses (an option letter for multiple
  choice), and a forced answer is marked: `forced_answer`, a `force_answer` event, and the
  loop's reason "forced_answer";
- a banned token (control tokens, NoWait words and stop tokens while thinking) never comes out
  sampled.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runtime.answer import parse_answer
from runtime.budget import BudgetController, StageLimits
from runtime.generation import decode_tokens
from runtime.nowait import nowait_token_ids
from runtime.sampling import GREEDY, THINKING, Sampler
from runtime.tokenizer import decode

N_VOCAB = 151_936
OPTIONS = ("red", "green", "blue")
WANTS = ("word", "newline", "think_end", "stop", "nowait", "letter", "answer", "noise")
SETTINGS = settings(max_examples=60, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def nowait_ids(tok) -> np.ndarray:
    return nowait_token_ids(tok)  # scans the whole vocabulary: once, not per example


@pytest.fixture(scope="module")
def ids(tok, ctl_tokens, nowait_ids) -> dict[str, int]:
    c = ctl_tokens
    return {"word": tok.encode_plain(" the")[0], "newline": c.newline, "think_end": c.think_end,
            "stop": tok.token_id("<|im_end|>"), "nowait": int(nowait_ids[0]),
            "letter": tok.encode_plain(" B")[0], "answer": tok.encode_plain("Answer")[0]}


class Script:
    """Logits of a model that wants `wants[n % len]` after `n` fed tokens, over seeded noise."""

    def __init__(self, wants: list[str], ids: dict[str, int], seed: int, strength: float) -> None:
        self.wants, self.ids, self.strength = wants, ids, strength
        self.rng = np.random.default_rng(seed)

    def __call__(self, n: int) -> np.ndarray:
        logits = self.rng.normal(0.0, 1.0, N_VOCAB).astype(np.float32)
        want = self.wants[n % len(self.wants)]
        if want != "noise":
            logits[self.ids[want]] += self.strength
        return logits


def run(ctl: BudgetController, script: Script, sampler: Sampler) -> tuple[list, str]:
    fed = [0]

    def feed(token_id: int) -> np.ndarray:
        fed[0] += 1
        return script(fed[0])

    loop = decode_tokens(ctl, sampler, script(0), feed)
    steps = []
    limit = 10_000
    while True:
        try:
            steps.append(next(loop))
        except StopIteration as end:
            return steps, end.value
        assert len(steps) < limit, "the stage never ended"


scripts = st.lists(st.sampled_from(WANTS), min_size=1, max_size=12)


@SETTINGS
@given(budget=st.integers(0, 48), answer_budget=st.integers(0, 12), wants=scripts,
       seed=st.integers(0, 2**16), greedy=st.booleans(), strength=st.sampled_from([3.0, 30.0]),
       multiple_choice=st.booleans(), nowait=st.booleans())
def test_thinking_stays_within_its_budget_and_an_answer_always_comes(
        tok, ctl_tokens, nowait_ids, ids, budget, answer_budget, wants, seed, greedy, strength, multiple_choice, nowait):
    c = ctl_tokens
    options = OPTIONS if multiple_choice else None
    limits = StageLimits("answer", answer_budget, thinking_budget=budget, ensure_answer=True,
                         options=options, nowait=nowait)
    ctl = BudgetController(limits, c, tok, N_VOCAB, nowait_ids=nowait_ids)
    sampler = Sampler(GREEDY if greedy else THINKING, seed)
    steps, reason = run(ctl, Script(wants, ids, seed, strength), sampler)

    thinking = [s.token_id for s in steps if s.stage == "thinking"]
    answer = [s for s in steps if s.stage == "answer"]
    assert thinking and thinking[-1] == c.think_end  # thinking always closes
    assert len(thinking) - 1 <= budget and ctl.thinking_tokens <= budget
    assert c.think_end not in thinking[:-1]

    banned_thinking = {*c.never, *c.stop} | (set(nowait_ids.tolist()) if nowait else set())
    banned_thinking.discard(c.think_end)
    assert not [s for s in steps if s.stage == "thinking" and not s.forced and s.token_id in banned_thinking]
    assert not [s for s in answer if not s.forced and (s.token_id in c.never or s.token_id == c.think_end)]

    text = decode(tok, [s.token_id for s in answer])
    parsed = parse_answer(text, options)
    assert parsed.found, text
    if multiple_choice:
        assert parsed.value in "ABC", text
    sampled_answer = sum(not s.forced for s in answer)
    # after a forced "Answer:", one option letter, or a short free-form value
    assert sampled_answer <= answer_budget + (1 if multiple_choice else limits.forced_value_max)

    forced_events = [e for e in ctl.events if e.kind == "force_answer"]
    assert ctl.forced_answer == bool(forced_events) == (reason == "forced_answer")


@SETTINGS
@given(budget=st.integers(0, 48), answer_budget=st.integers(0, 12), wants=scripts, seed=st.integers(0, 2**16))
def test_without_ensure_answer_nothing_is_forced_after_thinking(tok, ctl_tokens, nowait_ids, ids, budget,
                                                              answer_budget, wants, seed):
    c = ctl_tokens
    ctl = BudgetController(StageLimits("answer", answer_budget, thinking_budget=budget), c, tok, N_VOCAB,
                           nowait_ids=nowait_ids)
    steps, reason = run(ctl, Script(wants, ids, seed, 30.0), Sampler(GREEDY, seed))
    answer = [s for s in steps if s.stage == "answer"]
    assert not ctl.forced_answer and reason != "forced_answer"
    assert not any(e.kind == "force_answer" for e in ctl.events)
    assert len(answer) <= answer_budget and not any(s.forced for s in answer)
    assert sum(1 for s in steps if s.stage == "thinking") <= budget + 1


def test_the_script_can_want_every_kind(ids):
    """The strategies reach every behaviour: each wanted token wins greedily at strength 30."""
    for want, n in zip(WANTS[:-1], itertools.count()):
        script = Script([want], ids, seed=n, strength=30.0)
        assert int(np.argmax(script(0))) == ids[want]
