"""ONNX export parity against PyTorch, on tiny random-weight models, in real onnxruntime."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.onnx_support import exported

ort = pytest.importorskip("onnxruntime")


def _kv_feed(cfg, batch, past_len=0):
    shape = (batch, cfg.num_key_value_heads, past_len, cfg.head_dim)
    return {
        f"past_key_values.{i}.{k}": np.zeros(shape, np.float32)
        for i in range(cfg.num_hidden_layers) for k in ("key", "value")
    }


def test_fp32_reasoner_matches_pytorch(tmp_path_factory, tiny_reasoner_dir, reasoner_model):
    from export.onnx import verify_onnx

    out, files = exported(tmp_path_factory, tiny_reasoner_dir, "reasoner", "fp32")
    assert set(files) == {"decoder", "embed"}
    assert sorted(p.name for p in out.iterdir()) == sorted(files.values())  # no leftovers
    report = verify_onnx(out, files, "fp32", reasoner_model, tiny_reasoner_dir)
    m = report["metrics"]
    # batch 2, prefill then one token at a time through the KV cache
    assert m["positions"] >= 400
    assert m["logits_max_diff"] <= 1e-4
    assert m["embed_max_diff"] == 0.0
    assert m["top1_agreement"] == 1.0
    assert report["passed"] and all(report["checks"].values())


def test_fp32_perception_vision_and_image_prompt(tmp_path_factory, tiny_perception_dir, perception_model):
    from export.onnx import verify_onnx

    out, files = exported(tmp_path_factory, tiny_perception_dir, "perception", "fp32")
    assert set(files) == {"decoder", "embed", "vision"}
    report = verify_onnx(out, files, "fp32", perception_model, tiny_perception_dir)
    m = report["metrics"]
    assert m["vision_max_diff"] <= 1e-4
    assert m["image_logits_max_diff"] <= 1e-4
    assert m["logits_max_diff"] <= 1e-4
    assert report["passed"]


def test_vision_graph_has_dynamic_batch(tmp_path_factory, tiny_perception_dir, perception_model):
    out, files = exported(tmp_path_factory, tiny_perception_dir, "perception", "fp32")
    sess = ort.InferenceSession(str(out / files["vision"]), providers=["CPUExecutionProvider"])
    size = perception_model.config.vision_config.image_size
    for batch in (1, 3):
        pixels = np.random.default_rng(batch).uniform(-1, 1, (batch, 3, size, size)).astype(np.float32)
        got = sess.run(["image_embeds"], {"pixel_values": pixels})[0]
        with torch.no_grad():
            hs = perception_model.model.vision_tower(torch.from_numpy(pixels), output_hidden_states=True)
            ref = perception_model.model.multi_modal_projector(hs.hidden_states[-1]).numpy()
        assert got.shape == ref.shape
        assert np.abs(got - ref).max() <= 1e-4


def test_decoder_left_padded_batch_and_last_logits(tmp_path_factory, tiny_reasoner_dir, reasoner_model):
    """Batch 2 with a left-padded row; logits_index picks the last position only."""
    out, files = exported(tmp_path_factory, tiny_reasoner_dir, "reasoner", "fp32")
    dec = ort.InferenceSession(str(out / files["decoder"]), providers=["CPUExecutionProvider"])
    emb = ort.InferenceSession(str(out / files["embed"]), providers=["CPUExecutionProvider"])
    cfg = reasoner_model.config
    ids = np.random.default_rng(0).integers(0, cfg.vocab_size, (2, 9))
    mask = np.ones((2, 9), np.int64)
    mask[1, :3] = 0  # row 1 is 6 real tokens, left-padded
    positions = np.maximum(np.cumsum(mask, axis=1) - 1, 0)
    with torch.no_grad():
        ref = reasoner_model(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask),
                       position_ids=torch.from_numpy(positions)).logits.numpy()
    feed = {"inputs_embeds": emb.run(None, {"input_ids": ids})[0], "attention_mask": mask,
            "position_ids": positions, "logits_index": np.array([8], np.int64), **_kv_feed(cfg, 2)}
    outs = dec.run(None, feed)
    assert outs[0].shape == (2, 1, cfg.vocab_size)  # one row, not [seq, vocab]
    assert np.abs(outs[0][:, 0] - ref[:, -1]).max() <= 1e-4
    # the present cache is past + seq long
    assert outs[1].shape == (2, cfg.num_key_value_heads, 9, cfg.head_dim)


def test_int8_top1_agreement(tmp_path_factory, tiny_reasoner_dir, reasoner_model):
    from export.onnx import verify_onnx

    out, files = exported(tmp_path_factory, tiny_reasoner_dir, "reasoner", "int8")
    assert files["embed"].endswith("-embed-int8.onnx")
    report = verify_onnx(out, files, "int8", reasoner_model, tiny_reasoner_dir)
    assert report["metrics"]["positions"] >= 200
    assert report["metrics"]["top1_agreement"] >= 0.95
    # margins here stand far above the int8 noise: nearly every position is decisive
    m = report["metrics"]
    assert m["decisive_positions"] >= 0.9 * m["positions"]
    assert m["top1_agreement_decisive"] >= 0.95 and report["checks"]["top1_agreement_decisive"]
    assert m["logits_rel_rms"] <= 0.10
    assert report["passed"]
    # the quantized decoder is smaller than the float one
    fp32_out, fp32_files = exported(tmp_path_factory, tiny_reasoner_dir, "reasoner", "fp32")
    assert (out / files["decoder"]).stat().st_size < 0.6 * (fp32_out / fp32_files["decoder"]).stat().st_size


def test_int4_exports_loads_and_runs(tmp_path_factory, tiny_perception_dir, perception_model):
    from export.onnx import verify_onnx

    out, files = exported(tmp_path_factory, tiny_perception_dir, "perception", "int4")
    import onnx

    ops = {n.op_type for n in onnx.load(str(out / files["decoder"])).graph.node}
    assert "MatMulNBits" in ops
    report = verify_onnx(out, files, "int4", perception_model, tiny_perception_dir)
    assert report["metrics"]["top1_agreement"] >= 0.8
    assert report["metrics"]["vision_max_diff"] <= 1e-4  # the vision graph stays fp32
    assert report["passed"]


@pytest.mark.parametrize("quant", ["fp32", "int8"])
def test_files_load_in_a_plain_session(tmp_path_factory, tiny_reasoner_dir, quant):
    out, files = exported(tmp_path_factory, tiny_reasoner_dir, "reasoner", quant)
    for name in files.values():
        sess = ort.InferenceSession(str(out / name))
        assert sess.get_inputs() and sess.get_outputs()


def test_export_is_deterministic(tmp_path, tmp_path_factory, tiny_reasoner_dir, reasoner_model):
    """Shared file names (embed, vision) across quants are safe: same model, same bytes."""
    from export.onnx import export_onnx
    from runtime.bundle import sha256_file

    out, files = exported(tmp_path_factory, tiny_reasoner_dir, "reasoner", "fp32")
    again = export_onnx(reasoner_model, tiny_reasoner_dir, tmp_path, role="reasoner", quant="fp32")
    assert again == files
    for name in files.values():
        assert sha256_file(tmp_path / name) == sha256_file(out / name)


def test_progress_is_reported(tmp_path, tiny_reasoner_dir, reasoner_model):
    from export.onnx import export_onnx

    seen = []
    export_onnx(reasoner_model, tiny_reasoner_dir, tmp_path, role="reasoner", quant="int4",
                progress=lambda stage, frac: seen.append((stage, frac)))
    fracs = [f for _, f in seen]
    assert fracs == sorted(fracs) and fracs[0] == 0.0 and fracs[-1] == 1.0
    assert any("quantiz" in s for s, _ in seen)


# --- bad input -------------------------------------------------------------------------


def test_unsupported_quant_is_a_config_error(tmp_path, tiny_reasoner_dir, reasoner_model):
    from export.onnx import export_onnx
    from runtime.errors import ConfigError

    with pytest.raises(ConfigError, match="unsupported ONNX quantization 'q4_k_m'"):
        export_onnx(reasoner_model, tiny_reasoner_dir, tmp_path, role="reasoner", quant="q4_k_m")
    assert not any(tmp_path.iterdir())


def test_non_float32_model_is_refused(tmp_path, tiny_reasoner_dir):
    from export.onnx import export_onnx
    from runtime.errors import ConfigError
    from training.models.loading import load_reasoner

    half = load_reasoner(tiny_reasoner_dir, dtype=torch.float16)
    with pytest.raises(ConfigError, match="float32"):
        export_onnx(half, tiny_reasoner_dir, tmp_path, role="reasoner", quant="fp32")


def test_interrupted_export_leaves_nothing(tmp_path, tiny_reasoner_dir, reasoner_model, monkeypatch):
    """A failure mid-way (here: in the quantizer) leaves no file that looks finished."""
    import export.onnx
    from export.onnx import export_onnx

    def boom(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(export.onnx, "quantize_decoder", boom)  # the name export_onnx calls
    with pytest.raises(KeyboardInterrupt):
        export_onnx(reasoner_model, tiny_reasoner_dir, tmp_path, role="reasoner", quant="int8")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("quant", ["fp32", "int4"])
def test_external_data_is_published_and_listed(tmp_path, tiny_reasoner_dir, reasoner_model, monkeypatch, quant):
    """Graphs over the protobuf limit get `<name>.onnx.data`; forced here on a tiny model."""
    import export.onnx.common as common
    import export.onnx.quantize as quantize
    from export.onnx import export_onnx, verify_onnx

    monkeypatch.setattr(common, "EXTERNAL_DATA_THRESHOLD", 0)
    monkeypatch.setattr(quantize, "EXTERNAL_DATA_THRESHOLD", 0)
    files = export_onnx(reasoner_model, tiny_reasoner_dir, tmp_path, role="reasoner", quant=quant)
    assert files["decoder_data"] == files["decoder"] + ".data"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(files.values())
    assert (tmp_path / files["decoder_data"]).stat().st_size > 0
    assert all((tmp_path / n).stat().st_mode & 0o777 == 0o644 for n in files.values())
    report = verify_onnx(tmp_path, files, quant, reasoner_model, tiny_reasoner_dir)
    assert report["passed"], report["metrics"]


def test_verify_catches_a_broken_quantization(tmp_path, tmp_path_factory, tiny_reasoner_dir, reasoner_model):
    """The quantized gates are not vacuous: scrambled int8 weights fail verification."""
    import shutil

    import onnx
    from onnx import numpy_helper

    from export.onnx import verify_onnx

    out, files = exported(tmp_path_factory, tiny_reasoner_dir, "reasoner", "int8")
    for name in files.values():
        shutil.copy(out / name, tmp_path / name)
    model = onnx.load(str(tmp_path / files["decoder"]))
    rng = np.random.default_rng(0)
    for init in model.graph.initializer:
        if init.data_type in (onnx.TensorProto.INT8, onnx.TensorProto.UINT8) and len(init.dims) == 2:
            w = numpy_helper.to_array(init)
            init.CopyFrom(numpy_helper.from_array(rng.permutation(w.reshape(-1)).reshape(w.shape), init.name))
    onnx.save(model, str(tmp_path / files["decoder"]))
    report = verify_onnx(tmp_path, files, "int8", reasoner_model, tiny_reasoner_dir)
    assert not report["passed"]
    assert report["metrics"]["logits_rel_rms"] > 0.10
    assert not report["checks"]["logits_rel_rms"]
    # what `edge export` says when parity fails: the artifact, the metric, its value, its limit
    from export.verify import failure_summary

    said = failure_summary({"artifacts": [report]})
    value = f"{report['metrics']['logits_rel_rms']:.3g}"
    assert said.startswith("reasoner onnx/int8: ") and f"logits_rel_rms {value} (limit 0.1)" in said, said
    assert failure_summary({"artifacts": [{**report, "passed": True}]}) == ""
