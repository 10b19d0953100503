"""A grouped-query attention written for the exported graph, used only while exporting.

transformers' sdpa/eager attention repeats every key/value head for its query heads
(`repeat_kv`: an Expand + Reshape) and transposes the repeated keys, so each decode step
copied the whole cache twice more per layer; at 1,000 cached positions that was ~35 % of
a Qwen3-0.6B-shape step. Here the query heads that share a key/value head are folded
into the query-length axis instead, [b, kv, groups*s, d] @ [b, kv, d, t], so the cache
is read in place, and the key transpose fuses into the MatMul (transB) in onnxruntime.
Same arithmetic as eager attention; parity is checked by the export tests.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

IMPLEMENTATION = "edge_onnx_gqa"


def gqa_attention(
    module: Any, query: Any, key: Any, value: Any, attention_mask: Any, scaling: float,
    dropout: float = 0.0, **kwargs: Any,
) -> tuple[Any, None]:
    import torch

    b, heads, s, d = query.shape
    kv_heads, t = key.shape[1], key.shape[2]
    groups = heads // kv_heads
    # Head h uses kv head h // groups (repeat_kv's order), so heads are contiguous per group.
    q = (query * scaling).reshape(b, kv_heads, groups * s, d)
    scores = torch.matmul(q, key.transpose(2, 3))  # [b, kv, groups*s, t]
    if attention_mask is not None:
        mask = attention_mask[:, :, None, :, :t]  # [b, 1, 1, s, t] additive
        scores = (scores.view(b, kv_heads, groups, s, t) + mask).view(b, kv_heads, groups * s, t)
    probs = torch.softmax(scores, dim=-1, dtype=torch.float32).to(query.dtype)
    out = torch.matmul(probs, value)  # [b, kv, groups*s, d]
    return out.view(b, heads, s, d).transpose(1, 2).contiguous(), None


def _register() -> None:
    from transformers.masking_utils import AttentionMaskInterface, eager_mask
    from transformers.modeling_utils import AttentionInterface

    AttentionInterface.register(IMPLEMENTATION, gqa_attention)
    AttentionMaskInterface.register(IMPLEMENTATION, eager_mask)  # additive float mask


@contextlib.contextmanager
def export_attention(text_config: Any) -> Iterator[None]:
    """Route the decoder's attention through `gqa_attention` for the duration."""
    _register()
    previous = text_config._attn_implementation
    text_config._attn_implementation = IMPLEMENTATION
    try:
        yield
    finally:
        text_config._attn_implementation = previous
