"""Budget invariants on every backend, over budgets (0, 1, small, large) and sampling seeds.

- thinking tokens never exceed the thinking budget;
- a banned token (NoWait while thinking, stop tokens while thinking, control tokens and
  embedding padding rows always) is never emitted;
- an answer is always produced, also with budget 0 and when the model would never close
  its thinking or never write an answer line (random-weight models do neither).
"""

from __future__ import annotations

import collections
import re

import numpy as np
import pytest

from runtime.nowait import NOWAIT_KEYWORDS, normalize_piece, nowait_token_ids
from runtime.pipeline import ExtractThink
from runtime.prompts import LETTERS
from runtime.result import TokenEvent

BACKENDS = ("llamacpp", "onnx")
BUDGETS = (0, 1, 7, 40)
SEEDS = (0, 1, 2)
OPTIONS = ("a red circle", "a blue square", "a green star")
QUESTION = "Which shape is on the left?"


@pytest.fixture(scope="module")
def image():
    return (np.random.default_rng(11).random((40, 40, 3)) * 255).astype(np.uint8)


def _thinking_ids(events) -> list[int]:
    return [e.token_id for e in events if isinstance(e, TokenEvent) and e.stage == "thinking" and e.token_id >= 0]


@pytest.fixture(scope="module", params=BACKENDS)
def setup(request, rt_bundle, image):
    """(pipeline with NoWait keywords the model actually likes, the words that were chosen)."""
    common = dict(backend=request.param, threads=1, kv_cache_type="f32")
    probe = ExtractThink.load(rt_bundle, **common)
    tok = probe.tokenizer("reasoner")
    control = probe.control_tokens("reasoner")
    skip = {*control.never, *control.stop, control.think_end}
    counts: collections.Counter[str] = collections.Counter()
    for seed in SEEDS:
        events = list(probe.stream(image, QUESTION, OPTIONS, thinking_budget=60, nowait=False, seed=seed,
                                   hint=False, extraction_budget=8, answer_budget=8))
        for tid in _thinking_ids(events):
            if tid in skip:
                continue
            word = normalize_piece(tok.token_bytes(tid).decode("utf-8", "replace"))
            if re.fullmatch(r"[a-z]+", word):
                counts[word] += 1
    probe.close()
    liked = [w for w, _ in counts.most_common(3)]
    assert liked, "the probe produced no word tokens while thinking"
    et = ExtractThink.load(rt_bundle, nowait_keywords=(*NOWAIT_KEYWORDS, *liked), **common)
    yield et, liked
    et.close()


def test_nowait_removes_what_the_model_wanted(setup, image):
    """The same requests that made the model write the liked words, with NoWait on."""
    et, liked = setup
    tok = et.tokenizer("reasoner")
    banned = set(et.nowait_ids("reasoner").tolist())
    liked_ids = set(nowait_token_ids(tok, liked).tolist())
    assert liked_ids and banned >= liked_ids
    hits = {True: 0, False: 0}
    for nowait in (False, True):
        for seed in SEEDS:
            events = list(et.stream(image, QUESTION, OPTIONS, thinking_budget=60, nowait=nowait, seed=seed,
                                    hint=False, extraction_budget=8, answer_budget=8))
            hits[nowait] += sum(1 for t in _thinking_ids(events) if t in liked_ids)
    assert hits[False] > 0 and hits[True] == 0


@pytest.mark.parametrize("options", [OPTIONS, None], ids=["mc", "free"])
def test_invariants_over_budgets_and_seeds(setup, image, options):
    et, _ = setup
    ctl = et.control_tokens("reasoner")
    banned_thinking = set(et.nowait_ids("reasoner").tolist()) | set(ctl.stop) | set(ctl.never)
    never = set(ctl.never)
    kinds: set[str] = set()
    for budget in BUDGETS:
        for seed in SEEDS:
            events = list(et.stream(image, QUESTION, options, thinking_budget=budget, seed=seed,
                                    hint_budget=4, extraction_budget=8, answer_budget=6))
            result = events[-1].result
            thinking = _thinking_ids(events)
            # exactly one </think>, last; everything before it counts against the budget
            assert thinking and thinking[-1] == ctl.think_end and thinking.count(ctl.think_end) == 1
            assert len(thinking) - 1 <= budget
            assert result.stages["thinking"].tokens == len(thinking) - 1 <= budget
            assert not set(thinking[:-1]) & banned_thinking
            emitted = [e.token_id for e in events if isinstance(e, TokenEvent) and e.token_id >= 0]
            assert not set(emitted) & never
            assert max(emitted) < ctl.vocab_size  # no embedding padding rows
            assert result.answer_found, (budget, seed, result.answer_text)
            if options:
                assert result.answer in LETTERS[: len(options)]
            else:
                assert result.answer
            kinds |= {e.kind for e in result.budget_events}
    # The sweep exercised budget forcing, a forced answer and the NoWait ban.
    assert {"force_think_end", "force_answer"} <= kinds
    assert "nowait_blocked" in kinds or "special_blocked" in kinds


def test_answer_without_thinking(setup, image):
    et, _ = setup
    for seed in SEEDS:
        result = et.answer(image, QUESTION, OPTIONS, thinking=False, seed=seed, hint=False,
                           extraction_budget=4, answer_budget=0)
        assert result.thinking is None and "thinking" not in result.stages
        assert result.answer_found and result.answer in "ABC"
