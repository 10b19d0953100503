"""The llama.cpp backend against real llama-cpp-python, on tiny models exported here."""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

import numpy as np
import pytest

from runtime.backends.base import BackendOptions, LanguageModel, VisionEncoder
from runtime.backends.llamacpp import GGUFTokenizer, load, load_gguf
from runtime.bundle import open_bundle
from runtime.errors import (
    BundleError,
    ConfigError,
    ContextOverflowError,
    EdgeError,
    InputError,
)
from tests.export.gguf_helpers import write_gguf_bundle
from tests.support.blocked_imports import run_without

# one thread: exact results do not depend on it and a shared CI core makes 2 threads crawl
F32 = BackendOptions(threads=1, kv_cache_type="f32")


@pytest.fixture(scope="module")
def models(tiny_reasoner_dir, tiny_perception_dir):
    from training.models.loading import load_perception, load_reasoner

    return {"reasoner": load_reasoner(tiny_reasoner_dir), "perception": load_perception(tiny_perception_dir)}


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory, models, tiny_tokenizer_dir) -> Path:
    return write_gguf_bundle(tmp_path_factory.mktemp("gguf_bundle"), models, tiny_tokenizer_dir, "f32")


@pytest.fixture(scope="module")
def bundle(bundle_dir):
    return open_bundle(bundle_dir)


def image(size: int = 32, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(size, size, 3), dtype=np.uint8)


def torch_pixels(img: np.ndarray):
    import torch

    return (torch.tensor(img, dtype=torch.float32).permute(2, 0, 1)[None] / 255.0 - 0.5) / 0.5


def greedy(lm, first_logits: np.ndarray, steps: int) -> list[int]:
    out, logits = [], first_logits
    for _ in range(steps):
        nxt = int(np.argmax(logits))
        out.append(nxt)
        logits = lm.feed_tokens([nxt])
    return out


# -- loading and the protocol ------------------------------------------------------------

def test_load_from_bundle_implements_protocol(bundle, models):
    lm, vision = load(bundle, "perception", bundle.artifact("perception", "gguf"), F32)
    try:
        assert isinstance(lm, LanguageModel) and isinstance(vision, VisionEncoder)
        entry = bundle.model("perception")
        assert lm.n_vocab == entry.text.vocab_size
        assert lm.n_ctx == entry.text.context_length  # default: the manifest's
        assert vision.tokens_per_image == entry.vision.tokens_per_image == 16
        assert lm.n_past == 0
        emb = vision.encode(image())
        assert emb.shape == (16, entry.text.hidden_size) and emb.dtype == np.float32
    finally:
        vision.close()
        lm.close()
    lm, vision = load(bundle, "reasoner", bundle.artifact("reasoner"), BackendOptions(threads=1, context_length=256))
    assert vision is None and lm.n_ctx == 256 and lm.threads == 1
    lm.close()


def test_greedy_decode_equals_torch(bundle, models, tiny_tokenizer_dir):
    import torch

    from runtime.tokenizer import BundleTokenizer

    tok = BundleTokenizer(tiny_tokenizer_dir / "tokenizer.json")
    prompt = tok.encode_plain("Question: How many triangles are there? Let me think step by step.")
    lm, _ = load(bundle, "reasoner", bundle.artifact("reasoner"), F32)
    try:
        got = greedy(lm, lm.feed_tokens(prompt), 24)
    finally:
        lm.close()
    with torch.no_grad():
        ref = models["reasoner"].generate(torch.tensor([prompt]), max_new_tokens=24, do_sample=False,
                                          min_new_tokens=24)[0, len(prompt):].tolist()
    assert got == ref


