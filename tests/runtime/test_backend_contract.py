"""One contract suite for every backend, on the same tiny bundle at full precision.

Each backend must implement `runtime.backends.base` the same way: feed / truncate / reset
semantics, the image path, context limits, and (the point of one shared runtime) the same
greedy tokens for the same model on llama.cpp and ONNX Runtime.
"""

from __future__ import annotations

import numpy as np
import pytest

from runtime.backends import choose_artifact, load_model
from runtime.backends.base import BackendOptions, LanguageModel, VisionEncoder
from runtime.budget import BudgetController, StageLimits
from runtime.chat_format import Message, render_prompt
from runtime.control_tokens import control_tokens
from runtime.errors import ContextOverflowError, InputError
from runtime.generation import Session, generate, run_to_end
from runtime.image import load_image, preprocess
from runtime.prompts import extraction_prompt, reasoning_prompt
from runtime.sampling import GREEDY, Sampler
from runtime.tokenizer import BundleTokenizer, encode_segments

BACKENDS = ("llamacpp", "onnx")
# F32 KV cache on llama.cpp: the default F16 cache limits parity to ~1e-2.
OPTS = BackendOptions(threads=1, context_length=512, kv_cache_type="f32")


FULL_PRECISION = {"llamacpp": "f32", "onnx": "fp32"}


def _load(bundle, role, backend, opts=OPTS):
    _, art = choose_artifact(bundle, role, backend, FULL_PRECISION[backend])
    return load_model(bundle, role, backend, art, opts)


@pytest.fixture(scope="module")
def models(rt_bundle):
    out = {}
    for backend in BACKENDS:
        for role in ("perception", "reasoner"):
            out[backend, role] = _load(rt_bundle, role, backend)
    yield out
    for lm, vision in out.values():
        lm.close()
        if vision is not None:
            vision.close()


@pytest.fixture(scope="module")
def tok(rt_bundle):
    return BundleTokenizer(rt_bundle.path(rt_bundle.model("reasoner").tokenizer))


@pytest.fixture(scope="module")
def pixels(rt_bundle):
    rng = np.random.default_rng(3)
    img = load_image((rng.random((45, 60, 3)) * 255).astype(np.uint8))
    return preprocess(img, rt_bundle.model("perception").image)


def _prompt(tok):
    segs = render_prompt([Message("user", "Describe the image: the red circle and the blue square.")],
                         thinking=None)
    return [int(i) for i in encode_segments(tok, segs)]


@pytest.mark.parametrize("backend", BACKENDS)
def test_protocol_and_shapes(models, rt_bundle, backend):
    lm, vision = models[backend, "perception"]
    assert isinstance(lm, LanguageModel) and isinstance(vision, VisionEncoder)
    entry = rt_bundle.model("perception")
    assert lm.n_vocab == entry.text.vocab_size
    assert lm.n_ctx == 512
    assert vision.tokens_per_image == entry.vision.tokens_per_image
    rlm, rvision = models[backend, "reasoner"]
    assert isinstance(rlm, LanguageModel) and rvision is None


@pytest.mark.parametrize("backend", BACKENDS)
def test_feed_truncate_reset(models, tok, backend):
    lm, _ = models[backend, "reasoner"]
    prompt = _prompt(tok)
    lm.reset()
    assert lm.n_past == 0
    first = lm.feed_tokens(prompt).copy()
    assert first.shape == (lm.n_vocab,) and first.dtype == np.float32 and np.isfinite(first).all()
    assert lm.n_past == len(prompt)
    extra = tok.encode_plain(" Answer: B")
    after = lm.feed_tokens(extra).copy()
    assert lm.n_past == len(prompt) + len(extra)
    lm.truncate(len(prompt))
    assert lm.n_past == len(prompt)
    assert np.abs(lm.feed_tokens(extra) - after).max() < 1e-4  # same prefix, same continuation
    lm.truncate(lm.n_past)  # no-op
    with pytest.raises(InputError):
        lm.truncate(lm.n_past + 1)
    lm.reset()
    assert np.abs(lm.feed_tokens(prompt) - first).max() < 1e-4
    # Feeding in pieces equals feeding at once.
    lm.reset()
    for i in range(0, len(prompt), 5):
        chunked = lm.feed_tokens(prompt[i : i + 5])
    assert np.abs(chunked - first).max() < 1e-4
    lm.truncate(0)
    assert lm.n_past == 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_image_path(models, tok, pixels, rt_bundle, backend):
    lm, vision = models[backend, "perception"]
    emb = vision.encode(pixels)
    entry = rt_bundle.model("perception")
    assert emb.shape == (entry.vision.tokens_per_image, entry.text.hidden_size) and emb.dtype == np.float32
    assert np.isfinite(emb).all()
    ids = encode_segments(tok, extraction_prompt("the shapes"), image_tokens=emb.shape[0])
    session = Session(lm)
    session.reset()
    logits, reused = session.prefill(ids, emb, "img")
    assert reused == 0 and lm.n_past == len(ids) and np.isfinite(logits).all()
    # A second prompt about the same image reuses the image prefix from the KV cache.
    ids2 = encode_segments(tok, extraction_prompt("the colours"), image_tokens=emb.shape[0])
    logits2, reused2 = session.prefill(ids2, emb, "img")
    first_image = ids.index(None)
    assert reused2 >= first_image + emb.shape[0]
    session.reset()
    fresh, _ = session.prefill(ids2, emb, "img")
    assert np.abs(fresh - logits2).max() < 1e-4
    # Wrong embedding count is refused before anything is fed.
    with pytest.raises(InputError):
        session.prefill(ids2, emb[:-1], "img2")


