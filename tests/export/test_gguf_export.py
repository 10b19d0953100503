"""GGUF export: parity against PyTorch through llama.cpp, file layout, quantization, errors."""

from __future__ import annotations

import copy
import logging
from pathlib import Path

import numpy as np
import pytest

from export.gguf import GGUF_QUANTS, export_gguf, verify_gguf
from runtime.chat_format import CHAT_TEMPLATE
from runtime.errors import ConfigError


def fields(path: Path) -> dict:
    from gguf import GGUFReader

    return {k: f.contents() for k, f in GGUFReader(path).fields.items()}


def tensor_types(path: Path) -> dict[str, str]:
    from gguf import GGUFReader

    return {t.name: t.tensor_type.name for t in GGUFReader(path).tensors}


def tensor_bytes(path: Path) -> dict[str, bytes]:
    from gguf import GGUFReader

    return {t.name: bytes(np.asarray(t.data).tobytes()) for t in GGUFReader(path).tensors}


# -- parity (the acceptance numbers) -------------------------------------------

def test_f32_reasoner_matches_torch(gguf_f32_dir, reasoner_model, tiny_tokenizer_dir):
    report = verify_gguf(gguf_f32_dir, {"model": "reasoner-f32.gguf"}, "f32", reasoner_model, tiny_tokenizer_dir)
    m = report["metrics"]
    assert report["passed"], report
    assert m["max_abs_logit_diff"] <= 1e-3
    assert m["n_positions"] >= 200
    assert m["top1_agreement"] == 1.0
    assert m["tokenizer_mismatches"] == 0
    assert report["tolerances"]["max_abs_logit_diff"] == 1e-3


def test_f32_perception_matches_torch(gguf_f32_dir, perception_model, tiny_tokenizer_dir):
    files = {"model": "perception-f32.gguf", "mmproj": "perception-mmproj-f32.gguf"}
    report = verify_gguf(gguf_f32_dir, files, "f32", perception_model, tiny_tokenizer_dir)
    m = report["metrics"]
    assert report["passed"], report
    assert m["max_abs_logit_diff"] <= 1e-3  # text decoder, teacher-forced
    assert m["image_embed_max_diff"] <= 1e-2  # mmproj vs get_image_features
    assert m["tokens_per_image"] == 16
    assert m["multimodal_max_abs_logit_diff"] <= 1e-3  # prompt with the image spliced in
    assert m["multimodal_top1_agreement"] == 1.0


@pytest.mark.parametrize("quant, failing", [("f32", "max_abs_logit_diff"),
                                             ("q4_k_m", "dequant_logit_correlation")])
def test_verify_catches_a_broken_export(quant, failing, reasoner_model, tiny_tokenizer_dir, tmp_path,
                                        monkeypatch):
    """A wrong RoPE base (what a missing rope.freq_base silently gives) must fail parity, also
    under 4-bit noise: top-1 (0.996) and raw correlation (0.96) barely notice it on a random
    model, the comparison with the file's own dequantized weights does."""
    import export.gguf.text as text

    monkeypatch.setattr(text, "rope_theta", lambda cfg: 10_000.0)
    files = export_gguf(reasoner_model, tiny_tokenizer_dir, tmp_path, role="reasoner", quant=quant)
    report = verify_gguf(tmp_path, files, quant, reasoner_model, tiny_tokenizer_dir)
    assert not report["passed"]
    assert report["checks"][failing] is False
    assert report["checks"]["tokenizer_mismatches"] is True


@pytest.mark.parametrize("role", ["reasoner", "perception"])
def test_q8_0_top1_agreement(role, reasoner_model, perception_model, tiny_tokenizer_dir, tmp_path):
    model = reasoner_model if role == "reasoner" else perception_model
    files = export_gguf(model, tiny_tokenizer_dir, tmp_path, role=role, quant="q8_0")
    report = verify_gguf(tmp_path, files, "q8_0", model, tiny_tokenizer_dir)
    assert report["metrics"]["n_positions"] >= 200
    assert report["metrics"]["top1_agreement"] >= 0.98
    assert report["metrics"]["dequant_logit_correlation"] >= 0.999
    assert report["metrics"]["gguf_missing_tensors"] == 0
    assert report["passed"], report