def test_generates_text_for_an_image(bundle, models, tiny_tokenizer_dir):
    """Perception GGUF + mmproj through the multimodal path: prompt, image embeddings, tokens."""
    import torch

    from runtime.chat_format import Message, render_prompt
    from runtime.tokenizer import BundleTokenizer, decode, encode_segments

    model = models["perception"]
    tok = BundleTokenizer(tiny_tokenizer_dir / "tokenizer.json")
    segs = render_prompt([Message("user", "Describe the image.", image=True)], thinking=None)
    ids = encode_segments(tok, segs, image_tokens=16)
    img = image(seed=3)
    lm, vision = load(bundle, "perception", bundle.artifact("perception"), F32)
    try:
        emb = vision.encode(img)
        first_img = ids.index(None)
        lm.feed_tokens(ids[:first_img])
        lm.feed_embeddings(emb)
        logits = lm.feed_tokens(ids[first_img + 16:])
        got = greedy(lm, logits, 12)
    finally:
        vision.close()
        lm.close()
    hf_ids = [model.config.image_token_id if i is None else i for i in ids]
    with torch.no_grad():
        ref = model.generate(input_ids=torch.tensor([hf_ids]), pixel_values=torch_pixels(img),
                             max_new_tokens=12, min_new_tokens=12, do_sample=False)[0, len(hf_ids):].tolist()
    assert got == ref
    assert isinstance(decode(tok, got), str)


def test_feed_embeddings_of_token_rows_equals_feed_tokens(bundle, models):
    emb_table = models["reasoner"].model.embed_tokens.weight.detach().numpy()
    ids = [5, 17, 99, 300, 42, 7]
    lm, _ = load(bundle, "reasoner", bundle.artifact("reasoner"), F32)
    try:
        a = lm.feed_tokens(ids)
        lm.reset()
        b = lm.feed_embeddings(emb_table[ids])
        assert np.abs(a - b).max() < 1e-5
        assert lm.n_past == len(ids)
    finally:
        lm.close()


def test_truncate_and_reset_reuse_the_prefix(bundle):
    lm, _ = load(bundle, "reasoner", bundle.artifact("reasoner"), F32)
    try:
        prefix, a, b = [1, 2, 3, 4, 5], [10, 11, 12], [20, 21]
        ref_a = lm.feed_tokens(prefix + a)
        lm.reset()
        ref_b = lm.feed_tokens(prefix + b)
        lm.reset()
        lm.feed_tokens(prefix)
        assert np.abs(lm.feed_tokens(a) - ref_a).max() < 1e-5
        lm.truncate(len(prefix))
        assert lm.n_past == len(prefix)
        assert np.abs(lm.feed_tokens(b) - ref_b).max() < 1e-5
        lm.truncate(0)
        assert lm.n_past == 0
        assert np.abs(lm.feed_tokens(prefix + a) - ref_a).max() < 1e-5
        with pytest.raises(InputError):
            lm.truncate(lm.n_past + 1)
    finally:
        lm.close()


def test_long_prompt_is_split_into_batches(bundle):
    """More tokens than one llama.cpp batch (512) in a single feed; logits only at the end."""
    ids = [(i * 7) % 400 + 3 for i in range(1100)]
    lm, _ = load(bundle, "reasoner", bundle.artifact("reasoner"), F32)
    try:
        whole = lm.feed_tokens(ids)
        lm.reset()
        for start in range(0, len(ids), 300):
            parts = lm.feed_tokens(ids[start : start + 300])
        assert np.abs(whole - parts).max() < 1e-4
        assert lm.n_past == 1100
    finally:
        lm.close()


def test_f16_kv_cache_default_is_close(bundle):
    ids = list(range(3, 60))
    lm32, _ = load(bundle, "reasoner", bundle.artifact("reasoner"), F32)
    lm16, _ = load(bundle, "reasoner", bundle.artifact("reasoner"), BackendOptions(threads=1))
    try:
        assert lm16.kv_cache_type == "f16"
        assert np.abs(lm32.feed_tokens(ids) - lm16.feed_tokens(ids)).max() < 5e-2
    finally:
        lm32.close()
        lm16.close()


def test_q8_0_kv_cache_is_close_and_its_state_restores_exactly(bundle):
    """A q8_0 KV cache (flash attention on): logits near the f32 cache's, and a saved
    sequence state of it restores bit-identically (the prefix cache's contract)."""
    ids = list(range(3, 60))
    lm32, _ = load(bundle, "reasoner", bundle.artifact("reasoner"), F32)
    lm8, _ = load(bundle, "reasoner", bundle.artifact("reasoner"), BackendOptions(threads=1, kv_cache_type="q8_0"))
    try:
        assert lm8.kv_cache_type == "q8_0"
        ref, got = lm32.feed_tokens(ids), lm8.feed_tokens(ids)
        assert np.abs(ref - got).max() < 0.1 * np.abs(ref).max() and np.argmax(ref) == np.argmax(got)
        lm8.reset()
        lm8.feed_tokens(ids[:20])
        state = lm8.save_state()
        cold = lm8.feed_tokens(ids[20:])
        lm8.feed_tokens([5, 6])
        lm8.load_state(state)
        assert np.array_equal(lm8.feed_tokens(ids[20:]), cold)
    finally:
        lm32.close()
        lm8.close()


