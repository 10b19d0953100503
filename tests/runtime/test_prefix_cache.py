"""The image-prefix cache: saved KV states restore exactly, on both backends, and a second
question on the same image skips the vision encoder and the image prefill."""

from __future__ import annotations

import numpy as np
import pytest

from runtime.backends import choose_artifact, load_model
from runtime.backends.base import BackendOptions, PrefixState
from runtime.errors import InputError
from runtime.pipeline import ExtractThink
from runtime.prefix_cache import PrefixCache, PrefixKey
from runtime.result import TokenEvent
from runtime.sampling import Sampler, SamplingConfig

BACKENDS = ("llamacpp", "onnx")
OPTIONS = ["one", "two", "three", "four"]
SMALL = dict(hint=False, extraction_budget=12, thinking_budget=6, answer_budget=4)
# The tiny random model's greedy extraction is one token repeated whatever the image, so
# equal greedy tokens alone would not show a wrong restore; hot sampling with a fixed seed
# follows every logit and does.
HOT = SamplingConfig(temperature=3.0)


def _image(seed: int) -> np.ndarray:
    return (np.random.default_rng(seed).random((40, 56, 3)) * 255).astype(np.uint8)


def _extraction_ids(et: ExtractThink, image: np.ndarray, focus: str, sampling: object = "greedy",
                    ) -> tuple[list[int], object]:
    ids, result = [], None
    for ev in et.stream(image, "What is shown?", OPTIONS, focus=focus, sampling=sampling, seed=3, **SMALL):
        if isinstance(ev, TokenEvent) and ev.stage == "extraction":
            ids.append(ev.token_id)
        result = getattr(ev, "result", result)
    return ids, result


# ---- the backends' save_state / load_state ------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_restored_state_gives_bit_identical_logits(rt_bundle, backend):
    opts = BackendOptions(threads=1, context_length=256)
    _, art = choose_artifact(rt_bundle, "perception", backend, None)
    lm, vision = load_model(rt_bundle, "perception", backend, art, opts)
    rng = np.random.default_rng(0)
    width = rt_bundle.model("perception").text.hidden_size
    image = (rng.standard_normal((16, width)) * 0.5).astype(np.float32)
    suffix = [5, 9, 17, 33, 2]
    lm.feed_tokens([3, 4])
    lm.feed_embeddings(image)
    state = lm.save_state()
    assert state.n_past == 18 and state.nbytes > 0
    cold = [lm.feed_tokens(suffix)] + [lm.feed_tokens([t]) for t in (7, 8)]
    lm.feed_tokens([11, 12])  # more positions: the restore must drop them
    lm.load_state(state)
    assert lm.n_past == 18
    warm = [lm.feed_tokens(suffix)] + [lm.feed_tokens([t]) for t in (7, 8)]
    for a, b in zip(cold, warm, strict=True):
        assert np.array_equal(a, b)
    # the state outlives the model that saved it: restore into a freshly loaded one
    lm.close()
    if vision is not None:
        vision.close()
    lm2, vision2 = load_model(rt_bundle, "perception", backend, art, opts)
    try:
        lm2.load_state(state)
        fresh = [lm2.feed_tokens(suffix)] + [lm2.feed_tokens([t]) for t in (7, 8)]
        for a, b in zip(cold, fresh, strict=True):
            assert np.array_equal(a, b)
        other = PrefixState(n_past=state.n_past, nbytes=state.nbytes, owner="another model", data=state.data)
        with pytest.raises(InputError, match="saved by another model"):
            lm2.load_state(other)
    finally:
        lm2.close()
        if vision2 is not None:
            vision2.close()


# ---- the LRU ---------------------------------------------------------------------------------


def _state(nbytes: int) -> PrefixState:
    return PrefixState(n_past=4, nbytes=nbytes, owner="x", data=np.zeros(nbytes, np.uint8))


def _key(name: str) -> PrefixKey:
    return PrefixKey(name, "art", "f16", (1, None, None))


def test_lru_is_bounded_by_bytes():
    cache = PrefixCache(100)
    assert cache.enabled
    cache.put_state(_key("a"), _state(40))
    cache.put_state(_key("b"), _state(40))
    assert cache.get_state(_key("a")) is not None  # a is now the most recently used
    cache.put_state(_key("c"), _state(40))  # 120 > 100: the least recently used (b) goes
    assert _key("b") not in cache and _key("a") in cache and _key("c") in cache
    assert cache.nbytes == 80 and cache.stats.evictions == 1
    cache.put_state(_key("huge"), _state(101))  # larger than the whole cache: not kept
    assert _key("huge") not in cache and cache.nbytes == 80
    cache.drop(_key("a"))
    assert _key("a") not in cache and cache.nbytes == 40
    assert not PrefixCache(0).enabled


