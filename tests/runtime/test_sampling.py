"""Sampling: greedy, temperature / top-k / top-p with a seed, on small and Qwen-wide vocabularies."""

from __future__ import annotations

import numpy as np
import pytest

from runtime.errors import InputError
from runtime.sampling import GREEDY, NON_THINKING, PRESETS, THINKING, Sampler, SamplingConfig


def _draw(cfg: SamplingConfig, logits: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    s = Sampler(cfg, seed)
    return np.array([s(logits.copy()) for _ in range(n)])


def test_paper_presets():
    assert (THINKING.temperature, THINKING.top_p) == (0.6, 0.95)
    assert (NON_THINKING.temperature, NON_THINKING.top_p) == (0.7, 0.8)
    assert GREEDY.greedy and not THINKING.greedy
    assert PRESETS["thinking"] is THINKING and PRESETS["non-thinking"] is NON_THINKING


def test_greedy_is_argmax_and_ignores_masked():
    logits = np.array([0.1, 5.0, -np.inf, 4.9], dtype=np.float32)
    assert Sampler(GREEDY)(logits) == 1
    logits[1] = -np.inf
    assert Sampler(GREEDY)(logits) == 3
    assert Sampler(SamplingConfig(temperature=1.0, top_k=1))(logits) == 3


def test_seed_makes_runs_reproducible():
    logits = np.random.default_rng(1).standard_normal(500).astype(np.float32)
    a = _draw(THINKING, logits, 200, seed=7)
    b = _draw(THINKING, logits, 200, seed=7)
    c = _draw(THINKING, logits, 200, seed=8)
    assert (a == b).all()
    assert (a != c).any()


def test_top_p_keeps_the_smallest_nucleus_and_renormalises():
    probs = np.array([0.5, 0.3, 0.15, 0.05])
    logits = np.log(probs).astype(np.float32)
    draws = _draw(SamplingConfig(temperature=1.0, top_p=0.8), logits, 4000)
    assert set(draws.tolist()) == {0, 1}  # 0.5 + 0.3 reaches 0.8
    frac0 = (draws == 0).mean()
    assert abs(frac0 - 0.5 / 0.8) < 0.03
    draws = _draw(SamplingConfig(temperature=1.0, top_p=0.81), logits, 4000)
    assert set(draws.tolist()) == {0, 1, 2}


def test_temperature_matches_softmax():
    logits = np.array([2.0, 1.0, 0.0, -1.0], dtype=np.float32)
    t = 0.7
    want = np.exp(logits / t) / np.exp(logits / t).sum()
    draws = _draw(SamplingConfig(temperature=t), logits, 20000, seed=3)
    got = np.bincount(draws, minlength=4) / len(draws)
    assert np.abs(got - want).max() < 0.015


def test_top_k_limits_candidates():
    logits = np.arange(100, dtype=np.float32) / 10.0
    draws = _draw(SamplingConfig(temperature=1.0, top_k=3), logits, 2000)
    assert set(draws.tolist()) <= {97, 98, 99}
    assert len(set(draws.tolist())) == 3


def test_wide_vocabulary_with_masks_never_picks_a_masked_token():
    rng = np.random.default_rng(0)
    n = 151_936
    logits = (rng.standard_normal(n) * 4).astype(np.float32)
    banned = rng.choice(n, 5000, replace=False)
    logits[banned] = -np.inf
    logits[151_669:] = -np.inf
    for cfg in (THINKING, NON_THINKING, SamplingConfig(0.8, 1.0, 0), SamplingConfig(0.8, 0.9, 40)):
        draws = _draw(cfg, logits, 200, seed=1)
        assert not np.isin(draws, banned).any()
        assert (draws < 151_669).all()


def test_flat_distribution_still_samples_from_the_nucleus():
    n = 151_936
    logits = np.zeros(n, dtype=np.float32)
    logits[:10] = 50.0  # ten tokens hold all the mass
    draws = _draw(THINKING, logits, 50)
    assert (draws < 10).all()


def test_everything_masked_is_an_error():
    logits = np.full(10, -np.inf, dtype=np.float32)
    with pytest.raises(RuntimeError):
        Sampler(THINKING)(logits)


@pytest.mark.parametrize("kwargs", [{"temperature": -1.0}, {"top_p": 0.0}, {"top_p": 1.5}, {"top_k": -2},
                                    {"temperature": float("nan")}])
def test_invalid_configs_are_rejected(kwargs):
    with pytest.raises(InputError):
        SamplingConfig(**kwargs)


def test_cache_key_identifies_all_greedy_configs():
    assert SamplingConfig(0.0, 0.5, 7).key() == GREEDY.key() == SamplingConfig(1.0, 1.0, 1).key()
    assert THINKING.key() != NON_THINKING.key()