def test_q8_0_kv_cache_takes_about_half_the_f16_memory_in_the_plan(rt_bundle):
    from runtime.pipeline import ExtractThink

    needs = {}
    for kv in ("f16", "q8_0"):
        with ExtractThink.load(rt_bundle, backend="llamacpp", threads=1, kv_cache_type=kv, speed_cache=False) as et:
            needs[kv] = {role: n.kv_bytes for role, n in et.memory_plan.needs.items()}
            assert et.answer(image(), "What is it?", ["a", "b"], hint=False, extraction_budget=3, thinking_budget=3,
                             answer_budget=2, sampling="greedy").answer in ("A", "B")
    for role, f16 in needs["f16"].items():
        assert abs(needs["q8_0"][role] - f16 * 34 / 64) <= 1 << 12  # 34 bytes per 32 values against 64


def test_q8_0_kv_cache_is_refused_on_onnx(rt_bundle):
    from runtime.pipeline import ExtractThink

    with pytest.raises(ConfigError, match="q8_0 KV cache is llama.cpp's"):
        ExtractThink.load(rt_bundle, backend="onnx", threads=1, kv_cache_type="q8_0", speed_cache=False)


def test_two_threads(bundle):
    lm, _ = load(bundle, "reasoner", bundle.artifact("reasoner"), BackendOptions(threads=2, kv_cache_type="f32"))
    ref, _ = load(bundle, "reasoner", bundle.artifact("reasoner"), F32)
    try:
        assert lm.threads == 2
        assert np.abs(lm.feed_tokens([4, 5, 6]) - ref.feed_tokens([4, 5, 6])).max() < 1e-4
    finally:
        lm.close()
        ref.close()


# -- bad input ---------------------------------------------------------------------------

def test_bad_calls_raise_clean_errors(bundle):
    lm, vision = load(bundle, "perception", bundle.artifact("perception"),
                      BackendOptions(threads=1, context_length=40))
    try:
        with pytest.raises(InputError):
            lm.feed_tokens([])
        with pytest.raises(InputError, match="outside the vocabulary"):
            lm.feed_tokens([lm.n_vocab])
        with pytest.raises(InputError, match="outside the vocabulary"):
            lm.feed_tokens([-1])
        with pytest.raises(InputError):
            lm.feed_embeddings(np.zeros((3, 7), np.float32))
        with pytest.raises(InputError, match="NaN"):
            lm.feed_embeddings(np.full((1, 64), np.nan, np.float32))
        lm.feed_tokens(list(range(1, 31)))
        with pytest.raises(ContextOverflowError, match="context of 40"):
            lm.feed_tokens(list(range(1, 12)))
        assert lm.n_past == 30  # nothing half-fed
        with pytest.raises(InputError, match="32x32"):
            vision.encode(image(48))
        with pytest.raises(InputError):
            vision.encode(image().astype(np.float32))
        with pytest.raises(InputError):
            vision.encode(image()[:, :, :2])
    finally:
        vision.close()
        lm.close()


def test_close_frees_and_is_idempotent(bundle):
    lm, vision = load(bundle, "perception", bundle.artifact("perception"), F32)
    lm.close()
    lm.close()
    with pytest.raises(RuntimeError, match="closed"):
        lm.feed_tokens([1])
    # the mmproj context keeps the shared model alive until it is closed too
    assert vision.encode(image()).shape == (16, 64)
    vision.close()
    vision.close()
    with pytest.raises(RuntimeError, match="closed"):
        vision.encode(image())


def test_unknown_kv_cache_type(bundle):
    with pytest.raises(ConfigError, match="kv_cache_type"):
        load(bundle, "reasoner", bundle.artifact("reasoner"), BackendOptions(threads=1, kv_cache_type="q4"))


def _tampered_bundle(bundle_dir: Path, tmp_path: Path, edit) -> Path:
    import shutil

    root = tmp_path / "b"
    shutil.copytree(bundle_dir, root)
    data = json.loads((root / "manifest.json").read_text())
    edit(data)
    (root / "manifest.json").write_text(json.dumps(data))
    return root


