"""Tiny random-weight checkpoints with the real architectures, written to folders.

Tests, benchmarks and docs build these instead of downloading anything: a small
byte-level BPE (Qwen split pattern, Qwen3 specials) or Qwen3's own tokenizer, a
LLaVA-style SigLIP + MLP + Qwen3 perception model and a Qwen3 reasoner.
"""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

from training.model_init import special_ids
from training.models.builders import (
    build_perception,
    build_reasoner,
    perception_config,
    qwen3_config,
)
from training.models.sizes import TextSize, VisionSize, qwen3_tiny, siglip_tiny
from training.tokenizer_build import build_qwen3_tokenizer, save_tokenizer, train_bpe_tokenizer

# A varied little corpus so the tiny BPE has real merges for English, digits, code,
# punctuation and the phrases the prompts use.
CORPUS = [
    "The image shows a red circle to the left of a blue square on a grey background.",
    "Describe the fine-grained content of the image: scenes, objects, relationships, text.",
    "Question: How many triangles are there? Options: A. 1 B. 2 C. 3 D. 4",
    "Answer: B",
    "Let me think step by step. The description says there are two triangles.",
    "def f(x):\n    return x * 2  # double it\n",
    "Numbers 0 1 2 3 4 5 6 7 8 9 10 42 100 2025 3.14",
    "A green star is above a yellow hexagon; the word CAT is written in black.",
    "especially pay attention to the spatial relationships between objects in the image",
    "You are a reasoning expert. Answer the question using the image description.",
] * 4


def tiny_tokenizer(out_dir: str | Path, vocab_size: int = 1024) -> Path:
    return save_tokenizer(train_bpe_tokenizer(CORPUS, vocab_size=vocab_size), out_dir)


def qwen3_tokenizer(out_dir: str | Path) -> Path:
    return save_tokenizer(build_qwen3_tokenizer(), out_dir)


def tiny_perception(
    out_dir: str | Path,
    tokenizer_dir: str | Path,
    *,
    vision: VisionSize | None = None,
    text: TextSize | None = None,
    seed: int = 0,
) -> Path:
    """Save a random-weight perception checkpoint (model + tokenizer) into `out_dir`."""
    out, tdir = Path(out_dir), Path(tokenizer_dir)
    ids = special_ids(tdir)
    text = text or qwen3_tiny()
    text = replace(text, vocab_size=max(text.vocab_size, ids["vocab"]))
    config = perception_config(vision or siglip_tiny(), text, image_token_id=ids["image"],
                               eos_token_id=ids["eos"], pad_token_id=ids["pad"])
    model = build_perception(config, seed=seed)
    model.save_pretrained(out)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(tdir / name, out / name)
    return out


def tiny_reasoner(
    out_dir: str | Path, tokenizer_dir: str | Path, *, text: TextSize | None = None, seed: int = 1
) -> Path:
    out, tdir = Path(out_dir), Path(tokenizer_dir)
    ids = special_ids(tdir)
    text = text or qwen3_tiny()
    text = replace(text, vocab_size=max(text.vocab_size, ids["vocab"]))
    model = build_reasoner(qwen3_config(text, eos_token_id=ids["eos"], pad_token_id=ids["pad"]), seed=seed)
    model.save_pretrained(out)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(tdir / name, out / name)
    return out
