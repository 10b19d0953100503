"""The ONNX Runtime backend against transformers, on bundles the tests export."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.onnx_support import diverse_checkpoint, exported, load_model, write_onnx_bundle
from tests.support.blocked_imports import WITHOUT_TORCH, run_without

pytest.importorskip("onnxruntime")
torch = pytest.importorskip("torch")

ROOT = Path(__file__).resolve().parents[2]


def _bundle(tmp_path_factory, ckpt, role, quant, **override):
    out, files = exported(tmp_path_factory, ckpt, role, quant)
    dest = tmp_path_factory.mktemp(f"bundle-{role}-{quant}")
    return write_onnx_bundle(dest, out, files, load_model(ckpt), ckpt, role=role, quant=quant,
                             text_override=override or None)


@pytest.fixture(scope="module")
def diverse_reasoner(tmp_path_factory, tiny_reasoner_dir):
    return diverse_checkpoint(tiny_reasoner_dir, tmp_path_factory.mktemp("diverse-reasoner"))


@pytest.fixture(scope="module")
def diverse_perception(tmp_path_factory, tiny_perception_dir):
    return diverse_checkpoint(tiny_perception_dir, tmp_path_factory.mktemp("diverse-perception"))


@pytest.fixture(scope="module")
def reasoner_bundle(tmp_path_factory, tiny_reasoner_dir):
    return _bundle(tmp_path_factory, tiny_reasoner_dir, "reasoner", "fp32")


@pytest.fixture(scope="module")
def perception_bundle(tmp_path_factory, tiny_perception_dir):
    return _bundle(tmp_path_factory, tiny_perception_dir, "perception", "fp32")


def _load(root, role, options=None, verify="full"):
    from runtime.backends.base import BackendOptions
    from runtime.backends.onnx import load
    from runtime.bundle import open_bundle

    bundle = open_bundle(root, verify=verify)
    return load(bundle, role, bundle.artifact(role, "onnx"), options or BackendOptions(threads=1))


def _prompt_ids(tok_dir, text):
    from runtime.tokenizer import BundleTokenizer

    return BundleTokenizer(Path(tok_dir) / "tokenizer.json").encode_plain(text)


def _torch_greedy(model, ids, steps, **kw):
    """Greedy decoding with transformers: a full forward pass per step, no cache."""
    ids = list(ids)
    out = []
    with torch.no_grad():
        for _ in range(steps):
            logits = model(input_ids=torch.tensor([ids + out]), **kw).logits[0, -1]
            out.append(int(logits.argmax()))
    return out


def _ours_greedy(lm, first_logits, steps):
    out = [int(first_logits.argmax())]
    while len(out) < steps:
        out.append(int(lm.feed_tokens([out[-1]]).argmax()))
    return out


def test_protocol_and_shapes(reasoner_bundle):
    from runtime.backends.base import LanguageModel

    lm, vision = _load(reasoner_bundle, "reasoner")
    assert isinstance(lm, LanguageModel) and vision is None
    assert lm.n_past == 0 and lm.n_vocab == 1280 and lm.n_ctx == 2048
    logits = lm.feed_tokens([1, 2, 3])
    assert logits.shape == (lm.n_vocab,) and logits.dtype == np.float32
    assert lm.n_past == 3
    lm.close()


def test_greedy_matches_transformers_reasoner(tmp_path_factory, diverse_reasoner):
    model = load_model(diverse_reasoner)
    ids = _prompt_ids(diverse_reasoner, "Question: How many triangles are there? Answer:")
    lm, _ = _load(_bundle(tmp_path_factory, diverse_reasoner, "reasoner", "fp32"), "reasoner")
    first = lm.feed_tokens(ids)
    with torch.no_grad():
        ref_first = model(input_ids=torch.tensor([ids])).logits[0, -1].numpy()
    assert np.abs(first - ref_first).max() <= 1e-4
    ours = _ours_greedy(lm, first, 24)
    assert ours == _torch_greedy(model, ids, 24)
    assert len(set(ours)) >= 6  # a real path through the vocabulary, not one token repeated


def test_greedy_matches_transformers_perception_with_image(tmp_path_factory, diverse_perception):
    model = load_model(diverse_perception)
    cfg = model.config
    lm, vision = _load(_bundle(tmp_path_factory, diverse_perception, "perception", "fp32"), "perception")
    size = cfg.vision_config.image_size
    image = np.random.default_rng(3).integers(0, 256, (size, size, 3), dtype=np.uint8)
    pre = _prompt_ids(diverse_perception, "Describe the image:")
    post = _prompt_ids(diverse_perception, " The image shows")
    n_img = vision.tokens_per_image
    ids = pre + [cfg.image_token_id] * n_img + post
    pixels = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255.0
    pixels = (pixels - 0.5) / 0.5  # SigLIP mean/std, as the manifest says

    embeds = vision.encode(image)
    assert embeds.shape == (n_img, cfg.text_config.hidden_size) and embeds.dtype == np.float32
    lm.feed_tokens(pre)
    lm.feed_embeddings(embeds)
    first = lm.feed_tokens(post)
    assert lm.n_past == len(ids)
    with torch.no_grad():
        ref_first = model(input_ids=torch.tensor([ids]), pixel_values=pixels).logits[0, -1].numpy()
    assert np.abs(first - ref_first).max() <= 1e-4
    ours = _ours_greedy(lm, first, 16)
    assert ours == _torch_greedy(model, ids, 16, pixel_values=pixels)
    assert len(set(ours)) >= 4
    # the image matters: another image changes the greedy continuation
    lm.reset()
    lm.feed_tokens(pre)
    lm.feed_embeddings(vision.encode(255 - image))
    assert _ours_greedy(lm, lm.feed_tokens(post), 16) != ours


def test_truncate_reuses_a_prefix(reasoner_bundle):
    lm, _ = _load(reasoner_bundle, "reasoner")
    prefix, tail_a, tail_b = [5, 6, 7, 8], [9, 10, 11], [12, 13]
    lm.feed_tokens(prefix)
    lm.feed_tokens(tail_a)
    lm.truncate(len(prefix))
    assert lm.n_past == len(prefix)
    reused = lm.feed_tokens(tail_b)
    lm.reset()
    assert lm.n_past == 0
    fresh = lm.feed_tokens(prefix + tail_b)
    assert np.abs(reused - fresh).max() <= 1e-5
    # one token at a time gives the same logits as one call
    lm.reset()
    for t in prefix + tail_b:
        step = lm.feed_tokens([t])
    assert np.abs(step - fresh).max() <= 1e-5
    lm.truncate(0)
    assert lm.n_past == 0


def test_long_prompts_are_fed_in_chunks(reasoner_bundle, monkeypatch):
    import runtime.backends.onnx as backend

    lm, _ = _load(reasoner_bundle, "reasoner")
    ids = list(range(10, 30))
    whole = lm.feed_tokens(ids)
    calls = []
    run = lm._decoder.run_with_ort_values
    monkeypatch.setattr(backend, "PREFILL_CHUNK", 6)
    monkeypatch.setattr(lm._decoder, "run_with_ort_values",
                        lambda names, feeds: calls.append(1) or run(names, feeds), raising=False)
    lm.reset()
    chunked = lm.feed_tokens(ids)
    assert len(calls) == 4 and lm.n_past == 20
    assert np.abs(chunked - whole).max() <= 1e-5


def test_int4_bundle_decodes(tmp_path_factory, tiny_perception_dir):
    root = _bundle(tmp_path_factory, tiny_perception_dir, "perception", "int4")
    lm, vision = _load(root, "perception")
    size = vision.image_size
    lm.feed_embeddings(vision.encode(np.zeros((size, size, 3), np.uint8)))
    logits = lm.feed_tokens([1, 2, 3])
    for _ in range(8):
        logits = lm.feed_tokens([int(logits.argmax())])
    assert np.isfinite(logits).all() and lm.n_past == vision.tokens_per_image + 11


def test_threads_and_context_options(reasoner_bundle):
    from runtime.backends.base import BackendOptions
    from runtime.errors import ConfigError, ContextOverflowError, InputError

    lm, _ = _load(reasoner_bundle, "reasoner", BackendOptions(threads=2, context_length=8))
    assert lm.n_ctx == 8
    assert lm._decoder.get_session_options().intra_op_num_threads == 2
    lm.feed_tokens(list(range(6)))
    with pytest.raises(ContextOverflowError, match="do not fit the context of 8"):
        lm.feed_tokens([1, 2, 3])
    assert lm.n_past == 6  # a refused call changes nothing
    with pytest.raises(InputError, match="threads"):
        _load(reasoner_bundle, "reasoner", BackendOptions(threads=0))
    with pytest.raises(ConfigError, match="NoSuchExecutionProvider"):
        _load(reasoner_bundle, "reasoner", BackendOptions(providers=("NoSuchExecutionProvider",)))


# --- bad input -------------------------------------------------------------------------


def test_bad_calls_are_input_errors(reasoner_bundle, perception_bundle):
    from runtime.errors import ImageError, InputError

    lm, _ = _load(reasoner_bundle, "reasoner")
    with pytest.raises(InputError, match="at least one token"):
        lm.feed_tokens([])
    with pytest.raises(InputError, match="outside the vocabulary"):
        lm.feed_tokens([1, lm.n_vocab])
    with pytest.raises(InputError, match="outside the vocabulary"):
        lm.feed_tokens([-1])
    with pytest.raises(InputError, match="embeddings must be"):
        lm.feed_embeddings(np.zeros((2, 7), np.float32))
    with pytest.raises(InputError, match="cannot truncate"):
        lm.truncate(1)
    assert lm.n_past == 0

    _, vision = _load(perception_bundle, "perception")
    size = vision.image_size
    with pytest.raises(ImageError, match="uint8"):
        vision.encode(np.zeros((size, size, 3), np.float32))
    with pytest.raises(ImageError, match="uint8"):
        vision.encode(np.zeros((size + 1, size, 3), np.uint8))


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"hidden_size": 96}, "inputs_embeds has shape"),
        ({"num_layers": 3}, "missing input past_key_values.2.key"),
        ({"num_layers": 1}, "unexpected input past_key_values.1"),
        ({"num_kv_heads": 4}, "past_key_values.0.key has shape"),
        ({"vocab_size": 4096}, "fewer than 4096 rows"),
    ],
)
def test_shape_mismatch_is_a_bundle_error(tmp_path_factory, tiny_reasoner_dir, override, message):
    from runtime.errors import BundleError

    root = _bundle(tmp_path_factory, tiny_reasoner_dir, "reasoner", "fp32", **override)
    with pytest.raises(BundleError, match=message):
        _load(root, "reasoner")


def test_vision_shape_mismatch_is_a_bundle_error(tmp_path, perception_bundle):
    import shutil

    from runtime.errors import BundleError

    root = tmp_path / "b"
    shutil.copytree(perception_bundle, root)
    manifest = json.loads((root / "manifest.json").read_text())
    # self-consistent (image_size 32 / patch 4 = 8x8 tokens), so only the ONNX graph (3x3) disagrees
    manifest["models"]["perception"]["vision"].update(patch_size=4, tokens_per_image=64)
    (root / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="image_embeds has shape"):
        _load(root, "perception")


def test_corrupt_onnx_is_a_bundle_error(tmp_path, reasoner_bundle):
    import shutil

    from runtime.errors import BundleError

    root = tmp_path / "b"
    shutil.copytree(reasoner_bundle, root)
    manifest = json.loads((root / "manifest.json").read_text())
    name = manifest["models"]["reasoner"]["artifacts"][0]["files"]["decoder"]
    size = (root / name).stat().st_size
    (root / name).write_bytes(b"\x08\x07garbage" * (size // 9) + b"x" * (size % 9))
    # the size still matches, so only onnxruntime can notice
    with pytest.raises(BundleError, match="onnxruntime cannot load it"):
        _load(root, "reasoner", verify="size")


def test_missing_onnxruntime_names_the_extra(reasoner_bundle, monkeypatch):
    from runtime.errors import BackendUnavailableError

    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(BackendUnavailableError, match=r"pip install -e '\.\[onnx\]' from the extract-think-edge checkout \(or: pip install onnxruntime\)"):
        _load(reasoner_bundle, "reasoner")


def test_gguf_artifact_is_refused(reasoner_bundle):
    from runtime.backends.base import BackendOptions
    from runtime.backends.onnx import load
    from runtime.bundle import open_bundle
    from runtime.errors import BundleError
    from runtime.manifest import Artifact

    bundle = open_bundle(reasoner_bundle)
    with pytest.raises(BundleError, match="cannot load a gguf artifact"):
        load(bundle, "reasoner", Artifact("gguf", "f32", {"model": "x.gguf"}), BackendOptions())
    art = bundle.artifact("reasoner", "onnx")
    no_embed = Artifact("onnx", art.quant, {"decoder": art.files["decoder"]})
    with pytest.raises(BundleError, match="has no embed file"):
        load(bundle, "reasoner", no_embed, BackendOptions())


def test_runs_without_torch_or_transformers(perception_bundle):
    """The backend imports and decodes with torch, transformers and jinja2 blocked."""
    res = run_without(WITHOUT_TORCH, f"""
        import numpy as np
        from runtime.backends.base import BackendOptions
        from runtime.backends.onnx import load
        from runtime.bundle import open_bundle
        b = open_bundle({str(perception_bundle)!r})
        lm, vision = load(b, "perception", b.artifact("perception", "onnx"), BackendOptions(threads=1))
        lm.feed_embeddings(vision.encode(np.zeros((vision.image_size, vision.image_size, 3), np.uint8)))
        print(int(lm.feed_tokens([1, 2]).argmax()), lm.n_past)
    """, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.attempted == []
    assert res.stdout.split()[1] == "18"
