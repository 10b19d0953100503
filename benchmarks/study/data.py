"""The study's inputs: the synthetic world, the held-out world's splits, the tokenizer, the
shared tower and a blank image. Each is skipped when already in the study folder.

    OUT/data/            the training world (train, val, test = HC, test_iid = ID)
    OUT/heldout-mc/      the held-out world, multiple choice (HW)
    OUT/heldout-open/    the same generator and seed, open answers (HW-open)
    OUT/tokenizer/       BPE on the training world's text (or Qwen3's own)
    OUT/tower/           the vision stage's tower as a SigLIP checkpoint (what every perception model starts from)
    OUT/blank.png        a uniform grey picture
"""

from __future__ import annotations

import io
import logging
from pathlib import Path

from PIL import Image

from benchmarks.study.presets import Preset
from runtime.atomic import atomic_write_bytes, staged_dir
from runtime.errors import ConfigError
from runtime.progress import Progress
from training.corpus import tokenizer_corpus
from training.data.heldout import SPLIT_FILE, HeldoutConfig, read_split, write_split
from training.data.scene import SceneConfig
from training.data.synth import SynthConfig, SynthDataset, write_dataset
from training.tokenizer_build import build_qwen3_tokenizer, save_tokenizer, train_bpe_tokenizer

log = logging.getLogger(__name__)

TOKENIZER_VOCAB = 2000  # as the default bundle's: the world's vocabulary fits in ~1100 tokens
BLANK_GREY = (128, 128, 128)


def synth_config(preset: Preset) -> SynthConfig:
    d = preset.data
    return SynthConfig(seed=d.seed, scene=SceneConfig(image_size=d.image_size), train=d.train, val=d.val,
                       test=d.test, test_iid=d.test_iid, questions_per_image=d.questions_per_image)


def make_data(out: Path, preset: Preset, progress: Progress | None = None) -> Path:
    """The synthetic dataset in OUT/data (a folder with other settings is an error)."""
    path = out / "data"
    config = synth_config(preset)
    if (path / "dataset.json").is_file():
        if SynthDataset(path).config != config:
            raise ConfigError(f"{path} holds a dataset with other settings than preset {preset.name!r}")
        return path
    def step(done: int, total: int) -> None:
        if progress is not None:
            progress(f"data: image {done}/{total}", done / max(total, 1))

    write_dataset(path, config, overwrite=True, progress=step)
    return path


def make_heldout(out: Path, preset: Preset, *, multiple_choice: bool, progress: Progress | None = None) -> Path:
    d = preset.data
    path = out / ("heldout-mc" if multiple_choice else "heldout-open")
    cfg = HeldoutConfig(n=d.heldout if multiple_choice else d.heldout_open, seed=d.heldout_seed,
                        multiple_choice=multiple_choice)
    if (path / SPLIT_FILE).is_file():
        meta, _, _ = read_split(path)
        if meta.get("config", {}).get("n") != cfg.n or meta.get("config", {}).get("seed") != cfg.seed:
            raise ConfigError(f"{path} holds a held-out split with other settings than preset {preset.name!r}")
        return path
    write_split(path, cfg, overwrite=True, progress=progress)
    return path


def make_tokenizer(out: Path, preset: Preset) -> Path:
    path = out / "tokenizer"
    if (path / "tokenizer.json").is_file():
        return path
    if preset.models.tokenizer == "qwen3":
        tok = build_qwen3_tokenizer()
    else:
        tok = train_bpe_tokenizer(tokenizer_corpus(out / "data"), vocab_size=TOKENIZER_VOCAB)
    with staged_dir(path) as tmp:
        save_tokenizer(tok, tmp)
    return path


def save_tower(perception_dir: Path, out: Path) -> Path:
    """The vision tower of a trained perception checkpoint, saved as a SigLIP vision model
    (what `PerceptionSpec.vision_init` loads), so both decoder sizes start from the same tower."""
    # deferred: loading a checkpoint brings in transformers and torch
    from training.models.loading import load_perception

    path = out / "tower"
    if (path / "config.json").is_file():
        return path
    model = load_perception(perception_dir)
    with staged_dir(path) as tmp:
        model.model.vision_tower.save_pretrained(tmp)
    return path


def make_blank(out: Path, size: int) -> Path:
    path = out / "blank.png"
    if not path.is_file():
        buf = io.BytesIO()
        Image.new("RGB", (size, size), BLANK_GREY).save(buf, format="PNG")
        atomic_write_bytes(path, buf.getvalue())
    return path
