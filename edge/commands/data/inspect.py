"""Looking at data: `edge data stats`, `edge data check` and `edge data import-mmstar`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from edge.extras import require
from training.data.llava import load_llava
from training.data.mmstar import load_mmstar, write_eval_set
from training.data.stats import dataset_stats
from training.data.synth import SynthDataset


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("stats", help="counts per split, category and question type; target lengths")
    p.add_argument("dataset", type=Path)
    p.add_argument("--tokenizer", help="tokenizer.json: report lengths in tokens instead of words")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_stats)

    p = sub.add_parser("check", help="load a LLaVA JSON/JSONL or MMStar parquet/TSV and report bad rows")
    p.add_argument("file", type=Path)
    p.add_argument("--images", type=Path, help="image folder for LLaVA files (default: the file's folder)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_check)

    p = sub.add_parser("import-mmstar", help="convert MMStar-style parquet/TSV into an eval set (JSONL + images)")
    p.add_argument("file", type=Path)
    p.add_argument("--out", required=True, type=Path, help="output folder (data.jsonl + images/)")
    p.set_defaults(func=_import_mmstar)



def _print_json(obj: object) -> None:
    print(json.dumps(obj, indent=2, ensure_ascii=False))


def _stats(args: argparse.Namespace) -> int:
    stats = dataset_stats(SynthDataset(args.dataset), tokenizer_path=args.tokenizer)
    if args.json:
        _print_json(stats)
        return 0
    print(f"{stats['root']}: vocabulary {stats['vocabulary']} distinct words")
    for split, s in stats["splits"].items():
        print(f"\n{split}: {s['images']} images, {s['records']} questions "
              f"({s['multiple_choice']} multiple choice, {s['heldout_records']} about held-out pairs)")
        for cat, n in s["categories"].items():
            print(f"  {cat:<26} {n}")
        unit = "tokens" if "mean_tokens" in s else "words"
        means, maxes = s[f"mean_{unit}"], s[f"max_{unit}"]
        print("  lengths (" + unit + ", mean/max): " + ", ".join(f"{f} {means[f]}/{maxes[f]}" for f in means))
    return 0


def _check(args: argparse.Namespace) -> int:
    if args.file.suffix.lower() in (".parquet", ".tsv"):
        if args.file.suffix.lower() == ".parquet":
            require("data", "reading parquet")
        _, report = load_mmstar(args.file)
    else:
        _, report = load_llava(args.file, args.images)
    if args.json:
        _print_json(report.to_dict())
    else:
        print(report.summary())
    return 0


def _import_mmstar(args: argparse.Namespace) -> int:
    if args.file.suffix.lower() == ".parquet":
        require("data", "reading parquet")
    items, report = load_mmstar(args.file)
    path = write_eval_set(items, args.out)
    print(f"{path}: {len(items)} items ({report.summary()})")
    return 0