def test_prefix_cache_option_is_checked(rt_bundle):
    for bad in (-1, 1.5, True):
        with pytest.raises(InputError, match="prefix_cache_mb"):
            ExtractThink.load(rt_bundle, prefix_cache_mb=bad)


# ---- through the pipeline --------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("residency", ["resident", "sequential"])
def test_warm_second_question_equals_a_cold_run(rt_bundle, backend, residency):
    a, b = _image(11), _image(12)
    with ExtractThink.load(rt_bundle, backend=backend, threads=1, prefix_cache_mb=0) as cold_et:
        cold_ids, cold = _extraction_ids(cold_et, a, "the colours")
        hot_cold_ids, _ = _extraction_ids(cold_et, a, "the colours", HOT)
        hot_b_ids, _ = _extraction_ids(cold_et, b, "the colours", HOT)
    assert "prefix" not in cold.cache_hits and not cold.stages["vision"].cached
    assert hot_cold_ids != hot_b_ids  # the sampled tokens do depend on the image's KV state
    with ExtractThink.load(rt_bundle, backend=backend, threads=1, residency=residency) as et:
        _, first = _extraction_ids(et, a, "the shapes")
        assert first.cache_hits["prefix"] is False and not first.stages["vision"].cached
        assert len(et.prefix_cache) == 2  # the image prefix and the reasoning prompt's start
        _, other = _extraction_ids(et, b, "the shapes")  # another image: a miss, a second entry
        assert other.cache_hits["prefix"] is False and other.cache_hits["embedding"] is False
        assert len(et.prefix_cache) == 3
        warm_ids, warm = _extraction_ids(et, a, "the colours")
        _, _ = _extraction_ids(et, b, "the shapes", HOT)  # b's prefix in the context again
        hot_warm_ids, hot_warm = _extraction_ids(et, a, "the colours", HOT)
    assert warm_ids == cold_ids and warm.extraction == cold.extraction
    assert hot_warm_ids == hot_cold_ids and hot_warm.cache_hits["prefix"] is True
    assert warm.cache_hits["prefix"] is True and warm.cache_hits["embedding"] is True
    assert warm.stages["vision"].cached and warm.stages["vision"].tokens == 16
    # the restored prefix (system + header + 16 image rows) was not prefilled again
    assert warm.stages["extraction"].reused_prompt_tokens >= 16 + 3
    assert cold.stages["extraction"].reused_prompt_tokens == 0
    assert warm.stages["extraction"].prompt_tokens == cold.stages["extraction"].prompt_tokens


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_saved_prefix_runs_through_the_extraction_instruction(rt_bundle, backend):
    """The state is kept after the fixed instruction that follows the image, so a second
    focus prefills only its own words; a request without a focus (no hint) shares only the
    image rows and keys its own prefix."""
    from runtime import prompts
    from runtime.tokenizer import BundleTokenizer, encode_segments

    entry = rt_bundle.model("perception")
    tok = BundleTokenizer(rt_bundle.path(entry.tokenizer))
    start = encode_segments(tok, prompts.shared_start(lambda f: prompts.extraction_prompt(
        f, system=entry.system_prompt)), image_tokens=16)
    a = _image(13)
    with ExtractThink.load(rt_bundle, backend=backend, threads=1) as et:
        _extraction_ids(et, a, "the shapes")
        _, warm = _extraction_ids(et, a, "the colours of every shape")
        image_keys = [k for k in et.prefix_cache._items if k.variant != "text"]
        assert [len(k.prefix) for k in image_keys] == [len(start)] and len(start) > 16 + 20
        ex = warm.stages["extraction"]
        # (one more when the previous focus began with the same word: the session still holds it)
        assert warm.cache_hits["prefix"] is True and ex.reused_prompt_tokens >= len(start)
        own = len(encode_segments(tok, prompts.extraction_prompt("the colours of every shape",
                                                                 system=entry.system_prompt), image_tokens=16))
        assert ex.prompt_tokens == own and ex.prompt_tokens - ex.reused_prompt_tokens <= own - len(start)
        result = et.answer(a, "What is shown?", OPTIONS, hint=False, extraction_budget=4, thinking_budget=4,
                           answer_budget=2)
        assert result.cache_hits["prefix"] is False  # no focus: another prompt after the image
        assert len([k for k in et.prefix_cache._items if k.variant != "text"]) == 2


