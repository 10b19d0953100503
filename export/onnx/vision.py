"""SigLIP tower + 2-layer MLP projector: pixel_values -> image_embeds.

The tower and projector are called directly (not `get_image_features`, which can freeze
the batch size in the exported graph). Only the encoder layers up to the feature layer
run, and the post-layernorm is skipped: LLaVA features are the selected layer's hidden
states as they are (`vision_feature_select_strategy="full"`: SigLIP has no CLS token).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from export.onnx.common import ModelParts, quiet_exporter, save_program
from runtime.backends.onnx import VISION_INPUT, VISION_OUTPUT

log = logging.getLogger(__name__)


def _vision_module(parts: ModelParts) -> Any:
    import torch

    tower = parts.vision_tower
    inner = getattr(tower, "vision_model", tower)  # transformers 4.x nests the transformer
    embeddings, layers = inner.embeddings, inner.encoder.layers[: parts.feature_layers]
    projector = parts.projector

    class Vision(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embeddings, self.layers, self.projector = embeddings, layers, projector

        def forward(self, pixel_values):
            hidden = self.embeddings(pixel_values)
            for layer in self.layers:
                hidden = layer(hidden, None)
                if isinstance(hidden, tuple):  # older layers return (hidden, attn)
                    hidden = hidden[0]
            return self.projector(hidden)

    return Vision().eval()


def export_vision(parts: ModelParts, path: Path) -> None:
    import torch
    from torch.export import Dim

    vcfg = parts.vision_config
    size = vcfg.image_size
    pixels = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(0))
    log.info("exporting the vision graph (%d of %d layers, %d px)",
             parts.feature_layers, vcfg.num_hidden_layers, size)
    with torch.no_grad(), quiet_exporter():
        program = torch.onnx.export(
            _vision_module(parts), (pixels,), dynamo=True,
            dynamic_shapes=({0: Dim("batch", max=4096)},),
            input_names=[VISION_INPUT], output_names=[VISION_OUTPUT], optimize=True, verbose=False,
        )
    save_program(program, path)