@pytest.mark.parametrize("edit, match", [
    (lambda d: d["models"]["reasoner"]["text"].update(hidden_size=128), "hidden_size 64 != 128"),
    (lambda d: d["models"]["reasoner"]["text"].update(num_layers=3), "num_layers"),
    (lambda d: d["models"]["reasoner"]["text"].update(vocab_size=1024), "vocab_size"),
    (lambda d: d["models"]["reasoner"]["special_tokens"].update(im_end=5), "im_end id 5"),
])
def test_manifest_shape_mismatch_reasoner(edit, match, bundle_dir, tmp_path):
    b = open_bundle(_tampered_bundle(bundle_dir, tmp_path, edit))
    with pytest.raises(BundleError, match=match):
        load(b, "reasoner", b.artifact("reasoner"), F32)


@pytest.mark.parametrize("edit, match", [
    # self-consistent (image_size 32 / patch 16 = 2x2 tokens), so only the mmproj (3x3) disagrees
    (lambda d: d["models"]["perception"]["vision"].update(patch_size=16, tokens_per_image=4),
     "patch_size|tokens per image"),
    (lambda d: d["models"]["perception"]["image"].update(mean=[0.48, 0.46, 0.41]), "mean/std"),
    (lambda d: d["models"]["perception"]["vision"].update(num_layers=1), "num_layers"),
])
def test_manifest_shape_mismatch_perception(edit, match, bundle_dir, tmp_path):
    b = open_bundle(_tampered_bundle(bundle_dir, tmp_path, edit))
    with pytest.raises(BundleError, match=match):
        load(b, "perception", b.artifact("perception"), F32)


