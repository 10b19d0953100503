"""Baseline: the PyTorch path, HF transformers `generate` on the source checkpoint.

This is what a user without an edge runtime would run. Same prompts, the same number of
new tokens (`min_new_tokens` = `max_new_tokens`, so EOS cannot end it early), greedy,
the same thread count (`torch.set_num_threads`). The perception model's image
embeddings are computed by its own vision tower and projector (`get_image_features`),
and generation takes the merged `inputs_embeds`, so the stages line up with the
runtime's: vision, prefill, decode.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.inputs import prompt_runs
from training.models.builders import (
    build_perception,
    build_reasoner,
    perception_config,
    qwen3_config,
)
from training.models.loading import load_perception, load_reasoner
from training.models.sizes import text_size as tsize
from training.models.sizes import vision_size as vsize

# torch is imported inside each function: it is the optional export/train extra, and
# `edge bench` runs (and skips this baseline) without it


class _Clock:
    """A generate() streamer that only notes when tokens arrive (for time to first token)."""

    def __init__(self) -> None:
        self.times: list[float] = []

    def put(self, value: Any) -> None:
        if getattr(value, "ndim", 1) == 1:  # new tokens; the prompt arrives as [batch, seq]
            self.times.append(time.perf_counter())

    def end(self) -> None:
        pass


def set_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


class HFModel:
    """A loaded transformers model (perception LLaVA or Qwen3 reasoner), fp32, eval mode."""

    def __init__(self, model: Any, role: str) -> None:
        self.model = model
        self.role = role

    @classmethod
    def from_checkpoint(cls, folder: str | Path, role: str) -> HFModel:
        load = load_perception if role == "perception" else load_reasoner
        return cls(load(Path(folder)).float().eval(), role)

    @classmethod
    def random(cls, role: str, text_size: str, vision_size: str | None, *, vocab_size: int,
               image_token_id: int | None, eos_token_id: int | None, seed: int = 0) -> HFModel:
        """A random-weight model with the named shapes (paper-scale workloads have no checkpoint)."""
        text = replace(tsize(text_size), vocab_size=vocab_size)
        if role == "perception":
            cfg = perception_config(vsize(vision_size), text, image_token_id=image_token_id,
                                    eos_token_id=eos_token_id)
            return cls(build_perception(cfg, seed=seed).float().eval(), role)
        return cls(build_reasoner(qwen3_config(text, eos_token_id=eos_token_id), seed=seed).float().eval(), role)

    def _embed_prompt(self, prompt: Sequence[int | None], image_embeds: Any | None):
        import torch

        emb_layer = self.model.get_input_embeddings()
        rows = [image if ids is None else emb_layer(torch.tensor(ids))
                for ids, image in prompt_runs(prompt, image_embeds)]
        return torch.cat(rows, dim=0)[None]

    def generate(self, prompt: Sequence[int | None], n_new: int, *, image_embeds: Any | None = None) -> dict:
        """Greedy `generate` of exactly `n_new` tokens; `image_embeds` is a torch tensor."""
        import torch

        clock = _Clock()
        with torch.inference_mode():
            t0 = time.perf_counter()
            x = self._embed_prompt(prompt, image_embeds)
            mask = torch.ones(x.shape[:2], dtype=torch.long)
            out = self.model.generate(inputs_embeds=x, attention_mask=mask, max_new_tokens=n_new,
                                      min_new_tokens=n_new, do_sample=False, num_beams=1, streamer=clock,
                                      pad_token_id=0)
            t2 = time.perf_counter()
        # the first new token arrives after the prefill
        t1 = clock.times[0] if clock.times else t2
        n = int(out.shape[-1])
        return {"prefill_s": t1 - t0, "decode_s": t2 - t1, "total_s": t2 - t0, "new_tokens": n}

    def encode_image(self, pixels: np.ndarray, mean: Sequence[float], std: Sequence[float]):
        """(seconds, embeddings tensor [tokens, hidden]) through the vision tower + projector."""
        import torch

        t0 = time.perf_counter()
        x = (pixels.astype(np.float32) / 255.0 - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
        pv = torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)[None]))
        with torch.inference_mode():
            feats = self.model.get_image_features(pixel_values=pv)
        if not isinstance(feats, torch.Tensor):  # a model output or a per-image list
            feats = getattr(feats, "pooler_output", None) if not isinstance(feats, (list, tuple)) else feats
            if isinstance(feats, (list, tuple)):
                feats = torch.cat(list(feats), dim=0)
        feats = feats.reshape(-1, feats.shape[-1])
        return time.perf_counter() - t0, feats

    def close(self) -> None:
        self.model = None
