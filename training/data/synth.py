"""Write (and read) a synthetic dataset folder: PNG images + JSONL records.

Layout (documented in docs/data.md):

    DIR/dataset.json                  config, counts, held-out pairs, format version
    DIR/scenes.jsonl                  one line per image: scene_id, split, image, seed, sha256, scene
    DIR/{train,val,test,...}.jsonl    one line per question (all targets in each record)
    DIR/images/<split>/<index>.png    (or .jpg for pictures saved with JPEG artefacts)

The folder is built under a temporary name beside DIR and renamed into place at the end,
so an interrupted run never leaves a folder that looks finished.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from runtime.atomic import atomic_write_text, staged_dir
from runtime.config_io import from_dict, to_dict
from runtime.errors import ConfigError
from training.data import targets
from training.data.questions.registry import EVERYDAY_TYPES, generate_questions
from training.data.render import render_bytes
from training.data.sampling import sample_scene
from training.data.scene import Scene, SceneConfig
from training.data.splits import DEFAULT_HELD_OUT, SPLITS, check_held_out, derive_seed, rules_for

log = logging.getLogger(__name__)

FORMAT = "edge-synth"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class SynthConfig:
    seed: int = 0
    scene: SceneConfig = field(default_factory=SceneConfig)
    train: int = 1000  # images per split
    val: int = 100
    test: int = 200
    test_iid: int = 0
    questions_per_image: int = 3
    mc_prob: float = 0.5  # share of multiple-choice questions
    held_out: tuple[tuple[str, str], ...] = DEFAULT_HELD_OUT

    def __post_init__(self) -> None:
        for name in SPLITS:
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0")
        if not 1 <= self.questions_per_image <= 20:
            raise ConfigError("questions_per_image must be in 1..20")
        if not 0.0 <= self.mc_prob <= 1.0:
            raise ConfigError("mc_prob must be in [0, 1]")
        check_held_out(tuple(tuple(p) for p in self.held_out))

    def counts(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in SPLITS if getattr(self, name)}


@dataclass(frozen=True)
class ImageExample:
    """One rendered image with its questions, all targets computed."""

    scene_id: str
    split: str
    index: int
    seed: int
    data: bytes  # the image file (PNG, or JPEG when the scene asks for artefacts)
    scene: Scene
    records: list[dict]
    ext: str = "png"

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @property
    def path(self) -> str:
        return image_path(self.split, self.index, self.ext)


def image_path(split: str, index: int, ext: str = "png") -> str:
    return f"images/{split}/{index:06d}.{ext}"


def make_example(config: SynthConfig, split: str, index: int, attempt: int = 0) -> ImageExample:
    """Everything for image `index` of `split`, a pure function of the config."""
    rules = rules_for(split, config.held_out)
    seed = derive_seed(config.seed, split, index, "scene", attempt)
    scene = sample_scene(seed, config.scene, rules.scene)
    data, ext = render_bytes(scene, config.scene.image_size, config.scene.supersample)
    qrng = random.Random(derive_seed(config.seed, split, index, "questions", attempt))
    questions = generate_questions(scene, qrng, config.questions_per_image, mc_prob=config.mc_prob,
                                   forbidden=rules.forbidden, prefer=rules.prefer,
                                   qtypes=None if scene.layout == "grid" else EVERYDAY_TYPES,
                                   by_type=scene.layout != "grid")
    scene_id = f"{split}-{index:06d}"
    cap = targets.caption(scene)
    held = frozenset(config.held_out)
    records = []
    for k, q in enumerate(questions):
        thinking, answer_line = targets.reasoning(scene, q)
        touched = [o for o in targets.relevant(scene, q.query) if hasattr(o, "shape")]
        records.append({
            "id": f"{scene_id}-{k}",
            "image": image_path(split, index, ext),
            "scene_id": scene_id,
            "split": split,
            "category": q.category,
            "qtype": q.qtype,
            "question": q.text,
            "options": list(q.options) if q.options else None,
            "answer": q.target,
            "answer_text": q.answer,
            "aliases": list(q.aliases),
            "kind": q.kind,
            "query": q.query,
            "heldout": any((o.color, o.shape) in held for o in touched),
            "focus": targets.focus(q.query),
            "statements": targets.statements(scene, q.query),
            "extraction": targets.extraction(scene, [q.query]),
            "caption": cap,
            "thinking": thinking,
            "answer_line": answer_line,
        })
    return ImageExample(scene_id, split, index, seed, data, scene, records, ext)


@dataclass(frozen=True)
class SynthSummary:
    out_dir: str
    images: dict[str, int]
    records: dict[str, int]
    seconds: float


def _dump(obj: dict) -> str:
    return json.dumps(obj, ensure_ascii=False)


def write_dataset(
    out_dir: str | os.PathLike[str],
    config: SynthConfig,
    *,
    overwrite: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> SynthSummary:
    """Generate every split into `out_dir` (built under a temporary name, then renamed)."""
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise ConfigError(f"{out} exists and is not empty (pass overwrite=True / --overwrite)")
    start = time.perf_counter()
    counts = config.counts()
    total = sum(counts.values())
    done = 0
    seen: set[str] = set()
    n_records: dict[str, int] = {}
    with staged_dir(out, marker="dataset.json") as tmp:  # overwrite replaces only a dataset
        with open(tmp / "scenes.jsonl", "w", encoding="utf-8") as scenes_fh:
            for split, n in counts.items():
                (tmp / "images" / split).mkdir(parents=True)
                n_records[split] = 0
                with open(tmp / f"{split}.jsonl", "w", encoding="utf-8") as fh:
                    for i in range(n):
                        ex = _unique_example(config, split, i, seen)
                        (tmp / ex.path).write_bytes(ex.data)
                        scenes_fh.write(_dump({"scene_id": ex.scene_id, "split": split, "image": ex.path,
                                               "seed": ex.seed, "sha256": ex.sha256, "scene": ex.scene.to_dict()}) + "\n")
                        for rec in ex.records:
                            fh.write(_dump(rec) + "\n")
                        n_records[split] += len(ex.records)
                        done += 1
                        if progress:
                            progress(done, total)
        meta = {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "config": to_dict(config),
            "splits": {s: {"images": counts[s], "records": n_records[s], "file": f"{s}.jsonl"} for s in counts},
            "held_out_pairs": [list(p) for p in config.held_out],
        }
        atomic_write_text(tmp / "dataset.json", json.dumps(meta, indent=2) + "\n")
    seconds = time.perf_counter() - start
    log.info("wrote %d images, %d records to %s in %.1fs", total, sum(n_records.values()), out, seconds)
    return SynthSummary(str(out), counts, n_records, seconds)


def _unique_example(config: SynthConfig, split: str, index: int, seen: set[str]) -> ImageExample:
    for attempt in range(100):
        ex = make_example(config, split, index, attempt)
        if ex.sha256 not in seen and ex.records:
            seen.add(ex.sha256)
            return ex
    raise ConfigError(f"could not draw a new image for {split}[{index}] in 100 attempts (world too small?)")


# ---------------------------------------------------------------------------------------
# Reading


class SynthDataset:
    """A dataset folder written by `write_dataset`."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        meta_path = self.root / "dataset.json"
        try:
            self.meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"{self.root}: not a synthetic dataset (no dataset.json)") from None
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{meta_path}: not valid JSON ({exc})") from None
        if self.meta.get("format") != FORMAT or self.meta.get("version") != FORMAT_VERSION:
            raise ConfigError(f"{meta_path}: not a {FORMAT} v{FORMAT_VERSION} dataset")
        self.config = from_dict(SynthConfig, self.meta["config"])
        self._scenes: dict[str, Scene] | None = None

    @property
    def splits(self) -> list[str]:
        return list(self.meta["splits"])

    def split_file(self, split: str) -> Path:
        if split not in self.meta["splits"]:
            raise ConfigError(f"{self.root}: no split {split!r} (has {', '.join(self.splits)})")
        return self.root / self.meta["splits"][split]["file"]

    def records(self, split: str) -> Iterator[dict]:
        with open(self.split_file(split), encoding="utf-8") as fh:
            for line in fh:
                if line.strip():
                    yield json.loads(line)

    def scenes(self) -> dict[str, Scene]:
        if self._scenes is None:
            out = {}
            with open(self.root / "scenes.jsonl", encoding="utf-8") as fh:
                for line in fh:
                    row = json.loads(line)
                    out[row["scene_id"]] = Scene.from_dict(row["scene"])
            self._scenes = out
        return self._scenes

    def scene_rows(self) -> Iterator[dict]:
        with open(self.root / "scenes.jsonl", encoding="utf-8") as fh:
            for line in fh:
                yield json.loads(line)

    def image_path(self, record: dict) -> Path:
        return self.root / record["image"]
