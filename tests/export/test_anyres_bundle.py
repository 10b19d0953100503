"""A paper-layout checkpoint (anyres_max_9, spatial_unpad, learned image_newline) converted and
exported with `input_mode anyres`, run on both backends and held against an independent
torch re-implementation of the fork's layout (tests/support/anyres_reference.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from runtime.backends import choose_artifact, load_model
from runtime.backends.base import BackendOptions
from runtime.bundle import open_bundle
from runtime.image_layout import encode_image, load_views, resolve_layout
from runtime.pipeline import ExtractThink
from tests.export.test_convert_llava_ov import _paper_checkpoint
from tests.support.anyres_reference import pil_views, torch_merge

PINPOINTS = [[32 * i, 32 * j] for i in range(1, 7) for j in range(1, 7)]
# square, wide 4:3 (unpad crop), tall, small, a 5x3-tile grid shrunk after an odd crop
SIZES = [(32, 32), (53, 40), (25, 100), (4, 4), (160, 90)]


@pytest.fixture(scope="module")
def paper(tmp_path_factory, tiny_tokenizer_dir):
    from safetensors.torch import load_file

    from export.bundle_writer import ExportRequest, export_bundle
    from export.convert_llava_ov import convert_llava_ov

    root = tmp_path_factory.mktemp("anyres")
    tower, proj, lm, image_id = _paper_checkpoint(root / "paper", tiny_tokenizer_dir)
    cfg = json.loads((root / "paper" / "config.json").read_text())
    cfg["image_grid_pinpoints"] = PINPOINTS  # the released form: [w, h] pixel pairs
    (root / "paper" / "config.json").write_text(json.dumps(cfg))
    newline = load_file(str(root / "paper" / "model.safetensors"))["model.image_newline"]
    conv = convert_llava_ov(root / "paper", root / "converted", vision_heads=2)
    bundle = export_bundle(ExportRequest(out=root / "bundle", perception=conv, formats=("gguf", "onnx"),
                                         quants=("f32",), input_mode="anyres", verify=False))
    return {"bundle": open_bundle(bundle), "tower": tower, "proj": proj, "lm": lm, "newline": newline,
            "image_id": image_id, "converted": conv}


def _image(size, seed):
    w, h = size
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8), "RGB")


def _reference(paper, img):
    """Pixels, tower, projector and merge, all in torch from the paper-layout weights."""
    views = pil_views(img, img.size, [tuple(p) for p in PINPOINTS], 32)
    x = torch.from_numpy(views).permute(0, 3, 1, 2).float() / 255.0
    x = (x - 0.5) / 0.5
    with torch.no_grad():
        feats = paper["proj"](paper["tower"](x, output_hidden_states=True).hidden_states[-1])
        merged = torch_merge(feats, img.size, [tuple(p) for p in PINPOINTS], 32, paper["newline"])
    return views, merged.numpy()


def test_manifest_records_the_layout_and_keeps_the_newline(paper):
    b = paper["bundle"]
    entry = b.manifest.model("perception")
    lay = entry.image_layout
    assert b.manifest.format_version == 2
    assert (lay.input_mode, lay.pool, lay.max_tiles) == ("anyres", 1, 9)
    assert [list(p) for p in lay.pinpoints] == PINPOINTS
    stored = np.frombuffer(b.path(lay.newline).read_bytes(), dtype="<f4")
    assert np.array_equal(stored, paper["newline"].numpy())
    note = json.loads((paper["converted"] / "conversion.json").read_text())
    assert note["mode"] == "anyres" and note["dropped_weights"] == []


@pytest.mark.parametrize("backend", ["llamacpp", "onnx"])
def test_assembled_sequence_equals_torch_reimplementation(paper, backend):
    b = paper["bundle"]
    entry = b.manifest.model("perception")
    spec = resolve_layout(b, entry)
    _, art = choose_artifact(b, "perception", backend, None)
    lm, vision = load_model(b, "perception", backend, art, BackendOptions(threads=1, kv_cache_type="f32"))
    try:
        for i, size in enumerate(SIZES):
            img = _image(size, i)
            ref_views, want = _reference(paper, img)
            views, plan, _ = load_views(img, spec, entry.image)
            assert np.array_equal(views, ref_views), size  # the fork's pixels, exactly
            got = encode_image(vision, views, plan, spec)
            assert got.shape == want.shape == (plan.tokens, 64), size
            if backend == "onnx":  # the export's own parity tolerances (export/*/verify.py)
                assert np.abs(got - want).max() < 1e-4, size
            else:  # llama.cpp's clip: image_embed_rel_diff < 1e-2 of the largest magnitude
                assert np.abs(got - want).max() / np.abs(want).max() < 1e-2, size
            a = plan.anyres
            for r in range(a.out_rows):  # the newline ends every row, exactly
                assert np.array_equal(got[16 + r * (a.out_cols + 1) + a.out_cols], paper["newline"].numpy())
            if i == 1:
                _check_logits(paper, lm, got, want, backend)
    finally:
        lm.close()
        vision.close()


def _check_logits(paper, lm, embeds, ref_embeds, backend):
    """The whole perception model: the backend fed its assembled sequence vs the paper-layout
    LM in torch fed the torch re-implementation's sequence, within the exporters' parity
    tolerances (f32: max abs 1e-3 for ONNX; llama.cpp, whose clip rounds the image more:
    the multimodal logit correlation >= 0.999 of export/gguf/verify.py)."""
    before, after = [5, 6, 7], [8, 9, 10]
    lm.reset()
    lm.feed_tokens(before)
    lm.feed_embeddings(embeds)
    got = lm.feed_tokens(after)
    ids = torch.tensor([before + [paper["image_id"]] * embeds.shape[0] + after])
    with torch.no_grad():
        emb = paper["lm"].model.embed_tokens(ids).clone()
        emb[0, 3:3 + embeds.shape[0]] = torch.from_numpy(ref_embeds)
        want = paper["lm"](inputs_embeds=emb).logits[0, -1].numpy()
    if backend == "onnx":
        assert np.abs(got - want).max() < 1e-3
    else:
        assert np.corrcoef(got, want)[0, 1] >= 0.999


@pytest.mark.parametrize("backend", ["llamacpp", "onnx"])
def test_pipeline_runs_both_modes_and_the_token_cap(paper, backend):
    img = _image((160, 90), 9)
    kw = dict(mode="end-to-end", sampling="greedy", answer_budget=2)
    with ExtractThink.load(paper["bundle"], backend=backend, threads=1, speed_cache=False) as et:
        full = et.answer(img, "What is it?", **kw)
    with ExtractThink.load(paper["bundle"], backend=backend, threads=1, speed_cache=False,
                           max_image_tokens=60) as et:
        capped = et.answer(img, "What is it?", **kw)
    with ExtractThink.load(paper["bundle"], backend=backend, threads=1, speed_cache=False,
                           input_mode="single") as et:
        single = et.answer(img, "What is it?", **kw)
    assert full.stages["vision"].tokens == 160  # 16 + 9 rows x (15 + 1): shrunk from 5x3 tiles
    assert capped.stages["vision"].tokens <= 60 and capped.stages["vision"].tokens > 16
    assert single.stages["vision"].tokens == 16
    assert full.stages["answer"].prompt_tokens - single.stages["answer"].prompt_tokens == 160 - 16


def test_export_records_pooling_and_refuses_anyres_without_a_layout(tmp_path, tiny_perception_dir):
    from export.bundle_writer import ExportRequest, export_bundle
    from runtime.errors import ConfigError, InputError

    with pytest.raises(ConfigError, match="no any-resolution layout"):
        export_bundle(ExportRequest(out=tmp_path / "a", perception=tiny_perception_dir, quants=("f32",),
                                    input_mode="anyres", verify=False))
    with pytest.raises(InputError, match="16, 4"):
        export_bundle(ExportRequest(out=tmp_path / "b", perception=tiny_perception_dir, quants=("f32",),
                                    image_tokens=9, verify=False))
    out = export_bundle(ExportRequest(out=tmp_path / "c", perception=tiny_perception_dir, quants=("f32",),
                                      image_tokens=4, verify=False))
    lay = open_bundle(out).manifest.model("perception").image_layout
    assert (lay.input_mode, lay.pool, lay.pinpoints, lay.newline) == ("single", 2, (), None)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_gguf_and_onnx_assemble_the_same_sequence(paper):
    """One wide image through both backends: same token count, same newline rows, and the
    embeddings within llama.cpp's image tolerance of each other."""
    b = paper["bundle"]
    entry = b.manifest.model("perception")
    spec = resolve_layout(b, entry)
    views, plan, _ = load_views(_image((53, 40), 3), spec, entry.image)
    out = {}
    for backend in ("llamacpp", "onnx"):
        _, art = choose_artifact(b, "perception", backend, None)
        lm, vision = load_model(b, "perception", backend, art, BackendOptions(threads=1))
        try:
            out[backend] = encode_image(vision, views, plan, spec)
        finally:
            lm.close()
            vision.close()
    a, o = out["llamacpp"], out["onnx"]
    assert a.shape == o.shape == (plan.tokens, 64) and plan.views == 5
    nl = [16 + r * (plan.anyres.out_cols + 1) + plan.anyres.out_cols for r in range(plan.anyres.out_rows)]
    assert np.array_equal(a[nl], o[nl])
    assert np.abs(a - o).max() / np.abs(o).max() < 1e-2
