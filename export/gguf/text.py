"""Qwen3 decoder -> GGUF (architecture "qwen3"), with full tokenizer metadata.

The decoder is either a `Qwen3ForCausalLM` (reasoner) or the language model inside a
LLaVA-style perception model (`model.model.language_model` + `model.lm_head`). Weights keep
the HF (out, in) layout: llama.cpp's qwen3 graph needs no q/k permutation. Every key
llama.cpp would otherwise guess is written explicitly: `key_length`/`value_length` because
Qwen3's head_dim is not hidden/heads, and `rope.freq_base` because a missing one silently
becomes 10000 and the logits are wrong.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gguf import GGML_QUANT_VERSION

from export.gguf.quantize import QuantSpec, choose_type
from export.gguf.vocab import add_vocab, read_vocab
from export.gguf.writer import Progress, TensorPlan, write_gguf_file
from runtime.chat_format import CHAT_TEMPLATE
from runtime.errors import ConfigError
from runtime.gguf_constants import QWEN3_ARCH

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TextParts:
    config: Any  # Qwen3Config
    decoder: Any  # Qwen3Model (embed_tokens, layers, norm)
    lm_head: Any  # nn.Linear
    tied: bool


def text_parts(model: Any) -> TextParts:
    """The Qwen3 decoder of a supported model, with its config checked for llama.cpp."""
    cfg = getattr(model, "config", None)
    mtype = getattr(cfg, "model_type", None)
    if mtype == "llava":
        cfg, decoder = cfg.text_config, model.model.language_model
    elif mtype == "qwen3":
        decoder = model.model
    else:
        raise ConfigError(
            f"unsupported architecture {mtype!r}: GGUF export handles Qwen3 (reasoner) and "
            "LLaVA-style SigLIP + MLP + Qwen3 (perception) models"
        )
    check_text_config(cfg)
    lm_head = model.lm_head
    emb = decoder.embed_tokens.weight
    tied = lm_head.weight is emb or (
        lm_head.weight.shape == emb.shape and bool((lm_head.weight == emb).all())
    )
    return TextParts(cfg, decoder, lm_head, tied)


def rope_theta(cfg: Any) -> float:
    params = getattr(cfg, "rope_parameters", None) or {}
    scaling = getattr(cfg, "rope_scaling", None) or {}
    rtype = params.get("rope_type") or scaling.get("rope_type") or scaling.get("type") or "default"
    if rtype != "default":
        raise ConfigError(f"unsupported RoPE scaling {rtype!r}: only plain RoPE is exported to GGUF")
    theta = params.get("rope_theta", getattr(cfg, "rope_theta", None))
    if theta is None:
        raise ConfigError("the text config has no rope_theta")
    return float(theta)


def head_dim(cfg: Any) -> int:
    return int(getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads)


def check_text_config(cfg: Any) -> None:
    if getattr(cfg, "model_type", None) != "qwen3":
        raise ConfigError(f"the text model is {getattr(cfg, 'model_type', None)!r}, not qwen3")
    if getattr(cfg, "hidden_act", "silu") != "silu":
        raise ConfigError(f"unsupported hidden_act {cfg.hidden_act!r} (Qwen3 uses silu)")
    if getattr(cfg, "attention_bias", False):
        raise ConfigError("attention_bias=True is not supported by llama.cpp's qwen3 graph")
    if getattr(cfg, "use_sliding_window", False):
        raise ConfigError("sliding-window attention is not supported in the GGUF export")
    layer_types = getattr(cfg, "layer_types", None) or []
    if any(t != "full_attention" for t in layer_types):
        raise ConfigError("only full-attention Qwen3 layers are supported in the GGUF export")
    rope_theta(cfg)


def _np(param: Any):
    """A float32 numpy view/copy of a torch parameter."""
    return param.detach().to("cpu").float().contiguous().numpy()


# tensors that are (also) the vocabulary matrix: quantized more gently, see quantize.py
EMBED_LIKE = ("token_embd.weight", "output.weight")


def text_tensor_params(parts: TextParts) -> dict[str, Any]:
    """GGUF tensor name -> the torch parameter it is written from (file order)."""
    d = parts.decoder
    out: dict[str, Any] = {"token_embd.weight": d.embed_tokens.weight}
    for i, layer in enumerate(d.layers):
        att, mlp = layer.self_attn, layer.mlp
        out.update({
            f"blk.{i}.attn_norm.weight": layer.input_layernorm.weight,
            f"blk.{i}.attn_q.weight": att.q_proj.weight,
            f"blk.{i}.attn_k.weight": att.k_proj.weight,
            f"blk.{i}.attn_v.weight": att.v_proj.weight,
            f"blk.{i}.attn_output.weight": att.o_proj.weight,
            f"blk.{i}.attn_q_norm.weight": att.q_norm.weight,
            f"blk.{i}.attn_k_norm.weight": att.k_norm.weight,
            f"blk.{i}.ffn_norm.weight": layer.post_attention_layernorm.weight,
            f"blk.{i}.ffn_gate.weight": mlp.gate_proj.weight,
            f"blk.{i}.ffn_up.weight": mlp.up_proj.weight,
            f"blk.{i}.ffn_down.weight": mlp.down_proj.weight,
        })
    out["output_norm.weight"] = d.norm.weight
    if not parts.tied:
        out["output.weight"] = parts.lm_head.weight
    return out


def plan_text_tensors(parts: TextParts, spec: QuantSpec) -> list[TensorPlan]:
    plans: list[TensorPlan] = []
    for name, param in text_tensor_params(parts).items():
        shape = tuple(int(s) for s in param.shape)
        ttype = choose_type(spec, name, shape, embed_like=name in EMBED_LIKE)
        plans.append(TensorPlan(name, shape, ttype, lambda p=param: _np(p)))
    return plans


def qwen3_metadata(cfg: Any, vocab: Any, spec: QuantSpec, *, name: str, n_rows: int) -> Callable[[Any], None]:
    """The `qwen3` architecture's GGUF keys for `cfg` (a transformers Qwen3Config, or any
    object with its field names such as training.models.sizes.TextSize), the tokenizer
    `vocab` and the chat template, as a writer callback."""
    hd = head_dim(cfg)

    def metadata(w) -> None:
        w.add_name(name)
        w.add_file_type(spec.file_type)
        if spec.weight_type not in ("F32", "F16", "BF16"):
            w.add_quantization_version(GGML_QUANT_VERSION)
        w.add_context_length(int(cfg.max_position_embeddings))
        w.add_embedding_length(int(cfg.hidden_size))
        w.add_block_count(int(cfg.num_hidden_layers))
        w.add_feed_forward_length(int(cfg.intermediate_size))
        w.add_head_count(int(cfg.num_attention_heads))
        w.add_head_count_kv(int(cfg.num_key_value_heads))
        w.add_layer_norm_rms_eps(float(cfg.rms_norm_eps))
        w.add_key_length(hd)
        w.add_value_length(hd)
        w.add_rope_freq_base(rope_theta(cfg))
        w.add_vocab_size(n_rows)
        add_vocab(w, vocab, CHAT_TEMPLATE)

    return metadata


def write_text_gguf(
    model: Any,
    tokenizer_dir: Path,
    path: Path,
    spec: QuantSpec,
    *,
    name: str,
    progress: Progress | None = None,
) -> Path:
    """Write the decoder of `model` with the tokenizer in `tokenizer_dir` to `path`."""
    parts = text_parts(model)
    cfg = parts.config
    n_rows = int(parts.decoder.embed_tokens.weight.shape[0])
    vocab = read_vocab(Path(tokenizer_dir), n_rows)
    if len(parts.decoder.layers) != cfg.num_hidden_layers:
        raise ConfigError(
            f"the model has {len(parts.decoder.layers)} layers but its config says {cfg.num_hidden_layers}"
        )

    metadata = qwen3_metadata(cfg, vocab, spec, name=name, n_rows=n_rows)
    plans = plan_text_tensors(parts, spec)
    return write_gguf_file(path, QWEN3_ARCH, metadata, plans, progress=progress, stage="text model")
