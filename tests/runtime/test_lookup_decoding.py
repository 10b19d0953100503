"""Prompt-lookup decoding on real backends: batch verification, exact greedy tokens, budgets.

The shipped default bundle (trained weights: its reasoner copies spans of its prompt) on
llama.cpp and ONNX Runtime, and the tiny float32 bundle on both (its ONNX graphs are
batch invariant, the default bundle's int8 ones are not).
"""

from __future__ import annotations

import numpy as np
import pytest

from runtime.backends import choose_artifact, load_model
from runtime.backends.base import BackendOptions
from runtime.budget import BudgetController, StageLimits
from runtime.bundle import open_bundle
from runtime.control_tokens import control_tokens
from runtime.defaults import default_bundle_path
from runtime.errors import InputError
from runtime.generation import Session, generate, run_to_end
from runtime.manifest import example_options
from runtime.pipeline import ExtractThink
from runtime.sampling import GREEDY, THINKING, Sampler
from runtime.tokenizer import BundleTokenizer

BACKENDS = ("llamacpp", "onnx")
REPEATED = ("There is a medium red ellipse in the top left. There is a small blue ellipse in the center. " * 3
            + "There is a medium")


@pytest.fixture(scope="module")
def default_bundle():
    return open_bundle(default_bundle_path(), verify="size")


def _reasoner(bundle, backend, quant=None, **opts):
    _, art = choose_artifact(bundle, "reasoner", backend, quant)
    lm, _ = load_model(bundle, "reasoner", backend, art, BackendOptions(threads=1, **opts))
    return lm


def _generate(lm, tok, prompt, lookup, limits, sampling=GREEDY, seed=0):
    ctl = BudgetController(limits, control_tokens(tok), tok, lm.n_vocab)
    gen = run_to_end(generate(Session(lm), tok, prompt, ctl, Sampler(sampling, seed), role="reasoner",
                              lookup=lookup))
    return gen, ctl


# ---- the backend call -----------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_feed_tokens_all_rows_are_the_one_at_a_time_logits(rt_bundle, backend):
    quant = {"llamacpp": "f32", "onnx": "fp32"}[backend]
    opts = {"kv_cache_type": "f32"} if backend == "llamacpp" else {}
    lm = _reasoner(rt_bundle, backend, quant, context_length=128, **opts)
    try:
        assert lm.batch_invariant
        ids = [int(i) for i in np.random.default_rng(0).integers(0, lm.n_vocab, 24)]
        lm.feed_tokens(ids[:16])
        rows = lm.feed_tokens_all(ids[16:])
        assert rows.shape == (8, lm.n_vocab) and rows.dtype == np.float32 and lm.n_past == 24
        lm.truncate(16)  # what a rejected draft does
        one = np.stack([lm.feed_tokens([t]) for t in ids[16:]])
        np.testing.assert_allclose(rows, one, atol=1e-4, rtol=1e-4)
        assert (rows.argmax(axis=1) == one.argmax(axis=1)).all()
        with pytest.raises(InputError):
            lm.feed_tokens_all([])
        with pytest.raises(InputError):
            lm.feed_tokens_all([lm.n_vocab])
        assert lm.n_past == 24
    finally:
        lm.close()


def test_default_bundle_batch_invariance_per_backend(default_bundle):
    """llama.cpp's rows are bit-identical; the int8 ONNX graph quantizes each call's
    activations with one scale, so its rows differ and lookup stays off there."""
    ids = list(range(100, 140))
    lm = _reasoner(default_bundle, "llamacpp")
    try:
        assert lm.batch_invariant
        lm.feed_tokens(ids[:30])
        rows = lm.feed_tokens_all(ids[30:39])
        lm.truncate(30)
        assert np.array_equal(rows, np.stack([lm.feed_tokens([t]) for t in ids[30:39]]))
    finally:
        lm.close()
    onnx = _reasoner(default_bundle, "onnx")
    try:
        assert not onnx.batch_invariant
        onnx.feed_tokens(ids[:30])
        rows = onnx.feed_tokens_all(ids[30:39])
        onnx.truncate(30)
        assert not np.array_equal(rows, np.stack([onnx.feed_tokens([t]) for t in ids[30:39]]))
    finally:
        onnx.close()


# ---- the decode loop ----------------------------------------------------------------------------


@pytest.mark.parametrize("case", ["default-llamacpp", "tiny-llamacpp", "tiny-onnx"])
def test_repeated_text_drafts_are_accepted_and_greedy_tokens_unchanged(case, default_bundle, rt_bundle):
    name, backend = case.split("-")
    bundle = default_bundle if name == "default" else rt_bundle
    quant = None if name == "default" else {"llamacpp": "f32", "onnx": "fp32"}[backend]
    lm = _reasoner(bundle, backend, quant, context_length=512)
    tok = BundleTokenizer(bundle.path(bundle.model("reasoner").tokenizer))
    prompt = tok.encode_plain(REPEATED)
    try:
        plain, _ = _generate(lm, tok, prompt, 0, StageLimits("answer", 64))
        for k in (1, 4, 8):
            fast, _ = _generate(lm, tok, prompt, k, StageLimits("answer", 64))
            assert fast.token_ids == plain.token_ids, k
            assert fast.stop_reason == plain.stop_reason
            assert 0 < fast.accepted <= fast.drafted
            assert fast.stats["answer"].accepted == fast.accepted
        assert plain.drafted == plain.accepted == 0
        assert lm.n_past <= len(prompt) + len(plain.token_ids)  # rejected drafts were dropped
    finally:
        lm.close()