@pytest.mark.parametrize("quant", [q for q in GGUF_QUANTS if q not in ("f32", "q8_0")])
def test_every_quant_exports_loads_and_passes(quant, reasoner_model, tiny_tokenizer_dir, tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="export.gguf"):
        files = export_gguf(reasoner_model, tiny_tokenizer_dir, tmp_path, role="reasoner", quant=quant)
    assert files == {"model": f"reasoner-{quant}.gguf"}
    report = verify_gguf(tmp_path, files, quant, reasoner_model, tiny_tokenizer_dir)
    assert report["passed"], report["metrics"]
    assert fields(tmp_path / files["model"])["general.file_type"] == {
        "f16": 1, "bf16": 32, "q4_0": 2, "q4_1": 3, "q5_0": 8, "q5_1": 9,
        "q4_k_m": 15, "q5_k_m": 17, "q6_k": 18}[quant]
    if quant.startswith(("q4_k", "q5_k", "q6_k")):
        # tiny rows (64, 128) are not multiples of 256: llama.cpp falls back, we log it
        assert "not a multiple of 256" in caplog.text


def test_quant_types_per_tensor(reasoner_model, tiny_tokenizer_dir, tmp_path):
    export_gguf(reasoner_model, tiny_tokenizer_dir, tmp_path, role="reasoner", quant="q4_0")
    types = tensor_types(tmp_path / "reasoner-q4_0.gguf")
    assert types["blk.0.attn_q.weight"] == "Q4_0"
    assert types["blk.0.ffn_down.weight"] == "Q4_0"
    assert types["token_embd.weight"] == "Q8_0"  # tied: it is also the output matrix
    assert types["blk.0.attn_norm.weight"] == "F32"
    assert types["output_norm.weight"] == "F32"
    assert "output.weight" not in types  # tied embeddings: llama.cpp reuses token_embd


@pytest.mark.parametrize("qtype", ["Q8_0", "Q4_0"])
def test_python_quants_are_byte_identical_to_llama_cpp(qtype, gguf_f32_dir, reasoner_model,
                                                      tiny_tokenizer_dir, tmp_path):
    import ctypes

    from runtime.backends.llamacpp import llama_lib

    quant = qtype.lower()
    export_gguf(reasoner_model, tiny_tokenizer_dir, tmp_path, role="reasoner", quant=quant)
    llama, _ = llama_lib()
    params = llama.llama_model_quantize_default_params()
    params.ftype = {"Q8_0": 7, "Q4_0": 2}[qtype]
    params.pure = True
    params.nthread = 1
    ref = tmp_path / "reference.gguf"
    rc = llama.llama_model_quantize(str(gguf_f32_dir / "reasoner-f32.gguf").encode(), str(ref).encode(),
                                    ctypes.byref(params))
    assert rc == 0
    ours, theirs = tensor_bytes(tmp_path / f"reasoner-{quant}.gguf"), tensor_bytes(ref)
    blocks = [n for n in ours if n.startswith("blk.") and n.endswith(("_q.weight", "_k.weight", "_v.weight",
                                                                       "output.weight", "gate.weight",
                                                                       "up.weight", "down.weight"))]
    assert len(blocks) == 14
    for name in blocks:
        assert tensor_types(ref)[name] == qtype
        assert ours[name] == theirs[name], name


# -- file layout and metadata ----------------------------------------------------------

def test_text_gguf_metadata(gguf_f32_dir, reasoner_model):
    f = fields(gguf_f32_dir / "reasoner-f32.gguf")
    cfg = reasoner_model.config
    assert f["general.architecture"] == "qwen3"
    assert f["qwen3.block_count"] == cfg.num_hidden_layers
    assert f["qwen3.embedding_length"] == cfg.hidden_size
    assert f["qwen3.attention.head_count"] == cfg.num_attention_heads
    assert f["qwen3.attention.head_count_kv"] == cfg.num_key_value_heads
    assert f["qwen3.attention.key_length"] == f["qwen3.attention.value_length"] == cfg.head_dim
    assert cfg.head_dim != cfg.hidden_size // cfg.num_attention_heads  # the case that needs the key
    assert f["qwen3.rope.freq_base"] == pytest.approx(1e6)
    assert f["qwen3.context_length"] == cfg.max_position_embeddings
    assert f["tokenizer.ggml.model"] == "gpt2"
    assert f["tokenizer.ggml.pre"] == "qwen2"
    assert f["tokenizer.chat_template"] == CHAT_TEMPLATE
    assert f["tokenizer.ggml.add_bos_token"] is False
    tokens, types = f["tokenizer.ggml.tokens"], f["tokenizer.ggml.token_type"]
    rows = reasoner_model.model.embed_tokens.weight.shape[0]
    assert len(tokens) == len(types) == rows  # one per embedding row, padded
    assert tokens[f["tokenizer.ggml.eos_token_id"]] == "<|im_end|>"
    assert types[tokens.index("<|im_end|>")] == 3  # control
    assert types[tokens.index("<think>")] == 4  # user-defined (not special in HF)
    assert types[-1] == 5 and tokens[-1] == f"[PAD{rows - 1}]"  # unused padding row
    assert all(" " in m for m in f["tokenizer.ggml.merges"][:10])


