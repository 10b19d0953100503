"""`edge heldout`: write the held-out world's test split, or score predictions on it.

    edge heldout --out runs/heldout --n 600 --seed 1                  # open-answer items
    edge heldout --out runs/heldout-mc --n 600 --seed 1 --multiple-choice
    edge eval --data runs/heldout/heldout.jsonl --out runs/eval/heldout-et
    edge heldout --score runs/eval/heldout-et/predictions-extract-think-thinkdefault.jsonl --data runs/heldout

The split (docs/heldout.md) is written under a temporary name and renamed into place.
Scoring uses benchmarks.open_answer (normalised gold or listed synonym only), per question
type with Wilson 95% intervals, the right-form rate, and the majority baseline counted on
the split's reference draw.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from edge.progress import ProgressPrinter
from runtime.atomic import atomic_write_text
from runtime.errors import InputError


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "heldout",
        help="the held-out world: write a test split (--out) or score predictions on one (--score)",
        description="Write a test split of the held-out world (a renderer and question wording the "
        "training world never uses) in the JSONL + images format `edge eval` reads, or score an "
        "`edge eval` predictions file on such a split: accuracy per question type, the share of "
        "answers in the right form, and the majority baseline, with 95%% intervals.",
    )
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--out", type=Path, metavar="DIR", help="write a split into DIR (absent or empty)")
    what.add_argument("--score", type=Path, metavar="PREDICTIONS", help="score an `edge eval` predictions JSONL")
    p.add_argument("--n", type=int, default=600, metavar="N", help="items (one question per image; default 600)")
    p.add_argument("--seed", type=int, default=0, metavar="S", help="seed (default 0); same seed, same split")
    p.add_argument("--multiple-choice", action="store_true", help="multiple-choice items instead of open answers")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty --out folder")
    p.add_argument("--data", type=Path, metavar="DIR", help="with --score: the split folder the predictions are on")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    if args.score is not None:
        if args.data is None:
            raise InputError("--score needs --data DIR, the split folder the predictions were made on")
        return _score(args)
    if args.data is not None:
        raise InputError("--data goes with --score; to write a split use --out alone")
    return _write(args)


def _write(args: argparse.Namespace) -> int:
    from training.data.heldout import HeldoutConfig, write_split

    cfg = HeldoutConfig(n=args.n, seed=args.seed, multiple_choice=args.multiple_choice)
    progress = ProgressPrinter("heldout", enabled=not args.quiet and not args.json)
    meta = write_split(args.out, cfg, overwrite=args.overwrite, progress=progress)
    progress.done()
    if args.json:
        print(json.dumps({"out": str(args.out), **meta}))
    else:
        form = "multiple-choice" if cfg.multiple_choice else "open-answer"
        per = ", ".join(f"{k} {v}" for k, v in meta["counts"].items())
        print(f"wrote {cfg.n} {form} items (seed {cfg.seed}) to {args.out}: {per}")
        print(f"evaluate: edge eval --data {args.out / meta['files']['items']}")
    return 0


def _score(args: argparse.Namespace) -> int:
    from benchmarks.eval_items import load_items
    from benchmarks.open_answer import read_records, score_records, scores_markdown
    from training.data.heldout import read_split

    _, items_path, ref_path = read_split(args.data)
    items, _ = load_items(items_path, need_image=False)
    reference, _ = load_items(ref_path, need_image=False)
    summary = score_records(items, read_records(args.score), reference=reference)
    summary.update(data=str(args.data), predictions=str(args.score))
    stem = args.score.with_suffix("")
    atomic_write_text(f"{stem}.open-scores.json", json.dumps(summary, indent=1) + "\n")
    atomic_write_text(f"{stem}.open-scores.md", scores_markdown(summary, args.score.name))
    if args.json:
        print(json.dumps(summary))
    else:
        print(scores_markdown(summary, args.score.name) + f"\nwritten to {stem}.open-scores.json/.md")
    return 0
