"""Draw held-out items and write a split folder that `edge eval` reads.

    DIR/split.json         {"format": "edge-heldout", "version", "config", "font", "counts", "files"}
    DIR/heldout.jsonl      one item per line: {"id", "image", "question", "answer", "options"?,
                           "answer_text", "aliases", "category", "form", "concepts", "picture"}
    DIR/reference.jsonl    the same generator under another seed, answers only (no images):
                           what a majority baseline may be fitted on without seeing the test items
    DIR/images/NNNNN.png|jpg

One question per picture, so items are independent draws (what a Wilson interval assumes).
The question types take turns in shuffled blocks, so each has n/8 items (+-1). Item i is a
pure function of (seed, i): its picture and question come from one random stream, its
multiple-choice options from another, so the open-answer and multiple-choice splits of a seed
ask the same questions about the same images. The folder is built under a temporary name
and renamed into place when complete.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from runtime.atomic import staged_dir
from runtime.errors import ConfigError
from runtime.progress import Progress, report
from training.data.heldout.asking import ASKERS, CATEGORIES, Asked
from training.data.heldout.picture import SIDES, Picture, sample_scene, sample_sign, sample_single
from training.data.heldout.render import encode, font_name

log = logging.getLogger(__name__)

FORMAT = "edge-heldout"
FORMAT_VERSION = 1
ITEMS_FILE = "heldout.jsonl"
REFERENCE_FILE = "reference.jsonl"
SPLIT_FILE = "split.json"
LETTERS = "ABCDEFGHIJ"
MAX_ATTEMPTS = 200
# random streams of one item (numpy SeedSequence entropy: seed, index, stream, attempt)
_PICTURE, _OPTIONS, _BLOCK = 0, 1, 2
REFERENCE_OFFSET = 1_000_003  # the reference draw's seed: seed + this


@dataclass(frozen=True)
class HeldoutConfig:
    n: int = 600
    seed: int = 0
    multiple_choice: bool = False
    n_options: int = 4  # options of colour / shape / count / text items (yes/no and position have 2)
    reference: int = 2000  # answers-only items of the reference draw

    def __post_init__(self) -> None:
        for name in ("n", "seed", "reference"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < (1 if name == "n" else 0):
                raise ConfigError(f"{name} must be an integer >= {1 if name == 'n' else 0}, got {v!r}")
        if self.n > 1_000_000:
            raise ConfigError(f"n must be at most 1000000, got {self.n}")
        if not 2 <= self.n_options <= len(LETTERS):
            raise ConfigError(f"n_options must be in 2..{len(LETTERS)}, got {self.n_options}")


def category_of(seed: int, index: int) -> str:
    """The question type of item `index`: types take turns in blocks shuffled per seed."""
    k = len(CATEGORIES)
    order = np.random.default_rng([seed, index // k, _BLOCK]).permutation(k)
    return CATEGORIES[int(order[index % k])]


def _picture_for(category: str, rng: np.random.Generator) -> Picture | None:
    if category == "text":
        return sample_sign(rng)
    single_share = {"verify": 0.6, "color": 0.4, "shape": 0.4, "count": 0.15, "position": 0.45}.get(category, 0.3)
    if rng.random() < single_share:
        side = str(rng.choice(SIDES)) if category == "position" else None
        return sample_single(rng, side=side)
    return sample_scene(rng)


def draw_item(seed: int, index: int) -> tuple[Picture, Asked]:
    """The picture and question of item `index` (deterministic in seed and index)."""
    category = category_of(seed, index)
    for attempt in range(MAX_ATTEMPTS):
        rng = np.random.default_rng([seed, index, _PICTURE, attempt])
        pic = _picture_for(category, rng)
        asked = ASKERS[category](pic, rng) if pic is not None else None
        if asked is not None:
            return pic, asked
    raise RuntimeError(f"no {category} question after {MAX_ATTEMPTS} pictures (seed {seed}, item {index})")


def options_for(asked: Asked, seed: int, index: int, n_options: int) -> tuple[list[str], str]:
    """Multiple-choice options (the gold answer and checked-wrong answers, shuffled) and the gold letter."""
    rng = np.random.default_rng([seed, index, _OPTIONS])
    wrong = list(asked.distractors)
    k = min(n_options - 1, len(wrong))
    picked = [wrong[int(i)] for i in rng.choice(len(wrong), size=k, replace=False)]
    options = [asked.answer, *picked]
    order = rng.permutation(len(options))
    options = [options[int(i)] for i in order]
    return options, LETTERS[options.index(asked.answer)]


def item_record(seed: int, index: int, cfg: HeldoutConfig, *, image: str | None,
                drawn: tuple[Picture, Asked] | None = None, prefix: str = "heldout") -> dict:
    pic, asked = drawn or draw_item(seed, index)
    rec: dict = {"id": f"{prefix}-{seed}-{index:05d}"}
    if image is not None:
        rec["image"] = image
    rec["question"] = asked.question
    if cfg.multiple_choice:
        options, letter = options_for(asked, seed, index, cfg.n_options)
        rec.update(answer=letter, options=options)
    else:
        rec["answer"] = asked.answer
    rec.update(answer_text=asked.answer, aliases=list(asked.aliases), category=asked.category, form=asked.form,
               concepts=list(asked.concepts),
               picture={"kind": pic.kind, "size": pic.size, "shapes": len(pic.figures), "background": pic.background,
                        "edges": pic.edges, "noise": round(pic.noise, 2), "jpeg_quality": pic.jpeg_quality})
    return rec


def _jsonl(records: list[dict]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)


def write_split(out: str | Path, cfg: HeldoutConfig, *, overwrite: bool = False,
                progress: Progress | None = None) -> dict:
    """Write the split folder `out` (built aside, renamed into place); returns split.json's content."""
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not overwrite:
        raise ConfigError(f"{out} exists and is not empty (--overwrite replaces it)")
    counts = {c: 0 for c in CATEGORIES}
    with staged_dir(out, marker=SPLIT_FILE) as tmp:  # --overwrite replaces only a split
        (tmp / "images").mkdir()
        items = []
        for i in range(cfg.n):
            drawn = draw_item(cfg.seed, i)
            data, ext = encode(drawn[0])
            rel = f"images/{i:05d}.{ext}"
            (tmp / rel).write_bytes(data)
            items.append(item_record(cfg.seed, i, cfg, image=rel, drawn=drawn))
            counts[drawn[1].category] += 1
            report(progress, f"heldout: picture {i + 1}/{cfg.n}", 0.9 * (i + 1) / cfg.n)
        ref_seed = cfg.seed + REFERENCE_OFFSET
        reference = []
        for i in range(cfg.reference):
            reference.append(item_record(ref_seed, i, cfg, image=None, prefix="reference"))
            if i % 100 == 0:
                report(progress, f"heldout: reference {i}/{cfg.reference}", 0.9 + 0.1 * i / cfg.reference)
        (tmp / ITEMS_FILE).write_text(_jsonl(items), encoding="utf-8")
        (tmp / REFERENCE_FILE).write_text(_jsonl(reference), encoding="utf-8")
        meta = {"format": FORMAT, "version": FORMAT_VERSION, "config": asdict(cfg), "reference_seed": ref_seed,
                "font": font_name(), "counts": counts,
                "files": {"items": ITEMS_FILE, "reference": REFERENCE_FILE, "images": "images"}}
        (tmp / SPLIT_FILE).write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
    report(progress, "heldout: done", 1.0)
    log.info("wrote %d held-out items (%s) to %s", cfg.n, "multiple choice" if cfg.multiple_choice else "open", out)
    return meta


def read_split(path: str | Path) -> tuple[dict, Path, Path]:
    """(split.json, items file, reference file) of a split folder; ConfigError if it is not one."""
    path = Path(path)
    meta_path = path / SPLIT_FILE
    if not meta_path.is_file():
        raise ConfigError(f"{path}: not a held-out split folder (no {SPLIT_FILE})")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{meta_path}: not valid JSON ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ConfigError(f"{meta_path}: not an {FORMAT} split")
    if meta.get("version") != FORMAT_VERSION:
        raise ConfigError(f"{meta_path}: version {meta.get('version')!r}, this code reads {FORMAT_VERSION}")
    files = meta.get("files") or {}
    items, ref = path / str(files.get("items", ITEMS_FILE)), path / str(files.get("reference", REFERENCE_FILE))
    for p in (items, ref):
        if not p.is_file():
            raise ConfigError(f"{path}: {p.name} is missing")
    return meta, items, ref