def test_mmproj_metadata_and_tensors(gguf_f32_dir, perception_model):
    path = gguf_f32_dir / "perception-mmproj-f32.gguf"
    f = fields(path)
    v = perception_model.config.vision_config
    assert f["general.architecture"] == "clip"
    assert f["clip.projector_type"] == "mlp"
    assert f["clip.use_gelu"] is True
    assert f["clip.vision.image_size"] == v.image_size
    assert f["clip.vision.block_count"] == v.num_hidden_layers
    assert f["clip.vision.feature_layer"] == [v.num_hidden_layers]  # all kept layers, not n-1
    assert f["clip.vision.projection_dim"] == perception_model.config.text_config.hidden_size
    assert f["clip.vision.image_mean"] == [0.5, 0.5, 0.5]
    names = tensor_types(path)
    assert "v.post_ln.weight" not in names  # LLaVA features are taken before it
    assert {"mm.0.weight", "mm.0.bias", "mm.2.weight", "mm.2.bias", "v.patch_embd.weight",
            "v.position_embd.weight", "v.blk.1.ffn_down.weight"} <= set(names)
    assert fields(gguf_f32_dir / "perception-f32.gguf")["general.architecture"] == "qwen3"


def test_perception_export_names_and_mmproj_precision(perception_model, tiny_tokenizer_dir, tmp_path):
    files = export_gguf(perception_model, tiny_tokenizer_dir, tmp_path, role="perception", quant="q8_0")
    assert files == {"model": "perception-q8_0.gguf", "mmproj": "perception-mmproj-f16.gguf"}
    types = tensor_types(tmp_path / files["mmproj"])
    assert types["v.blk.0.attn_q.weight"] == "F16"
    assert types["v.blk.0.attn_q.bias"] == "F32"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(files.values())  # no temp files


def test_progress_is_reported(reasoner_model, tiny_tokenizer_dir, tmp_path):
    seen = []
    export_gguf(reasoner_model, tiny_tokenizer_dir, tmp_path, role="reasoner", quant="q4_k_m",
                progress=lambda stage, frac: seen.append((stage, frac)))
    stages = {s for s, _ in seen}
    assert {"text model", "quantize"} <= stages
    assert all(0.0 <= f <= 1.0 for _, f in seen)
    assert seen[-1] == ("quantize", 1.0)


def test_untied_output_is_written(reasoner_model, tiny_tokenizer_dir, tmp_path):
    import torch

    model = copy.deepcopy(reasoner_model)
    model.lm_head.weight = torch.nn.Parameter(model.lm_head.weight.detach().clone() * 1.5)
    model.config.tie_word_embeddings = False
    files = export_gguf(model, tiny_tokenizer_dir, tmp_path, role="reasoner", quant="f32")
    assert "output.weight" in tensor_types(tmp_path / files["model"])
    report = verify_gguf(tmp_path, files, "f32", model, tiny_tokenizer_dir)
    assert report["passed"], report["metrics"]


# -- bad input ---------------------------------------------------------------------------

def test_quant_names_match_the_manifest():
    from runtime import manifest

    assert set(GGUF_QUANTS) == set(manifest.GGUF_QUANTS)
    assert all(q == q.lower() for q in GGUF_QUANTS)


@pytest.mark.parametrize("quant", ["q3_k", "int8", "", "Q8"])
def test_unsupported_quant(quant, reasoner_model, tiny_tokenizer_dir, tmp_path):
    with pytest.raises(ConfigError, match="unsupported GGUF quantization"):
        export_gguf(reasoner_model, tiny_tokenizer_dir, tmp_path, role="reasoner", quant=quant)
    assert list(tmp_path.iterdir()) == []


def test_quant_names_are_case_insensitive(reasoner_model, tiny_tokenizer_dir, tmp_path):
    files = export_gguf(reasoner_model, tiny_tokenizer_dir, tmp_path, role="reasoner", quant="Q8_0")
    assert files == {"model": "reasoner-q8_0.gguf"}