@pytest.mark.parametrize("backend", BACKENDS)
def test_pooled_layout_prefix_restores_the_pooled_rows(rt_bundle, backend):
    """With LLaVA-OV pooling (4 image tokens per view) the saved prefix holds the pooled rows."""
    a, b = _image(21), _image(22)
    with ExtractThink.load(rt_bundle, backend=backend, threads=1, image_tokens=4, prefix_cache_mb=0) as cold_et:
        cold_ids, cold = _extraction_ids(cold_et, a, "the colours", HOT)
    with ExtractThink.load(rt_bundle, backend=backend, threads=1, image_tokens=4) as et:
        _extraction_ids(et, a, "the shapes", HOT)
        _extraction_ids(et, b, "the shapes", HOT)
        warm_ids, warm = _extraction_ids(et, a, "the colours", HOT)
    assert warm.cache_hits["prefix"] is True and warm.stages["vision"].tokens == 4
    assert warm_ids == cold_ids
    assert warm.stages["extraction"].prompt_tokens == cold.stages["extraction"].prompt_tokens


# ---- the reasoner's fixed prompt start ----------------------------------------------------------


def _reasoner_run(et: ExtractThink, image: np.ndarray, question: str, sampling: object = "greedy",
                  ) -> tuple[list[int], object]:
    """The reasoner's tokens (hint, thinking, answer) of one request, and its result."""
    ids, result = [], None
    for ev in et.stream(image, question, OPTIONS, hint_budget=3, extraction_budget=6, thinking_budget=8,
                        answer_budget=4, sampling=sampling, seed=5):
        if isinstance(ev, TokenEvent) and ev.stage in ("hint", "thinking", "answer"):
            ids.append(ev.token_id)
        result = getattr(ev, "result", result)
    return ids, result


def _text_keys(et: ExtractThink) -> list[PrefixKey]:
    return [k for k in et.prefix_cache._items if k.variant == "text"]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("residency", ["resident", "sequential"])
def test_reasoner_prompt_start_restores_exactly(rt_bundle, backend, residency):
    """The reasoner's hint and reasoning prompts start with a fixed part; a later request
    restores its saved state (both prompts) and samples exactly what a cold run samples."""
    a, b = _image(31), _image(32)
    with ExtractThink.load(rt_bundle, backend=backend, threads=1, prefix_cache_mb=0) as cold_et:
        cold_ids, cold = _reasoner_run(cold_et, b, "Which one is red?", HOT)
    with ExtractThink.load(rt_bundle, backend=backend, threads=1, residency=residency) as et:
        _, first = _reasoner_run(et, a, "How many are there?", HOT)
        assert first.cache_hits["reasoner_prefix"] is False
        assert len(_text_keys(et)) == 2  # the hint's start and the reasoning prompt's start
        warm_ids, warm = _reasoner_run(et, b, "Which one is red?", HOT)
    assert warm.cache_hits["reasoner_prefix"] is True and "reasoner_prefix" not in cold.cache_hits
    assert warm_ids == cold_ids and warm.answer_text == cold.answer_text
    for stage in ("hint", "thinking"):  # the start (> 20 tokens) was restored, not prefilled
        assert warm.stages[stage].reused_prompt_tokens >= cold.stages[stage].reused_prompt_tokens + 20
        assert warm.stages[stage].prompt_tokens == cold.stages[stage].prompt_tokens


def _state_of_other_tokens(bundle, backend: str, n: int) -> PrefixState:
    """A valid state of the reasoner after `n` positions of other text (what a restore of the
    wrong state would load)."""
    _, art = choose_artifact(bundle, "reasoner", backend, None)
    lm, _ = load_model(bundle, "reasoner", backend, art, BackendOptions(threads=1, context_length=256))
    try:
        lm.feed_tokens([7 + i % 50 for i in range(n)])
        return lm.save_state()
    finally:
        lm.close()


