"""The budget controller on synthetic logits: the paper's schedule, NoWait, forced answers.

The controller's contract is "numpy logits in, masked logits / forced tokens out", so
these tests drive it with logits they construct; the same invariants are checked on the
real backends in test_budget_invariants.py.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from runtime.answer import parse_answer
from runtime.budget import BudgetController, StageLimits
from runtime.errors import InputError
from runtime.generation import decode_tokens
from runtime.nowait import nowait_token_ids
from runtime.sampling import GREEDY, THINKING, Sampler
from runtime.tokenizer import decode

N_VOCAB = 151_936


def drive(ctl: BudgetController, logits_fn, sampler=None, max_steps=10_000):
    """The real decode loop (`generation.decode_tokens`) over logits `logits_fn(n)` made up
    for the model having been fed `n` tokens; returns the emitted (stage, token id) pairs."""
    fed: list[int] = []

    def feed(token_id: int) -> np.ndarray:
        fed.append(token_id)
        return logits_fn(len(fed)).astype(np.float32)

    steps = decode_tokens(ctl, sampler or Sampler(GREEDY), logits_fn(0).astype(np.float32), feed)
    out = [(step.stage, step.token_id) for step in itertools.islice(steps, max_steps)]
    assert ctl.done, "the controller never ended the stage"
    return out


def prefer(token_id: int, base=None):
    def fn(step):
        logits = np.zeros(N_VOCAB, dtype=np.float32) if base is None else base.copy()
        logits[token_id] = 20.0
        return logits
    return fn


def test_control_tokens(tok, ctl_tokens):
    c = ctl_tokens
    assert set(c.stop) == {tok.token_id("<|im_end|>"), tok.token_id("<|endoftext|>")}
    assert c.think_start == 151667 and c.think_end == 151668
    assert tok.token_id("<|im_start|>") in c.never and tok.token_id("<|image_pad|>") in c.never
    assert c.think_start in c.never and c.think_end not in c.never
    assert c.newline == tok.encode_plain("\n")[0]
    assert c.vocab_size == 151_669 and c.can_think


@pytest.mark.parametrize("budget", [20, 100])
def test_forcing_schedule(tok, ctl_tokens, budget):
    word = tok.encode_plain(" the")[0]
    ctl = BudgetController(StageLimits("answer", 5, thinking_budget=budget), ctl_tokens, tok, N_VOCAB)
    out = drive(ctl, prefer(word))
    thinking = [t for s, t in out if s == "thinking"]
    assert thinking[-1] == ctl_tokens.think_end
    assert len(thinking) - 1 == budget == ctl.thinking_tokens
    assert thinking[budget - 1] == ctl_tokens.newline  # at budget-1 only a newline
    assert all(t == word for t in thinking[: budget - 1])
    kinds = {e.kind: e for e in ctl.events}
    boost_at = math.ceil(0.95 * budget)
    if boost_at < budget - 1:
        assert kinds["boost"].position == boost_at
    else:  # a short budget reaches the forced newline before 95%
        assert "boost" not in kinds
    assert kinds["force_newline"].position == budget - 1
    assert kinds["force_think_end"].position == budget


def test_boost_factor(tok, ctl_tokens):
    ctl = BudgetController(StageLimits("answer", 5, thinking_budget=100), ctl_tokens, tok, N_VOCAB)
    ctl.thinking_tokens = 96
    logits = np.zeros(N_VOCAB, dtype=np.float32)
    logits[ctl_tokens.think_end] = 2.0
    logits[ctl_tokens.newline] = -2.0
    ctl.apply(logits)
    assert logits[ctl_tokens.think_end] == pytest.approx(2.0 * 1.96)
    assert logits[ctl_tokens.newline] == pytest.approx(-2.0 / 1.96)  # moved up, not down
    ctl.thinking_tokens = 90  # below 95%: untouched
    logits[:] = 0
    logits[ctl_tokens.think_end] = 2.0
    ctl.apply(logits)
    assert logits[ctl_tokens.think_end] == 2.0


def test_budget_zero_closes_thinking_at_once(tok, ctl_tokens):
    ctl = BudgetController(StageLimits("answer", 4, thinking_budget=0), ctl_tokens, tok, N_VOCAB)
    out = drive(ctl, prefer(tok.encode_plain(" x")[0]))
    assert out[0] == ("thinking", ctl_tokens.think_end)
    assert ctl.thinking_tokens == 0


def test_budget_one_is_a_newline(tok, ctl_tokens):
    ctl = BudgetController(StageLimits("answer", 4, thinking_budget=1), ctl_tokens, tok, N_VOCAB)
    out = drive(ctl, prefer(tok.encode_plain(" x")[0]))
    assert [t for _, t in out[:2]] == [ctl_tokens.newline, ctl_tokens.think_end]


def test_model_closing_thinking_itself(tok, ctl_tokens):
    word = tok.encode_plain(" ok")[0]

    def fn(step):
        return prefer(ctl_tokens.think_end if step == 3 else word)(step)

    ctl = BudgetController(StageLimits("answer", 3, thinking_budget=50), ctl_tokens, tok, N_VOCAB)
    out = drive(ctl, fn)
    assert ctl.thinking_tokens == 3
    assert out[3] == ("thinking", ctl_tokens.think_end)
    assert [e.kind for e in ctl.events][0] == "think_closed"


def test_nowait_and_stop_tokens_are_banned_while_thinking(tok, ctl_tokens):
    banned = nowait_token_ids(tok)
    wait = tok.encode_plain(" Wait")[0]
    base = np.zeros(N_VOCAB, dtype=np.float32)
    base[banned] = 30.0  # the model wants to reflect...
    base[list(ctl_tokens.stop)] = 40.0  # ...or to stop without closing its thinking
    base[tok.encode_plain(" so")[0]] = 10.0

    ctl = BudgetController(StageLimits("answer", 2, thinking_budget=30), ctl_tokens, tok, N_VOCAB)
    out = drive(ctl, lambda step: base.copy(), Sampler(THINKING, 0))
    thinking = [t for s, t in out if s == "thinking"]
    assert not set(thinking) & set(banned.tolist())
    assert not set(thinking) & set(ctl_tokens.stop)
    assert ctl.thinking_tokens == 30
    kinds = [e.kind for e in ctl.events]
    assert "special_blocked" in kinds
    base[list(ctl_tokens.stop)] = 0
    ctl = BudgetController(StageLimits("answer", 2, thinking_budget=5), ctl_tokens, tok, N_VOCAB)
    drive(ctl, lambda step: base.copy())
    assert any(e.kind == "nowait_blocked" for e in ctl.events)
    # NoWait applies to thinking only: the same token may appear in the answer.
    ctl = BudgetController(StageLimits("answer", 3), ctl_tokens, tok, N_VOCAB)
    out = drive(ctl, prefer(wait))
    assert out[0][1] == wait


def test_nowait_can_be_switched_off(tok, ctl_tokens):
    wait = tok.encode_plain(" Wait")[0]
    ctl = BudgetController(StageLimits("answer", 3, thinking_budget=5, nowait=False), ctl_tokens, tok, N_VOCAB)
    out = drive(ctl, prefer(wait))
    assert out[0] == ("thinking", wait)


def test_answer_phase_bans_control_tokens(tok, ctl_tokens):
    base = np.zeros(N_VOCAB, dtype=np.float32)
    base[[ctl_tokens.think_start, ctl_tokens.think_end, tok.token_id("<|im_start|>"),
          tok.token_id("<|image_pad|>"), 151_700]] = 50.0
    ctl = BudgetController(StageLimits("extraction", 10), ctl_tokens, tok, N_VOCAB)
    out = drive(ctl, lambda s: base.copy(), Sampler(THINKING, 1))
    emitted = {t for _, t in out}
    assert not emitted & {ctl_tokens.think_start, ctl_tokens.think_end, tok.token_id("<|im_start|>"),
                          tok.token_id("<|image_pad|>")}
    assert max(emitted) < ctl_tokens.vocab_size
    assert len(out) == 10 and ctl.events[-1].kind == "budget_exhausted"


def test_stop_token_ends_a_plain_stage(tok, ctl_tokens):
    ctl = BudgetController(StageLimits("hint", 10), ctl_tokens, tok, N_VOCAB)
    out = drive(ctl, prefer(tok.token_id("<|im_end|>")))
    assert out == [] and ctl.done


@pytest.mark.parametrize("answer_budget", [0, 1, 5])
def test_forced_answer_multiple_choice(tok, ctl_tokens, answer_budget):
    """A model that never answers (it only wants to stop) still yields an option letter."""
    options = ("red", "green", "blue")
    ctl = BudgetController(
        StageLimits("answer", answer_budget, thinking_budget=3, ensure_answer=True, options=options),
        ctl_tokens, tok, N_VOCAB,
    )
    im_end = tok.token_id("<|im_end|>")
    zzz = tok.encode_plain(" zzz")[0]
    out = drive(ctl, lambda step: prefer(im_end if step % 2 else zzz)(step))
    answer = decode(tok, [t for s, t in out if s == "answer"])
    p = parse_answer(answer, options)
    assert p.found and p.value in "ABC", answer
    assert any(e.kind == "force_answer" for e in ctl.events)
    assert ctl.thinking_tokens <= 3


def test_forced_answer_free_form(tok, ctl_tokens):
    im_end = tok.token_id("<|im_end|>")
    nl = ctl_tokens.newline
    base = np.zeros(N_VOCAB, dtype=np.float32)
    base[[im_end, nl, tok.encode_plain(" ")[0]]] = 30.0  # wants to stop, newline or print blanks
    base[tok.encode_plain(" seven")[0]] = 5.0
    ctl = BudgetController(StageLimits("answer", 0, ensure_answer=True), ctl_tokens, tok, N_VOCAB)
    out = drive(ctl, lambda s: base.copy())
    text = decode(tok, [t for _, t in out])
    p = parse_answer(text)
    assert p.found and p.value == "seven", text


def test_no_forcing_when_the_model_answers(tok, ctl_tokens):
    ids = tok.encode_plain("Answer: B") + [tok.token_id("<|im_end|>")]
    ctl = BudgetController(StageLimits("answer", 20, ensure_answer=True, options=("x", "y")), ctl_tokens,
                           tok, N_VOCAB)
    out = drive(ctl, lambda step: prefer(ids[step])(step))
    assert decode(tok, [t for _, t in out]) == "Answer: B"
    assert not any(e.kind == "force_answer" for e in ctl.events)


def test_fit_context_shrinks_thinking_first(tok, ctl_tokens):
    ctl = BudgetController(StageLimits("answer", 50, thinking_budget=200, ensure_answer=True,
                                       options=("a", "b")), ctl_tokens, tok, N_VOCAB)
    full = ctl.max_new_tokens()
    ctl.fit_context(full - 30)
    assert ctl.thinking_budget == 170 and ctl.answer_budget == 50
    ctl.fit_context(40)
    assert ctl.thinking_budget == 0 and ctl.max_new_tokens() <= 40
    assert [e.kind for e in ctl.events] == ["context_clamp", "context_clamp"]


@pytest.mark.parametrize("kw", [{"max_tokens": -1}, {"max_tokens": 3, "thinking_budget": -5},
                                {"max_tokens": 1.5}, {"max_tokens": 3, "boost_from": 2.0}])
def test_invalid_limits(kw):
    with pytest.raises(InputError):
        StageLimits("answer", **kw)


def test_thinking_needs_think_tokens(tok, ctl_tokens):
    from dataclasses import replace

    no_think = replace(ctl_tokens, think_start=None, think_end=None)
    with pytest.raises(InputError):
        BudgetController(StageLimits("answer", 3, thinking_budget=3), no_think, tok, N_VOCAB)