def test_lookup_is_off_where_batches_are_not_invariant(default_bundle):
    lm = _reasoner(default_bundle, "onnx", context_length=512)
    tok = BundleTokenizer(default_bundle.path(default_bundle.model("reasoner").tokenizer))
    try:
        plain, _ = _generate(lm, tok, tok.encode_plain(REPEATED), 0, StageLimits("answer", 64))
        fast, _ = _generate(lm, tok, tok.encode_plain(REPEATED), 8, StageLimits("answer", 64))
        assert fast.token_ids == plain.token_ids and fast.drafted == 0
    finally:
        lm.close()


@pytest.mark.parametrize("budget", [3, 10, 40])
def test_thinking_budget_and_forcing_unchanged_with_lookup(default_bundle, budget):
    """The controller sees every accepted draft: thinking never exceeds its budget, and the
    forced newline / </think> / Answer: land where they land without lookup."""
    lm = _reasoner(default_bundle, "llamacpp", context_length=1024)
    tok = BundleTokenizer(default_bundle.path(default_bundle.model("reasoner").tokenizer))
    from runtime import prompts
    from runtime.tokenizer import encode_segments

    desc = "There is a medium red ellipse in the top left. There is a small blue ellipse in the center."
    segs = prompts.reasoning_prompt(desc, "Is the ellipse in the top left red?", None, thinking=True, think_tags=True)
    prompt = encode_segments(tok, segs)
    limits = StageLimits("answer", 6, thinking_budget=budget, ensure_answer=True)
    try:
        plain, pctl = _generate(lm, tok, prompt, 0, limits)
        fast, fctl = _generate(lm, tok, prompt, 4, limits)
        assert fast.token_ids == plain.token_ids
        assert fast.texts == plain.texts
        assert [(e.kind, e.position, e.stage) for e in fctl.events] == [(e.kind, e.position, e.stage)
                                                                        for e in pctl.events]
        assert fctl.thinking_tokens == pctl.thinking_tokens <= budget
        assert fast.stats["thinking"].tokens <= budget
        assert fast.drafted > 0
        # sampling: another draw, but the same budgets hold
        for seed in range(3):
            sampled, sctl = _generate(lm, tok, prompt, 4, limits, sampling=THINKING, seed=seed)
            assert sctl.thinking_tokens <= budget and sampled.stats["thinking"].tokens <= budget
            assert sampled.stats["answer"].tokens <= 6 + 16 + len(tok.encode_plain("\nAnswer:"))
    finally:
        lm.close()


# ---- the pipeline -----------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_pipeline_greedy_results_unchanged_on_the_default_bundle(default_bundle, backend):
    items = [(str(default_bundle.path(ex["image"])), ex["question"], list(example_options(ex)) or None)
             for ex in default_bundle.manifest.examples]
    assert items
    with ExtractThink.load(default_bundle, backend=backend, threads=1, lookup=4) as et:
        assert et.lookup == 4
        drafted = accepted = 0
        for image, question, options in items:
            for thinking_budget in (None, 12):
                kw = dict(sampling="greedy", thinking_budget=thinking_budget)
                off = et.answer(image, question, options, lookup=0, **kw)
                if backend == "llamacpp":
                    # the extraction runs again, with lookup. Not on int8 ONNX: its perception
                    # KV then holds this very prompt and re-feeds only the last position, a
                    # different chunking, which alone changes int8 logits (with or without lookup)
                    et.extraction_cache.clear()
                on = et.answer(image, question, options, **kw)
                assert (on.hint, on.extraction, on.thinking, on.answer_text, on.answer) == \
                       (off.hint, off.extraction, off.thinking, off.answer_text, off.answer)
                assert [e.to_dict() for e in on.budget_events] == [e.to_dict() for e in off.budget_events]
                assert on.stages["thinking"].tokens <= on.budgets["thinking"]
                assert all(s.drafted == 0 for s in off.stages.values())
                drafted += sum(s.drafted for s in on.stages.values())
                accepted += sum(s.accepted for s in on.stages.values())
                assert {"drafted", "accepted"} <= set(on.to_dict()["stages"]["thinking"])
    if backend == "llamacpp":
        assert 0 < accepted < drafted
    else:  # int8 graphs: not batch invariant, lookup stays off
        assert drafted == accepted == 0


def test_bad_lookup_values_fail_before_any_work(default_bundle):
    with pytest.raises(InputError, match="lookup must be"):
        ExtractThink.load(default_bundle, backend="llamacpp", lookup=-1)
    with ExtractThink.load(default_bundle, backend="llamacpp", threads=1) as et:
        assert et.lookup == 0
        with pytest.raises(InputError, match="lookup must be"):
            et.answer(None, "What is it?", mode="blind", lookup=1000)