def _with_starts_replaced(rt_bundle, backend: str, replace) -> tuple[list[int], list[int], object, list]:
    """Request B's tokens cold; then B's tokens and result in a pipeline that ran request A
    and had each saved reasoner start replaced by `replace(key, state)`, and the states left
    under those keys afterwards."""
    a, b = _image(31), _image(32)
    with ExtractThink.load(rt_bundle, backend=backend, threads=1, prefix_cache_mb=0) as cold_et:
        cold_ids, _ = _reasoner_run(cold_et, b, "Which one is red?", HOT)
    with ExtractThink.load(rt_bundle, backend=backend, threads=1) as et:
        _reasoner_run(et, a, "How many are there?", HOT)
        for key in _text_keys(et):
            et.prefix_cache.put_state(key, replace(key, et.prefix_cache.get_state(key)))
        ids, result = _reasoner_run(et, b, "Which one is red?", HOT)
        left = [et.prefix_cache.get_state(k) for k in _text_keys(et)]
    return cold_ids, ids, result, left


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_wrong_restored_start_changes_the_tokens(rt_bundle, backend):
    """The equality above is not vacuous: a restored state with other numbers in it gives
    other tokens, so a restore that loaded the wrong state would fail it."""
    cold_ids, bad_ids, bad, _ = _with_starts_replaced(
        rt_bundle, backend, lambda key, _: _state_of_other_tokens(rt_bundle, backend, len(key.prefix)))
    assert bad.cache_hits["reasoner_prefix"] is True
    assert bad_ids != cold_ids


# How far a restored start may move the chosen token's logit. A restored start prefills the
# rest of the prompt in another batch than a cold run: llama.cpp's kernels then sum in another
# order (measured: 0.008-0.013 on the default bundle), and ONNX's int8 layers quantize their
# activations with a scale taken over the batch (0.02-0.12).
LOGIT_TOLERANCE = {"llamacpp": 0.05, "onnx": 0.3}


def _record_picks(monkeypatch) -> list[tuple[int, float, float]]:
    """(token, its logit, its lead over the second best) of every greedy pick from now on."""
    seen: list[tuple[int, float, float]] = []
    pick = Sampler.__call__

    def record(self, logits):
        row = np.asarray(logits, dtype=np.float64)
        second, best = np.sort(row)[-2:]
        seen.append((int(np.argmax(row)), best, best - second))
        return pick(self, logits)

    monkeypatch.setattr(Sampler, "__call__", record)
    return seen


@pytest.mark.parametrize("backend", BACKENDS)
def test_default_bundle_greedy_tokens_match_with_the_start_restored(backend, monkeypatch):
    """The shipped (trained) bundle: a request whose reasoner starts are restored picks a
    cold run's greedy tokens, their logits within the backend's batch-order noise, up to a
    near-tie (two tokens closer than that noise), where the two runs may part."""
    from runtime.defaults import default_bundle_path

    image = _image(41)
    kw = dict(backend=backend, threads=1, verify="size")
    seen = _record_picks(monkeypatch)
    with ExtractThink.load(default_bundle_path(), prefix_cache_mb=0, **kw) as cold_et:
        cold_ids, cold = _reasoner_run(cold_et, image, "Which shape is the largest?")
    cold_picks = list(seen)
    with ExtractThink.load(default_bundle_path(), **kw) as et:
        _reasoner_run(et, _image(42), "How many shapes are there?")
        seen.clear()
        warm_ids, warm = _reasoner_run(et, image, "Which shape is the largest?")
    assert warm.cache_hits["reasoner_prefix"] is True
    tol = LOGIT_TOLERANCE[backend]
    assert len(cold_picks) >= len(cold_ids) and seen
    for (c_tok, c_best, c_lead), (w_tok, w_best, w_lead) in zip(cold_picks, seen, strict=False):
        if c_tok != w_tok:  # the runs parted: only where two tokens were near-tied
            assert min(c_lead, w_lead) < 2 * tol, (c_lead, w_lead)
            return
        assert abs(c_best - w_best) < tol, (c_best, w_best)
    assert warm_ids == cold_ids and warm.thinking == cold.thinking and warm.answer == cold.answer


@pytest.mark.parametrize("backend", BACKENDS)
def test_an_unrestorable_start_is_prefilled_again(rt_bundle, backend):
    """A saved start the model refuses (another model's) is dropped and prefilled: the
    tokens are a cold run's and the request reports no hit."""
    cold_ids, ids, result, left = _with_starts_replaced(
        rt_bundle, backend, lambda _, s: PrefixState(s.n_past, s.nbytes, "another model", s.data))
    assert result.cache_hits["reasoner_prefix"] is False and ids == cold_ids
    assert left == []  # dropped (the next request saves them again)
