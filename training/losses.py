"""The two training losses, each a module that wraps the model it trains.

Both return `(summed loss, number of targets)`: the training loop divides the sum by the
number of targets in the whole global batch (see `training.loop`), so any number of
processes and accumulation steps computes the per-target mean over the global batch. The
wrapper is what DDP / FSDP / DeepSpeed wrap, so their gradient hooks see its forward.

    TargetLoss   every language stage (align, instruct, caption, extract, reasoner):
                 cross-entropy on the trained (assistant) tokens only
    CellLoss     the vision stage (training/cells.py): cross-entropy of linear heads that
                 read the tower's features and predict the scene graph's labels

This module is torch code through and through; the training loop imports it only when a
stage runs.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from training.cells import BAR_HEADS, CELL_HEADS, GLOBAL_HEADS, MAX_BARS, head_sizes
from training.examples import IGNORE
from training.models.pooling import image_inputs


class TargetLoss(torch.nn.Module):
    """A causal LM (Qwen3ForCausalLM or Llava) scored on its trained positions only.

    Goes through `model.model` (the decoder / LlavaModel) and applies `lm_head` only where
    the next token is trained: a 150k-token vocabulary times every prompt position would
    dominate memory at the paper's sizes.
    """

    def __init__(self, model: Any, image_pool: int = 1, image_newline: torch.Tensor | None = None) -> None:
        super().__init__()
        self.model = model
        self.image_pool = image_pool  # LLaVA-OV pooling of the image features (training.models.pooling)
        # any-resolution input: the learned vector that ends every row of tiles (training.models.anyres)
        self.image_newline = None if image_newline is None else torch.nn.Parameter(image_newline.clone().float())

    def forward(self, input_ids, attention_mask, labels, pixel_values=None, image_plans=None):
        kwargs = {"input_ids": input_ids, "attention_mask": attention_mask, "use_cache": False}
        if pixel_values is not None:
            kwargs.update(image_inputs(self.model, pixel_values, self.image_pool, image_plans, self.image_newline))
        hidden = self.model.model(**kwargs).last_hidden_state
        shift = labels[:, 1:]
        mask = shift != IGNORE
        picked = hidden[:, :-1][mask]
        logits = self.model.lm_head(picked).float()
        loss = F.cross_entropy(logits, shift[mask], reduction="sum")
        return loss, mask.sum()


class CellLoss(torch.nn.Module):
    """The perception model's tower with linear heads on its features, scored on every label
    of `training.cells.scene_labels` (cells x CELL_HEADS, bars x BAR_HEADS, GLOBAL_HEADS).

    The heads are trained with the tower and dropped afterwards (checkpoints keep them so
    that a resumed stage continues with the same heads)."""

    def __init__(self, model: Any, grid: int) -> None:
        super().__init__()
        sizes = head_sizes()
        self.width = model.config.vision_config.hidden_size
        self.grid = grid
        self.model = model
        self.cell = torch.nn.ModuleDict({h: torch.nn.Linear(self.width, sizes[h]) for h in CELL_HEADS})
        self.bar = torch.nn.ModuleList([torch.nn.ModuleDict({h: torch.nn.Linear(self.width, sizes[h])
                                                              for h in BAR_HEADS}) for _ in range(MAX_BARS)])
        self.glob = torch.nn.ModuleDict({h: torch.nn.Linear(self.width, sizes[h]) for h in GLOBAL_HEADS})

    def forward(self, pixel_values, cell_labels):
        tower = self.model.model.vision_tower
        # the features the projector reads: the last kept layer, before post_layernorm
        feats = tower(pixel_values, output_hidden_states=True).hidden_states[-1]
        pooled = feats.mean(1)
        side = int(round(feats.shape[1] ** 0.5))
        if side != self.grid:  # several patches per cell (or cells across patches): average them
            fmap = feats.transpose(1, 2).reshape(feats.shape[0], self.width, side, side)
            feats = F.adaptive_avg_pool2d(fmap, self.grid).flatten(2).transpose(1, 2)
        heads = [head for c in range(self.grid * self.grid) for head in
                 ((self.cell[h], feats[:, c]) for h in CELL_HEADS)]
        heads += [(self.bar[b][h], pooled) for b in range(MAX_BARS) for h in BAR_HEADS]
        heads += [(self.glob[h], pooled) for h in GLOBAL_HEADS]
        loss = sum(F.cross_entropy(head(x).float(), cell_labels[:, col], reduction="sum")
                   for col, (head, x) in enumerate(heads))
        return loss, torch.tensor(cell_labels.numel(), device=cell_labels.device)
