"""The paper-checkpoint converter, on a small checkpoint written in the paper's exact layout.

The reference forward assembles the original layout by hand (SigLIP tower, nn.Sequential
projector, Qwen3 LM with image features spliced into the embeddings) so the converter's
key mapping and config translation are checked against an independent implementation.
"""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from runtime.errors import ConfigError
from runtime.tokenizer import BundleTokenizer
from training.models.builders import qwen3_config, siglip_config
from training.models.sizes import VisionSize, qwen3_tiny

VISION = VisionSize(hidden_size=32, intermediate_size=80, num_hidden_layers=3, num_attention_heads=2,
                    image_size=32, patch_size=8)


def _paper_checkpoint(root, tokenizer_dir):
    """Write a LLaVA-OneVision-fork checkpoint: keys, config fields and 26-of-27 layer cut."""
    from safetensors.torch import save_file
    from transformers import Qwen3ForCausalLM, SiglipVisionModel

    torch.manual_seed(0)
    tok = BundleTokenizer(tokenizer_dir / "tokenizer.json")
    text = qwen3_tiny()
    tower = SiglipVisionModel(siglip_config(VISION)).eval()
    del tower.encoder.layers[-1:]  # the fork drops SigLIP's last layer at load time
    lm = Qwen3ForCausalLM(qwen3_config(text)).eval()
    proj = torch.nn.Sequential(torch.nn.Linear(32, 64), torch.nn.GELU(), torch.nn.Linear(64, 64))
    state = {f"model.vision_tower.vision_tower.vision_model.{k}": v for k, v in tower.state_dict().items()}
    state.update({f"model.mm_projector.{k}": v for k, v in proj.state_dict().items()})
    state.update({k: v for k, v in lm.state_dict().items() if k != "lm_head.weight"})  # tied
    state["model.image_newline"] = torch.randn(64)
    root.mkdir()
    save_file({k: v.contiguous() for k, v in state.items()}, str(root / "model.safetensors"))
    cfg = {
        "architectures": ["LlavaQwen3ForCausalLM"], "model_type": "llava_qwen_3",
        "hidden_size": text.hidden_size, "intermediate_size": text.intermediate_size,
        "num_hidden_layers": text.num_hidden_layers, "num_attention_heads": text.num_attention_heads,
        "num_key_value_heads": text.num_key_value_heads, "head_dim": text.head_dim,
        "vocab_size": text.vocab_size, "max_position_embeddings": text.max_position_embeddings,
        "rope_theta": text.rope_theta, "rms_norm_eps": text.rms_norm_eps, "tie_word_embeddings": True,
        "mm_vision_tower": "tiny-test-siglip", "mm_projector_type": "mlp2x_gelu", "mm_hidden_size": 32,
        "mm_vision_select_layer": -2, "mm_vision_select_feature": "patch",
        "image_aspect_ratio": "anyres_max_9", "mm_patch_merge_type": "spatial_unpad",
        "torch_dtype": "float32",
    }
    (root / "config.json").write_text(json.dumps(cfg))
    shutil.copy(tokenizer_dir / "tokenizer.json", root / "tokenizer.json")
    return tower, proj, lm, tok.token_id("<|image_pad|>")


def _reference_logits(tower, proj, lm, ids, image_id, pixels):
    with torch.no_grad():
        feats = proj(tower(pixels, output_hidden_states=True).hidden_states[-1])
        emb = lm.model.embed_tokens(ids).clone()
        emb[ids == image_id] = feats.reshape(-1, feats.shape[-1])
        return lm(inputs_embeds=emb).logits


def test_converted_logits_equal_original_layout(tmp_path, tiny_tokenizer_dir):
    from export.convert_llava_ov import convert_llava_ov, is_paper_checkpoint
    from training.models.loading import load_perception

    src = tmp_path / "paper"
    tower, proj, lm, image_id = _paper_checkpoint(src, tiny_tokenizer_dir)
    assert is_paper_checkpoint(src)
    out = convert_llava_ov(src, tmp_path / "converted", vision_heads=2)
    note = json.loads((out / "conversion.json").read_text())
    assert note["dropped_weights"] == ["model.image_newline"] and note["vision_layers"] == 2
    # anyres_max_9 without pinpoints: converted single-view, the note says why
    assert note["image_layout"] is None and "no image_grid_pinpoints" in note["image_layout_why"]
    model = load_perception(out)
    assert model.config.vision_config.num_hidden_layers == 2
    n = VISION.tokens_per_image
    ids = torch.tensor([[5, 6, 7] + [image_id] * n + [8, 9, 10, 11]])
    pixels = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        got = model(input_ids=ids, pixel_values=pixels).logits
    want = _reference_logits(tower, proj, lm, ids, image_id, pixels)
    assert (got - want).abs().max().item() < 1e-5


def test_converter_errors(tmp_path, tiny_tokenizer_dir, tiny_reasoner_dir):
    from export.convert_llava_ov import convert_llava_ov

    with pytest.raises(ConfigError, match="not a paper checkpoint"):
        convert_llava_ov(tiny_reasoner_dir, tmp_path / "x")
    src = tmp_path / "paper"
    _paper_checkpoint(src, tiny_tokenizer_dir)
    with pytest.raises(ConfigError, match="attention heads"):
        convert_llava_ov(src, tmp_path / "y")
    cfg = json.loads((src / "config.json").read_text())
    (src / "config.json").write_text(json.dumps({**cfg, "mm_projector_type": "linear"}))
    with pytest.raises(ConfigError, match="projector 'linear'"):
        convert_llava_ov(src, tmp_path / "z", vision_heads=2)
    (src / "config.json").write_text(json.dumps(cfg))
    (src / "model.safetensors").write_bytes(b"truncated")
    with pytest.raises(ConfigError, match="unreadable safetensors"):
        convert_llava_ov(src, tmp_path / "w", vision_heads=2)
    assert not (tmp_path / "w").exists() and not list(tmp_path.glob(".w.*"))
