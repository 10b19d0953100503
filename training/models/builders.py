"""Build the two modules as standard transformers models.

perception: `LlavaForConditionalGeneration` = SigLIP vision tower (no pooling head) +
2-layer GELU MLP projector + Qwen3 decoder. Features are the last kept SigLIP layer's
hidden states before the post-layernorm (LLaVA-OneVision's choice), all patches.
reasoner: `Qwen3ForCausalLM`.

Both save with `save_pretrained` (config.json + safetensors) and reload with
`from_pretrained`; see `training.models.loading`. torch and transformers are imported
inside the builders (seconds to import; `training.models.sizes` users need neither).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from training.models.sizes import TextSize, VisionSize

if TYPE_CHECKING:
    from transformers import (
        LlavaConfig,
        LlavaForConditionalGeneration,
        Qwen3Config,
        Qwen3ForCausalLM,
    )


def qwen3_config(size: TextSize, *, vocab_size: int | None = None, **special: int) -> Qwen3Config:
    from transformers import Qwen3Config

    return Qwen3Config(
        hidden_size=size.hidden_size,
        intermediate_size=size.intermediate_size,
        num_hidden_layers=size.num_hidden_layers,
        num_attention_heads=size.num_attention_heads,
        num_key_value_heads=size.num_key_value_heads,
        head_dim=size.head_dim,
        vocab_size=vocab_size or size.vocab_size,
        max_position_embeddings=size.max_position_embeddings,
        rope_parameters={"rope_type": "default", "rope_theta": size.rope_theta},
        rms_norm_eps=size.rms_norm_eps,
        tie_word_embeddings=size.tie_word_embeddings,
        hidden_act="silu",
        attention_bias=False,
        **special,
    )


def siglip_config(size: VisionSize):
    from transformers import SiglipVisionConfig

    return SiglipVisionConfig(
        hidden_size=size.hidden_size,
        intermediate_size=size.intermediate_size,
        num_hidden_layers=size.num_hidden_layers,
        num_attention_heads=size.num_attention_heads,
        image_size=size.image_size,
        patch_size=size.patch_size,
        layer_norm_eps=size.layer_norm_eps,
        hidden_act="gelu_pytorch_tanh",
        vision_use_head=False,
    )


def perception_config(
    vision: VisionSize, text: TextSize, *, image_token_id: int, vocab_size: int | None = None,
    eos_token_id: int | None = None, pad_token_id: int | None = None,
) -> LlavaConfig:
    from transformers import LlavaConfig

    special = {k: v for k, v in (("eos_token_id", eos_token_id), ("pad_token_id", pad_token_id)) if v is not None}
    return LlavaConfig(
        vision_config=siglip_config(vision),
        text_config=qwen3_config(text, vocab_size=vocab_size, **special),
        image_token_id=image_token_id,
        image_seq_length=vision.tokens_per_image,
        projector_hidden_act="gelu",
        vision_feature_select_strategy="full",
        vision_feature_layer=-1,
        multimodal_projector_bias=True,
        tie_word_embeddings=text.tie_word_embeddings,
    )


def build_perception(config: LlavaConfig, *, seed: int | None = 0) -> LlavaForConditionalGeneration:
    """A randomly initialised perception model (seeded for reproducible fixtures)."""
    import torch
    from transformers import LlavaForConditionalGeneration

    if seed is not None:
        torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(config)
    return model.eval()


def build_reasoner(config: Qwen3Config, *, seed: int | None = 0) -> Qwen3ForCausalLM:
    import torch
    from transformers import Qwen3ForCausalLM

    if seed is not None:
        torch.manual_seed(seed)
    return Qwen3ForCausalLM(config).eval()
