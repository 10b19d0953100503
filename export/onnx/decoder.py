"""The Qwen3 decoder with KV cache as one ONNX graph that takes input embeddings.

Taking `inputs_embeds` (not ids) lets the same graph serve text and image positions;
the embedding table is its own graph (embed.py). `logits_index` selects which positions
of the call get logits, so the runtime's prefill computes one row of the 151,936-wide
vocabulary instead of `seq` rows, while verification asks for every position.
"""

from __future__ import annotations

import inspect
import logging
from pathlib import Path
from typing import Any

from export.onnx.attention import export_attention
from export.onnx.common import ModelParts, quiet_exporter, save_program
from runtime.backends.onnx import (
    DECODER_EMBEDS,
    DECODER_LOGITS,
    DECODER_LOGITS_INDEX,
    DECODER_MASK,
    DECODER_POSITIONS,
    KV_KINDS,
    past_name,
    present_name,
)

log = logging.getLogger(__name__)


def _decoder_module(parts: ModelParts) -> Any:
    import torch
    from transformers import DynamicCache

    lm, head = parts.language_model, parts.lm_head
    # transformers 5.x renames `past_key_values` to `cache`; accept either spelling.
    cache_kw = "cache" if "cache" in inspect.signature(lm.forward).parameters else "past_key_values"

    class Decoder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lm, self.head = lm, head

        def forward(self, inputs_embeds, attention_mask, position_ids, logits_index, past):
            cache = DynamicCache(ddp_cache_data=list(past))
            out = self.lm(
                inputs_embeds=inputs_embeds, attention_mask=attention_mask,
                position_ids=position_ids, use_cache=True, **{cache_kw: cache},
            )
            hidden = out.last_hidden_state.index_select(1, logits_index)
            present = []
            for layer in cache.layers:
                present += [layer.keys, layer.values]
            return (self.head(hidden), *present)

    return Decoder().eval()


def io_names(num_layers: int) -> tuple[list[str], list[str]]:
    kv_in = [past_name(i, k) for i in range(num_layers) for k in KV_KINDS]
    kv_out = [present_name(i, k) for i in range(num_layers) for k in KV_KINDS]
    inputs = [DECODER_EMBEDS, DECODER_MASK, DECODER_POSITIONS, DECODER_LOGITS_INDEX, *kv_in]
    return inputs, [DECODER_LOGITS, *kv_out]


def export_decoder(parts: ModelParts, path: Path) -> None:
    """Write the float32 decoder graph to `path` (plus `<name>.data` above ~2 GB)."""
    import torch
    from torch.export import Dim

    cfg = parts.text_config
    n_layers, kv_heads, head_dim = cfg.num_hidden_layers, cfg.num_key_value_heads, cfg.head_dim
    # Example sizes avoid 0 and 1, which torch.export would specialise on; the graph
    # still runs with past length 0 (first call) and seq 1 (decode steps).
    batch, seq, past, keep = 2, 3, 4, 2
    gen = torch.Generator().manual_seed(0)
    args = (
        torch.randn(batch, seq, cfg.hidden_size, generator=gen),
        torch.ones(batch, past + seq, dtype=torch.int64),
        torch.arange(past, past + seq, dtype=torch.int64).repeat(batch, 1),
        torch.arange(seq - keep, seq, dtype=torch.int64),
        tuple(
            (torch.randn(batch, kv_heads, past, head_dim, generator=gen),
             torch.randn(batch, kv_heads, past, head_dim, generator=gen))
            for _ in range(n_layers)
        ),
    )
    limit = cfg.max_position_embeddings
    b, s, p = Dim("batch", max=4096), Dim("seq", max=limit), Dim("past", max=limit)
    total, k = Dim("total", max=2 * limit), Dim("keep", max=limit)
    dynamic = (
        {0: b, 1: s}, {0: b, 1: total}, {0: b, 1: s}, {0: k},
        tuple(({0: b, 2: p}, {0: b, 2: p}) for _ in range(n_layers)),
    )
    inputs, outputs = io_names(n_layers)
    log.info("exporting the decoder (%d layers, hidden %d)", n_layers, cfg.hidden_size)
    with torch.no_grad(), quiet_exporter(), export_attention(cfg):
        program = torch.onnx.export(
            _decoder_module(parts), args, dynamo=True, dynamic_shapes=dynamic,
            input_names=inputs, output_names=outputs, optimize=True, verbose=False,
        )
    save_program(program, path)