def test_non_qwen3_model_is_refused(tiny_tokenizer_dir, tmp_path):
    from transformers import LlamaConfig, LlamaForCausalLM

    model = LlamaForCausalLM(LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                         num_attention_heads=2, num_key_value_heads=2, vocab_size=1280))
    with pytest.raises(ConfigError, match="model_type 'llama'"):
        export_gguf(model, tiny_tokenizer_dir, tmp_path, role="reasoner", quant="f32")
    assert list(tmp_path.iterdir()) == []


def test_role_must_match_model(reasoner_model, perception_model, tiny_tokenizer_dir, tmp_path):
    with pytest.raises(ConfigError, match="perception model must be"):
        export_gguf(reasoner_model, tiny_tokenizer_dir, tmp_path, role="perception", quant="f32")
    with pytest.raises(ConfigError, match="reasoner model must be"):
        export_gguf(perception_model, tiny_tokenizer_dir, tmp_path, role="reasoner", quant="f32")
    with pytest.raises(ConfigError, match="role must be"):
        export_gguf(reasoner_model, tiny_tokenizer_dir, tmp_path, role="planner", quant="f32")


@pytest.mark.parametrize("change, match", [
    (lambda c: setattr(c, "attention_bias", True), "attention_bias"),
    (lambda c: setattr(c, "hidden_act", "gelu"), "hidden_act"),
    (lambda c: setattr(c, "rope_parameters", {"rope_type": "yarn", "rope_theta": 1e6, "factor": 4.0}),
     "RoPE scaling"),
])
def test_unsupported_text_configs(change, match, reasoner_model, tiny_tokenizer_dir, tmp_path):
    model = copy.deepcopy(reasoner_model)
    change(model.config)
    with pytest.raises(ConfigError, match=match):
        export_gguf(model, tiny_tokenizer_dir, tmp_path, role="reasoner", quant="f32")


@pytest.mark.parametrize("change, match", [
    (lambda c: setattr(c, "vision_feature_select_strategy", "default"), "vision_feature_select_strategy"),
    (lambda c: setattr(c, "vision_feature_layer", [-1, -2]), "single feature layer"),
    (lambda c: setattr(c.vision_config, "hidden_act", "relu"), "vision activation"),
])
def test_unsupported_vision_configs(change, match, perception_model, tiny_tokenizer_dir, tmp_path):
    model = copy.deepcopy(perception_model)
    change(model.config)
    with pytest.raises(ConfigError, match=match):
        export_gguf(model, tiny_tokenizer_dir, tmp_path, role="perception", quant="f32")
    assert list(tmp_path.iterdir()) == []


def test_penultimate_feature_layer_exports_fewer_blocks(perception_model, tiny_tokenizer_dir, tmp_path):
    model = copy.deepcopy(perception_model)
    model.config.vision_feature_layer = -2  # LLaVA-1.5 style: one layer before the last
    files = export_gguf(model, tiny_tokenizer_dir, tmp_path, role="perception", quant="f32")
    f = fields(tmp_path / files["mmproj"])
    assert f["clip.vision.block_count"] == 1 and f["clip.vision.feature_layer"] == [1]
    report = verify_gguf(tmp_path, files, "f32", model, tiny_tokenizer_dir)
    assert report["metrics"]["image_embed_max_diff"] <= 1e-2, report["metrics"]


def test_mmproj_normalises_with_the_checkpoint_mean_std(perception_model, tiny_tokenizer_dir, tmp_path):
    """CLIP-style mean/std from preprocessor_config.json: stored in the mmproj, and parity only
    holds if mtmd really normalises with the stored values."""
    import json
    import shutil

    ckpt = tmp_path / "ckpt"
    shutil.copytree(tiny_tokenizer_dir, ckpt)
    mean, std = [0.48145466, 0.4578275, 0.40821073], [0.26862954, 0.26130258, 0.27577711]
    (ckpt / "preprocessor_config.json").write_text(json.dumps({"image_mean": mean, "image_std": std}))
    files = export_gguf(perception_model, ckpt, tmp_path / "out", role="perception", quant="f32")
    f = fields(tmp_path / "out" / files["mmproj"])
    assert f["clip.vision.image_mean"] == pytest.approx(mean) and f["clip.vision.image_std"] == pytest.approx(std)
    report = verify_gguf(tmp_path / "out", files, "f32", perception_model, ckpt)
    assert report["metrics"]["image_embed_rel_diff"] < 1e-2, report["metrics"]
    assert report["passed"]
    # the same files checked against SigLIP's 0.5/0.5 pixels must fail: the stored values matter
    plain = verify_gguf(tmp_path / "out", files, "f32", perception_model, tiny_tokenizer_dir)
    assert plain["metrics"]["image_embed_rel_diff"] > 1e-2


