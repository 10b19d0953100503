"""Fixtures for the training tests: a small synthetic dataset, its tokenizer, and recipes
over tiny real-architecture models (SigLIP + MLP + Qwen3, a Qwen3 reasoner)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def synth_dir(tmp_path_factory) -> Path:
    from training.data.scene import SceneConfig
    from training.data.synth import SynthConfig, write_dataset

    out = tmp_path_factory.mktemp("synth") / "data"
    write_dataset(out, SynthConfig(seed=3, scene=SceneConfig(image_size=64), train=24, val=0, test=4))
    return out


@pytest.fixture(scope="session")
def synth_tokenizer_dir(tmp_path_factory, synth_dir) -> Path:
    from training.corpus import tokenizer_corpus
    from training.tokenizer_build import save_tokenizer, train_bpe_tokenizer

    out = tmp_path_factory.mktemp("synth_tokenizer")
    save_tokenizer(train_bpe_tokenizer(tokenizer_corpus(synth_dir), vocab_size=600), out)
    return out
