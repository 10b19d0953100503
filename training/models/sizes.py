"""Named model sizes with every hyperparameter spelled out.

The published sizes match the released configs exactly, so real checkpoints
(`Qwen/Qwen3-*`, `google/siglip-so400m-patch14-384`, the paper's perception models)
load into them. The small sizes are what the tests and the shipped default bundle use.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from runtime.errors import ConfigError


@dataclass(frozen=True)
class TextSize:
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    vocab_size: int = 151_936
    max_position_embeddings: int = 40_960
    rope_theta: float = 1_000_000.0
    rms_norm_eps: float = 1e-6
    tie_word_embeddings: bool = True


@dataclass(frozen=True)
class VisionSize:
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int  # layers kept: the perception features come from the last one
    num_attention_heads: int
    image_size: int
    patch_size: int
    layer_norm_eps: float = 1e-6

    @property
    def tokens_per_image(self) -> int:
        return (self.image_size // self.patch_size) ** 2


def qwen3_0_6b() -> TextSize:
    return TextSize(hidden_size=1024, intermediate_size=3072, num_hidden_layers=28, num_attention_heads=16,
                    num_key_value_heads=8, head_dim=128)


def qwen3_1_7b() -> TextSize:
    return TextSize(hidden_size=2048, intermediate_size=6144, num_hidden_layers=28, num_attention_heads=16,
                    num_key_value_heads=8, head_dim=128)


def qwen3_4b() -> TextSize:
    return TextSize(hidden_size=2560, intermediate_size=9728, num_hidden_layers=36, num_attention_heads=32,
                    num_key_value_heads=8, head_dim=128)


def qwen3_8b() -> TextSize:
    return TextSize(hidden_size=4096, intermediate_size=12288, num_hidden_layers=36, num_attention_heads=32,
                    num_key_value_heads=8, head_dim=128, tie_word_embeddings=False)


def qwen3_tiny() -> TextSize:
    """Two layers, GQA and head_dim != hidden/heads like every real Qwen3: for tests."""
    return TextSize(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                    num_key_value_heads=2, head_dim=32, vocab_size=1_280, max_position_embeddings=2_048)


def qwen3_edge_s() -> TextSize:
    """The shipped default bundle's decoders (~3.4M parameters, CPU-trainable in minutes).

    Widths are multiples of 256 so llama.cpp's K-quants apply without fallbacks."""
    return TextSize(hidden_size=256, intermediate_size=768, num_hidden_layers=4, num_attention_heads=4,
                    num_key_value_heads=2, head_dim=64, vocab_size=2_048, max_position_embeddings=4_096)


def qwen3_micro_s() -> TextSize:
    """The downscaling study's smallest decoder (benchmarks/study, smoke preset): one layer, 32 wide.

    Row widths stay multiples of 32 so every GGUF type (q8_0's blocks are 32) applies."""
    return TextSize(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                    num_key_value_heads=1, head_dim=16, vocab_size=1_280, max_position_embeddings=2_048)


def qwen3_micro_m() -> TextSize:
    """The downscaling study's larger micro decoder (benchmarks/study, laptop preset): 128 wide,
    4 layers, GQA 4/2 heads of 32; about 5x the non-embedding parameters of `qwen3-tiny`."""
    return TextSize(hidden_size=128, intermediate_size=384, num_hidden_layers=4, num_attention_heads=4,
                    num_key_value_heads=2, head_dim=32, vocab_size=2_048, max_position_embeddings=4_096)


def siglip_so400m_patch14_384(layers_used: int = 26) -> VisionSize:
    """SigLIP-so400m at 384 px: 27 layers published; LLaVA-OneVision drops the last one."""
    return VisionSize(hidden_size=1152, intermediate_size=4304, num_hidden_layers=layers_used,
                      num_attention_heads=16, image_size=384, patch_size=14)


def siglip_tiny() -> VisionSize:
    return VisionSize(hidden_size=32, intermediate_size=80, num_hidden_layers=2, num_attention_heads=2,
                      image_size=32, patch_size=8)


def siglip_edge_s() -> VisionSize:
    """The default bundle's tower: 96 px images in 32 px patches = 9 image tokens.

    The synthetic world puts one object per cell of a 3x3 grid; at 96 px a patch is
    exactly one cell, which lets a tower trained from scratch on a CPU learn in minutes."""
    return VisionSize(hidden_size=192, intermediate_size=768, num_hidden_layers=4, num_attention_heads=3,
                      image_size=96, patch_size=32)


def siglip_edge_m() -> VisionSize:
    """The default bundle's tower since 2026-12-07: 96 px images in 16 px patches = 36 image tokens.

    Same width and depth as `siglip-edge-s`, four patches per grid cell (the vision stage's
    cell heads read them averaged). On the held-out world the bundle with it named colours
    in 57% of questions against 11% with 32 px patches, places in 51% against 79%, and shapes
    no better (docs/training.md, "Perception experiments")."""
    return VisionSize(hidden_size=192, intermediate_size=768, num_hidden_layers=4, num_attention_heads=3,
                      image_size=96, patch_size=16)


TEXT_SIZES: dict[str, Callable[[], TextSize]] = {
    "qwen3-0.6b": qwen3_0_6b,
    "qwen3-1.7b": qwen3_1_7b,
    "qwen3-4b": qwen3_4b,
    "qwen3-8b": qwen3_8b,
    "qwen3-tiny": qwen3_tiny,
    "qwen3-edge-s": qwen3_edge_s,
    "qwen3-micro-s": qwen3_micro_s,
    "qwen3-micro-m": qwen3_micro_m,
}

VISION_SIZES: dict[str, Callable[[], VisionSize]] = {
    "siglip-so400m-patch14-384": siglip_so400m_patch14_384,
    "siglip-tiny": siglip_tiny,
    "siglip-edge-s": siglip_edge_s,
    "siglip-edge-m": siglip_edge_m,
}

# Hub ids of the published checkpoints for each named size.
HUB_IDS: dict[str, str] = {
    "qwen3-0.6b": "Qwen/Qwen3-0.6B",
    "qwen3-1.7b": "Qwen/Qwen3-1.7B",
    "qwen3-4b": "Qwen/Qwen3-4B",
    "qwen3-8b": "Qwen/Qwen3-8B",
    "siglip-so400m-patch14-384": "google/siglip-so400m-patch14-384",
}


def text_size(name: str) -> TextSize:
    try:
        return TEXT_SIZES[name]()
    except KeyError:
        raise ConfigError(f"unknown text size {name!r} (known: {', '.join(TEXT_SIZES)})") from None


def vision_size(name: str) -> VisionSize:
    try:
        return VISION_SIZES[name]()
    except KeyError:
        raise ConfigError(f"unknown vision size {name!r} (known: {', '.join(VISION_SIZES)})") from None