@pytest.mark.parametrize("image_size", [64, 16, 10**6])
def test_image_size_is_checked_against_the_mmproj_before_loading(bundle_dir, tmp_path, image_size):
    """The mmproj says 32 px. A self-consistent manifest asking for another size (or an
    absurd one) is refused from the mmproj's header, before mtmd sizes anything by it
    (10**6 px once made the process allocate 22 GB)."""
    def edit(d):
        vision = d["models"]["perception"]["vision"]
        d["models"]["perception"]["image"]["size"] = image_size
        vision["image_size"] = image_size
        vision["tokens_per_image"] = (image_size // vision["patch_size"]) ** 2

    root = _tampered_bundle(bundle_dir, tmp_path, edit)
    if image_size == 10**6:  # the manifest's own bounds may refuse it first; either way, no allocation
        with pytest.raises((BundleError, ConfigError)):
            b = open_bundle(root)
            load(b, "perception", b.artifact("perception"), F32)
        return
    b = open_bundle(root)
    with pytest.raises(BundleError, match=f"mmproj does not match the manifest: .*32 != {image_size}"):
        load(b, "perception", b.artifact("perception"), F32)


def test_tokenizer_larger_than_gguf_vocab(bundle_dir, tmp_path):
    root = _tampered_bundle(bundle_dir, tmp_path, lambda d: None)
    data = json.loads((root / "tokenizer.json").read_text())
    data["added_tokens"].append({"id": 5000, "content": "<|extra|>", "single_word": False, "lstrip": False,
                                 "rstrip": False, "normalized": False, "special": True})
    (root / "tokenizer.json").write_text(json.dumps(data))
    b = open_bundle(root, verify="none")
    with pytest.raises(BundleError, match="defines 5001 ids"):
        load(b, "reasoner", b.artifact("reasoner"), F32)


@pytest.mark.parametrize("target", ["reasoner-f32.gguf", "perception-mmproj-f32.gguf"])
@pytest.mark.parametrize("damage", ["truncate", "corrupt", "empty", "garbage"])
def test_truncated_or_corrupt_gguf(target, damage, bundle_dir, tmp_path):
    import shutil

    root = tmp_path / "b"
    shutil.copytree(bundle_dir, root)
    path = root / target
    data = path.read_bytes()
    path.write_bytes({
        "truncate": data[: len(data) * 2 // 3],
        "corrupt": data[:24] + b"\xff" * 64 + data[88:],
        "empty": b"",
        "garbage": b"GGUF" + bytes(range(256)) * 4,
    }[damage])
    b = open_bundle(root, verify="none")  # let the bad file reach the backend
    role = "reasoner" if target.startswith("reasoner") else "perception"
    with pytest.raises(BundleError):
        load(b, role, b.artifact(role), F32)
    # with the normal hash check the bundle itself is refused first
    with pytest.raises(BundleError, match="bytes, manifest says|wrong sha256"):
        open_bundle(root)


def test_wrong_files_swapped(bundle_dir):
    with pytest.raises(BundleError, match="not a vision mmproj"):
        load_gguf(bundle_dir / "reasoner-f32.gguf", bundle_dir / "perception-f32.gguf", F32)
    with pytest.raises(BundleError, match="could not load"):
        load_gguf(bundle_dir / "perception-mmproj-f32.gguf", options=F32)
    with pytest.raises(BundleError, match="not found"):
        load_gguf(bundle_dir / "missing.gguf", options=F32)


def test_onnx_artifact_is_refused(bundle):
    from runtime.manifest import Artifact

    with pytest.raises(BundleError, match="loads gguf"):
        load(bundle, "reasoner", Artifact(format="onnx", quant="fp32", files={"decoder": "x"}), F32)


def test_missing_llama_cpp_is_a_clean_error(tmp_path):
    out = run_without(("llama_cpp",), """
        from runtime.backends.llamacpp import load_gguf
        from runtime.errors import BackendUnavailableError
        try:
            load_gguf('x.gguf')
        except BackendUnavailableError as e:
            print('OK', e.extra, e)
    """, timeout=120)
    assert out.stdout.startswith("OK llamacpp"), out.stderr
    assert "pip install -e '.[llamacpp]' from the extract-think-edge checkout (or: pip install llama-cpp-python)" in out.stdout


# -- logging and stock-model helpers -------------------------------------------------------

def test_native_logs_are_silent_unless_debug(bundle, capfd, caplog):
    capfd.readouterr()
    lm, vision = load(bundle, "perception", bundle.artifact("perception"), F32)
    vision.encode(image())
    vision.close()
    lm.close()
    captured = capfd.readouterr()
    assert "llama" not in captured.err and "clip" not in captured.err
    with caplog.at_level(logging.DEBUG, logger="runtime"):
        lm, _ = load(bundle, "reasoner", bundle.artifact("reasoner"), F32)
        lm.close()
    assert any("native:" in r.getMessage() for r in caplog.records)
    assert "llama" not in capfd.readouterr().err


def test_load_gguf_defaults_and_gguf_tokenizer(bundle_dir):
    lm, vision = load_gguf(bundle_dir / "perception-f32.gguf", bundle_dir / "perception-mmproj-f32.gguf",
                           BackendOptions(threads=1))
    try:
        assert lm.n_ctx == 2048  # min(4096, trained context)
        assert vision.image_size == 32 and vision.tokens_per_image == 16
        tok = GGUFTokenizer(lm)
        ids = tok.encode_plain("a red circle </think>")
        assert tok.token_id("</think>") not in ids
        assert b"".join(tok.token_bytes(i) for i in ids) == b"a red circle </think>"
        assert tok.token_id("</think>") in tok.special_ids and not tok.special_ids & set(ids)
        tok.close()
        with pytest.raises(RuntimeError, match="closed"):
            tok.encode_plain("x")
    finally:
        vision.close()
        lm.close()


def test_options_are_frozen_dataclass():
    assert dataclasses.is_dataclass(BackendOptions)
    with pytest.raises(dataclasses.FrozenInstanceError):
        F32.threads = 3  # type: ignore[misc]


def test_errors_are_edge_errors():
    assert issubclass(BundleError, EdgeError) and issubclass(ContextOverflowError, EdgeError)


def test_backend_runs_without_torch(bundle_dir):
    """The backend is runtime code: it must run with torch and transformers unavailable."""
    out = run_without(("torch", "transformers", "gguf"), f"""
        import numpy as np
        from runtime.bundle import open_bundle
        from runtime.backends.base import BackendOptions
        from runtime.backends.llamacpp import load
        b = open_bundle({str(bundle_dir)!r})
        lm, vision = load(b, 'perception', b.artifact('perception'), BackendOptions(threads=1))
        lm.feed_embeddings(vision.encode(np.zeros((32, 32, 3), np.uint8)))
        print('OK', lm.feed_tokens([1, 2, 3]).shape, lm.n_past)
        vision.close(); lm.close()
    """)
    assert out.attempted == []
    assert out.stdout.startswith("OK (1280,) 19"), out.stderr


# -- extra CPU buffer types (AMX) ---------------------------------------------------------------

def test_extra_buffer_types_follow_the_cpu_and_the_override(monkeypatch):
    from runtime.backends.llamacpp import native_model
    from runtime.procfs import cpu_flags

    monkeypatch.delenv(native_model.EXTRA_BUFTS_ENV, raising=False)
    assert native_model.use_extra_buffer_types() is ("amx_int8" not in cpu_flags())
    monkeypatch.setenv(native_model.EXTRA_BUFTS_ENV, "1")
    assert native_model.use_extra_buffer_types() is True
    monkeypatch.setenv(native_model.EXTRA_BUFTS_ENV, "0")
    assert native_model.use_extra_buffer_types() is False
    monkeypatch.setenv(native_model.EXTRA_BUFTS_ENV, "yes")  # not 0/1: the CPU decides
    assert native_model.use_extra_buffer_types() is ("amx_int8" not in cpu_flags())


def test_cpu_flags_are_read_on_linux():
    from runtime.procfs import cpu_flags

    if not Path("/proc/cpuinfo").is_file():
        pytest.skip("no /proc/cpuinfo")
    flags = cpu_flags()
    assert flags and all(flag == flag.strip() and flag for flag in flags)


def test_shipped_q8_0_models_answer_on_this_cpu(tmp_path):
    """Before the AMX guard this crashed the process (SIGSEGV in llama.cpp's AMX matmul) on
    CPUs with AMX; a subprocess keeps a crash from taking the test run down."""
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "edge", "run", "--backend", "llamacpp", "--json"],
                          capture_output=True, text=True, timeout=300, cwd=Path(__file__).resolve().parents[2])
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout)["answer"]


