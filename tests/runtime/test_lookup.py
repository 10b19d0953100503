"""Prompt lookup's parts without a model: the n-gram drafter and the acceptance rule."""

from __future__ import annotations

import numpy as np
import pytest

from runtime.errors import InputError
from runtime.lookup import MAX_LOOKUP, PromptLookup, check_lookup
from runtime.sampling import Sampler, SamplingConfig

# ---- the drafter -----------------------------------------------------------------------


def test_drafts_what_followed_the_latest_longest_match():
    # "1 2 3 4 5" then "9 1 2 3 7", then the text ends in "1 2 3": the 3-gram's latest
    # earlier occurrence is followed by 7 (not by the older 4 5)
    d = PromptLookup([1, 2, 3, 4, 5, 9, 1, 2, 3, 7, 8, 1, 2, 3], k=3)
    assert d.draft() == [7, 8, 1]


def test_longer_ngrams_win_over_more_recent_shorter_ones():
    # the 2-gram (5, 6) occurs once, followed by 7; the 1-gram 6 occurs later, followed by 0
    d = PromptLookup([5, 6, 7, 8, 6, 0, 5, 6], k=2)
    assert d.draft() == [7, 8]


def test_the_suffix_never_matches_itself_and_no_match_is_empty():
    assert PromptLookup([1, 2, 3], k=4).draft() == []
    d = PromptLookup([4, 4], k=4)
    assert d.draft() == [4]  # the earlier 4 is followed by the last one only


def test_push_extends_the_text_and_k_and_limit_cap_the_draft():
    d = PromptLookup([10, 11, 12, 13, 14, 15], k=3)
    assert d.draft() == []
    d.push(11)
    assert d.draft() == [12, 13, 14]
    assert d.draft(limit=2) == [12, 13]
    assert d.draft(limit=0) == []


def test_image_positions_never_match_and_end_a_draft():
    d = PromptLookup([7, None, None, 8, 7], k=4)
    assert d.draft() == []  # 7 was followed by an image position
    d = PromptLookup([3, 4, None, 5, 3], k=4)
    assert d.draft() == [4]


def test_ngram_min_drops_single_token_matches():
    assert PromptLookup([1, 2, 9, 1], k=2, ngram_min=2).draft() == []
    assert PromptLookup([1, 2, 9, 1], k=2, ngram_min=1).draft() == [2, 9]


@pytest.mark.parametrize("bad", [-1, MAX_LOOKUP + 1, 2.0, True, "4", None])
def test_check_lookup_refuses_bad_values(bad):
    with pytest.raises(InputError, match="lookup must be an integer"):
        check_lookup(bad)
    assert check_lookup(0) == 0 and check_lookup(MAX_LOOKUP) == MAX_LOOKUP


# ---- the acceptance rule ----------------------------------------------------------------

LOGITS = np.log(np.asarray([0.40, 0.25, 0.15, 0.10, 0.06, 0.04], dtype=np.float32))
CONFIGS = {
    "temperature": SamplingConfig(temperature=1.0),
    "top_p": SamplingConfig(temperature=0.8, top_p=0.8),
    "top_k": SamplingConfig(temperature=1.3, top_k=3),
}
N = 20000


def _empirical(draw, n: int = N) -> np.ndarray:
    counts = np.bincount([draw() for _ in range(n)], minlength=LOGITS.shape[0])
    return counts / n


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_distribution_is_what_the_sampler_samples(name):
    sampler = Sampler(CONFIGS[name], seed=1)
    ids, p = sampler.distribution(LOGITS.copy())
    want = np.zeros(LOGITS.shape[0])
    want[ids] = p
    got = _empirical(lambda: sampler(LOGITS.copy()))
    assert np.abs(got - want).max() < 0.015, (got, want)
    if name == "top_k":
        assert set(ids.tolist()) == {0, 1, 2}
    if name == "top_p":
        assert 5 not in ids  # outside the nucleus


@pytest.mark.parametrize("name", sorted(CONFIGS))
@pytest.mark.parametrize("draft", [0, 2, 5])  # likely, unlikely, outside top-k / top-p
def test_speculative_acceptance_keeps_the_distribution(name, draft):
    """Accept the draft with probability p(draft), else sample p without it: the emitted
    token's distribution is p whatever the draft (a rule that resampled from p on
    rejection would give p(draft) + (1 - p(draft)) p(draft) instead)."""
    sampler = Sampler(CONFIGS[name], seed=2)
    ids, p = sampler.distribution(LOGITS.copy())
    want = np.zeros(LOGITS.shape[0])
    want[ids] = p
    got = _empirical(lambda: sampler.speculative(LOGITS.copy(), draft))
    assert np.abs(got - want).max() < 0.015, (got, want)


def test_speculative_respects_the_mask_and_greedy_is_the_argmax():
    masked = LOGITS.copy()
    masked[0] = -np.inf  # what the budget controller does to a banned token
    sampler = Sampler(SamplingConfig(temperature=1.0), seed=3)
    assert all(sampler.speculative(masked.copy(), 0) != 0 for _ in range(500))
    greedy = Sampler(SamplingConfig(), seed=3)
    assert greedy.speculative(LOGITS.copy(), 3) == 0
    assert greedy.speculative(masked, 1) == 1