def test_image_size_not_a_multiple_of_patch(tiny_tokenizer_dir, tmp_path):
    """Like SigLIP-so400m (384 px, 14 px patches -> 27 x 27): the remainder is dropped."""
    from dataclasses import replace

    from training.models.loading import load_perception
    from training.models.sizes import siglip_tiny
    from training.models.tiny import tiny_perception

    ckpt = tiny_perception(tmp_path / "ckpt", tiny_tokenizer_dir, vision=replace(siglip_tiny(), image_size=36))
    model = load_perception(ckpt)
    files = export_gguf(model, tiny_tokenizer_dir, tmp_path / "out", role="perception", quant="f32")
    report = verify_gguf(tmp_path / "out", files, "f32", model, tiny_tokenizer_dir)
    assert report["metrics"]["tokens_per_image"] == 16  # (36 // 8) ** 2
    assert report["passed"], report["metrics"]


def test_tokenizer_larger_than_embedding_is_refused(reasoner_model, qwen3_tokenizer_dir, tmp_path):
    with pytest.raises(ConfigError, match="do not belong together"):
        export_gguf(reasoner_model, qwen3_tokenizer_dir, tmp_path, role="reasoner", quant="f32")
    assert list(tmp_path.iterdir()) == []


def test_non_qwen_pretokenizer_is_refused(reasoner_model, tiny_tokenizer_dir, tmp_path):
    import json
    import shutil

    tdir = tmp_path / "tok"
    shutil.copytree(tiny_tokenizer_dir, tdir)
    data = json.loads((tdir / "tokenizer.json").read_text())
    data["pre_tokenizer"] = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
                             "use_regex": True}
    (tdir / "tokenizer.json").write_text(json.dumps(data))
    with pytest.raises(ConfigError, match="not Qwen2's"):
        export_gguf(reasoner_model, tdir, tmp_path / "out", role="reasoner", quant="f32")


def test_missing_tokenizer_and_unwritable_output(reasoner_model, tiny_tokenizer_dir, tmp_path):
    with pytest.raises(ConfigError, match="no tokenizer.json"):
        export_gguf(reasoner_model, tmp_path, tmp_path / "out", role="reasoner", quant="f32")
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(ConfigError, match="cannot create the output folder"):
        export_gguf(reasoner_model, tiny_tokenizer_dir, blocker / "out", role="reasoner", quant="f32")


def test_interrupted_write_leaves_nothing(tmp_path):
    from export.gguf.writer import TensorPlan, write_gguf_file

    def boom():
        raise KeyboardInterrupt

    plans = [TensorPlan("a.weight", (4, 32), "F32", lambda: np.ones((4, 32), np.float32)),
             TensorPlan("b.weight", (4, 32), "Q8_0", boom)]
    with pytest.raises(KeyboardInterrupt):
        write_gguf_file(tmp_path / "x.gguf", "qwen3", lambda w: None, plans)
    assert list(tmp_path.iterdir()) == []


# -- interoperability with stock llama-cpp-python ---------------------------------------------

def test_stock_llama_cpp_python_chat_with_image(perception_model, tiny_tokenizer_dir, tmp_path):
    """The files work in llama-cpp-python's own multimodal chat path (MTMDChatHandler),
    which renders the GGUF's chat template with list-of-parts content."""
    import base64
    import io

    from PIL import Image

    from tests.support.stock_llama import patch_default_params

    patch_default_params()  # routes native logs too, before the stock classes load
    from llama_cpp import Llama
    from llama_cpp.llama_chat_format import MTMDChatHandler

    files = export_gguf(perception_model, tiny_tokenizer_dir, tmp_path, role="perception", quant="q8_0")
    handler = MTMDChatHandler(clip_model_path=str(tmp_path / files["mmproj"]), verbose=False, use_gpu=False)
    llm = Llama(model_path=str(tmp_path / files["model"]), chat_handler=handler, n_ctx=512, n_threads=1,
                verbose=False)
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(buf, "PNG")
    url = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()

    def ask(parts):
        r = llm.create_chat_completion(messages=[{"role": "user", "content": parts}], max_tokens=6,
                                       temperature=0.0)
        return r["usage"], r["choices"][0]["message"]["content"]

    text = {"type": "text", "text": "Describe the image."}
    with_image, content = ask([{"type": "image_url", "image_url": {"url": url}}, text])
    without, _ = ask([text])
    llm.close()
    assert isinstance(content, str) and with_image["completion_tokens"] >= 1
    assert with_image["prompt_tokens"] - without["prompt_tokens"] >= 16  # the image's 16 embeddings