# -- the vision encoder on ONNX Runtime beside a llama.cpp text model ------------------------

def test_onnx_vision_beside_a_llamacpp_text_model():
    """`vision_backend="onnx"`: llama.cpp text model, the same bundle's ONNX vision graph
    (exactly the ONNX backend's embeddings), no mmproj loaded; the pipeline answers with it."""
    pytest.importorskip("onnxruntime")
    from runtime.backends import choose_artifact, load_model
    from runtime.backends.llamacpp import LlamaCppLanguageModel
    from runtime.backends.onnx import OnnxVisionEncoder
    from runtime.defaults import default_bundle_path
    from runtime.pipeline import ExtractThink

    bundle = open_bundle(default_bundle_path())
    image = np.random.default_rng(3).integers(0, 256, (bundle.model("perception").image.size,) * 2 + (3,),
                                               dtype=np.uint8)
    _, gguf = choose_artifact(bundle, "perception", "llamacpp")
    _, onnx = choose_artifact(bundle, "perception", "onnx")
    lm, vision = load_model(bundle, "perception", "llamacpp", gguf,
                            BackendOptions(threads=1, vision_backend="onnx"))
    ref_lm, ref_vision = load_model(bundle, "perception", "onnx", onnx, BackendOptions(threads=1))
    try:
        assert isinstance(lm, LlamaCppLanguageModel) and isinstance(vision, OnnxVisionEncoder)
        np.testing.assert_array_equal(vision.encode(image), ref_vision.encode(image))
    finally:
        for m in (lm, vision, ref_lm, ref_vision):
            m.close()
    et = ExtractThink.load(backend="llamacpp", threads=1, vision_backend="onnx")
    try:
        example = bundle.manifest.examples[0]["image"]  # the shipped bundle's own example picture
        r = et.answer(str(default_bundle_path() / example), "Which shape is above?",
                      sampling="greedy")
        assert r.answer and r.stages["vision"].tokens == bundle.model("perception").vision.tokens_per_image
    finally:
        et.close()


def test_onnx_vision_needs_a_vision_graph(bundle_dir):
    from runtime.pipeline import ExtractThink

    with pytest.raises(BundleError, match="no onnx vision graph for the perception model"):
        ExtractThink.load(bundle_dir, backend="llamacpp", threads=1, vision_backend="onnx")
    with pytest.raises(InputError, match="vision_backend must be"):
        ExtractThink.load(bundle_dir, backend="llamacpp", threads=1, vision_backend="mtmd")
