"""Counts over a synthetic dataset: what is in each split, and how long the targets are."""

from __future__ import annotations

import re
from collections import Counter
from statistics import mean

from runtime.tokenizer import BundleTokenizer
from training.data.synth import SynthDataset

_WORD = re.compile(r"[A-Za-z]+|\d+|[^\sA-Za-z\d]")
TEXT_FIELDS = ("question", "focus", "extraction", "caption", "thinking")


def dataset_stats(ds: SynthDataset, *, tokenizer_path: str | None = None) -> dict:
    tok = None
    if tokenizer_path:
        tok = BundleTokenizer(tokenizer_path)
    words: Counter[str] = Counter()
    out: dict = {"root": str(ds.root), "held_out_pairs": ds.meta.get("held_out_pairs", []), "splits": {}}
    for split in ds.splits:
        cats: Counter[str] = Counter()
        qtypes: Counter[str] = Counter()
        letters: Counter[str] = Counter()
        kinds: Counter[str] = Counter()
        lengths: dict[str, list[int]] = {f: [] for f in TEXT_FIELDS}
        n = mc = held = 0
        images: set[str] = set()
        for rec in ds.records(split):
            n += 1
            images.add(rec["image"])
            cats[rec["category"]] += 1
            qtypes[rec["qtype"]] += 1
            kinds[rec["kind"]] += 1
            held += bool(rec.get("heldout"))
            if rec.get("options"):
                mc += 1
                letters[rec["answer"]] += 1
            for f in TEXT_FIELDS:
                text = rec[f]
                pieces = _WORD.findall(text.lower())
                words.update(pieces)
                lengths[f].append(len(tok.encode_plain(text)) if tok else len(pieces))
        out["splits"][split] = {
            "images": len(images),
            "records": n,
            "multiple_choice": mc,
            "heldout_records": held,
            "categories": dict(sorted(cats.items())),
            "qtypes": dict(sorted(qtypes.items())),
            "answer_kinds": dict(sorted(kinds.items())),
            "letters": dict(sorted(letters.items())),
            ("mean_tokens" if tok else "mean_words"): {f: round(mean(v), 1) if v else 0 for f, v in lengths.items()},
            ("max_tokens" if tok else "max_words"): {f: max(v) if v else 0 for f, v in lengths.items()},
        }
    out["vocabulary"] = len(words)
    return out