@pytest.mark.parametrize("backend", BACKENDS)
def test_context_limits(rt_bundle, tok, backend):
    lm, _ = _load(rt_bundle, "reasoner", backend, BackendOptions(threads=1, context_length=32))
    try:
        assert lm.n_ctx == 32
        lm.feed_tokens([5] * 30)
        with pytest.raises(ContextOverflowError):
            lm.feed_tokens([5] * 3)
        lm.reset()
        ctl = BudgetController(StageLimits("answer", 8), control_tokens(tok), tok, lm.n_vocab)
        with pytest.raises(ContextOverflowError, match="40 tokens.*context holds 32"):
            run_to_end(generate(Session(lm), tok, [5] * 40, ctl, Sampler(GREEDY), role="reasoner"))
        # A prompt that fits, with a budget that does not: the budget is clamped, not the prompt.
        ctl = BudgetController(StageLimits("answer", 50), control_tokens(tok), tok, lm.n_vocab)
        gen = run_to_end(generate(Session(lm), tok, [5] * 20, ctl, Sampler(GREEDY), role="reasoner"))
        assert gen.generated <= 12
        assert any(e.kind == "context_clamp" for e in ctl.events)
    finally:
        lm.close()


def _greedy_run(lm, tok, ids, limits, image=None):
    ctl = BudgetController(limits, control_tokens(tok), tok, lm.n_vocab)
    session = Session(lm)
    session.reset()
    return run_to_end(generate(session, tok, ids, ctl, Sampler(GREEDY), role="x", image=image))


def test_same_greedy_tokens_on_both_backends_text(models, tok):
    segs = reasoning_prompt("A red circle is left of a blue square.", "Which shape is on the left?",
                            ["circle", "square"], thinking=True)
    ids = encode_segments(tok, segs)
    runs = {}
    for backend in BACKENDS:
        lm, _ = models[backend, "reasoner"]
        limits = StageLimits("answer", 24, thinking_budget=40, ensure_answer=True, options=("circle", "square"))
        runs[backend] = _greedy_run(lm, tok, ids, limits)
    a, b = runs["llamacpp"], runs["onnx"]
    assert a.generated > 40
    assert a.token_ids == b.token_ids
    assert a.texts == b.texts


def test_same_greedy_tokens_on_both_backends_image(models, tok, pixels):
    embeds = {b: models[b, "perception"][1].encode(pixels) for b in BACKENDS}
    # mmproj (llama.cpp) and the ONNX vision graph compute the same embeddings.
    assert np.abs(embeds["llamacpp"] - embeds["onnx"]).max() < 1e-2
    ids = encode_segments(tok, extraction_prompt(None), image_tokens=embeds["onnx"].shape[0])
    runs = {}
    for backend in BACKENDS:
        lm, _ = models[backend, "perception"]
        # Same embeddings into both decoders: the decode loops must agree token for token.
        runs[backend] = _greedy_run(lm, tok, ids, StageLimits("extraction", 32), image=embeds["onnx"])
    assert runs["llamacpp"].token_ids == runs["onnx"].token_ids
    assert len(runs["onnx"].token_ids) == 32
    # And the logits right after the image agree closely.
    logits = {}
    for backend in BACKENDS:
        lm, _ = models[backend, "perception"]
        lm.reset()
        logits[backend], _ = Session(lm).prefill(ids, embeds["onnx"], None)
    assert np.abs(logits["llamacpp"] - logits["onnx"]).max() < 1e-3
