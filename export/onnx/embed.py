"""The token embedding table as its own graph: input_ids -> inputs_embeds.

A separate graph because the decoder takes embeddings (image positions come from the
vision graph). float32 for fp32 bundles; for int8/int4 bundles the table is stored as
int8 with one float scale per row (symmetric): a quarter of the size (the 0.6B table
is 622 MB in float32) and row lookups stay exact up to the int8 rounding.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from export.onnx.common import quiet_exporter, save_program
from runtime.backends.onnx import EMBED_INPUT, EMBED_OUTPUT

log = logging.getLogger(__name__)

EMBED_QUANTS = ("fp32", "int8")


def embed_quant_for(quant: str) -> str:
    """The table's own precision for a bundle quantization (see the module docstring)."""
    return "fp32" if quant == "fp32" else "int8"


def quantize_rows_int8(weight: Any) -> tuple[Any, Any]:
    """Symmetric per-row int8: weight ~= q * scale, scale [rows, 1]."""
    import torch

    amax = weight.abs().amax(dim=1, keepdim=True)
    scale = torch.where(amax > 0, amax / 127.0, torch.ones_like(amax))
    q = torch.clamp(torch.round(weight / scale), -127, 127).to(torch.int8)
    return q, scale.to(torch.float32)


def _embed_module(embed_tokens: Any, quant: str) -> Any:
    import torch

    weight = embed_tokens.weight.detach()

    class Float32Table(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.weight = torch.nn.Parameter(weight.clone(), requires_grad=False)

        def forward(self, input_ids):
            return torch.nn.functional.embedding(input_ids, self.weight)

    class Int8Table(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            q, scale = quantize_rows_int8(weight)
            self.register_buffer("q", q)
            self.register_buffer("scale", scale)

        def forward(self, input_ids):
            return self.q[input_ids].to(torch.float32) * self.scale[input_ids]

    return (Float32Table() if quant == "fp32" else Int8Table()).eval()


def export_embed(embed_tokens: Any, path: Path, *, quant: str = "fp32") -> None:
    import torch
    from torch.export import Dim

    if quant not in EMBED_QUANTS:
        raise ValueError(f"embedding table quant {quant!r} not in {EMBED_QUANTS}")
    ids = torch.tensor([[0, 1, 2], [3, 4, 5]], dtype=torch.int64)
    dynamic = ({0: Dim("batch", max=4096), 1: Dim("seq", max=1 << 20)},)
    log.info("exporting the embedding table (%s, %s)", quant, tuple(embed_tokens.weight.shape))
    with torch.no_grad(), quiet_exporter():
        program = torch.onnx.export(
            _embed_module(embed_tokens, quant), (ids,), dynamo=True, dynamic_shapes=dynamic,
            input_names=[EMBED_INPUT], output_names=[EMBED_OUTPUT], optimize=True, verbose=False,
        )
    save_program(program, path)
