"""`edge data synth`: render a synthetic dataset with every training target."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from edge.progress import ProgressDisplay
from training.data.scene import SceneConfig
from training.data.synth import SynthConfig, write_dataset


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("synth", help="write a synthetic dataset (images + JSONL targets)",
                       description="Render scenes and write every training target (direct answers, captions, "
                       "extractions, focus phrases, reasoning traces) for train/val/test splits. The test "
                       "split uses held-out colour-shape pairs never seen in train/val.")
    p.add_argument("--out", required=True, type=Path, help="output folder (must be empty or absent)")
    p.add_argument("--train", type=int, default=1000, help="train images (default 1000)")
    p.add_argument("--val", type=int, default=100, help="validation images (default 100)")
    p.add_argument("--test", type=int, default=200, help="held-out test images (default 200)")
    p.add_argument("--test-iid", type=int, default=0, help="in-distribution test images (default 0)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--image-size", type=int, default=128, help="pixels per side (64-128 for CPU, 384 real)")
    p.add_argument("--min-objects", type=int, default=4)
    p.add_argument("--max-objects", type=int, default=8)
    p.add_argument("--chart-prob", type=float, default=0.15, help="share of bar-chart scenes")
    p.add_argument("--text-prob", type=float, default=0.4, help="share of scenes with written words/numbers")
    p.add_argument("--questions-per-image", type=int, default=3)
    p.add_argument("--mc-prob", type=float, default=0.5, help="share of multiple-choice questions")
    p.add_argument("--no-held-out", action="store_true", help="do not hold out colour-shape pairs")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty output folder")
    p.add_argument("--json", action="store_true", help="print a JSON summary")
    p.set_defaults(func=_synth)


def _synth(args: argparse.Namespace) -> int:
    config = SynthConfig(
        seed=args.seed,
        scene=SceneConfig(image_size=args.image_size, min_objects=args.min_objects, max_objects=args.max_objects,
                          chart_prob=args.chart_prob, text_prob=args.text_prob),
        train=args.train, val=args.val, test=args.test, test_iid=args.test_iid,
        questions_per_image=args.questions_per_image, mc_prob=args.mc_prob,
        **({"held_out": ()} if args.no_held_out else {}),
    )
    with ProgressDisplay("synth", enabled=not args.quiet) as progress:
        summary = write_dataset(args.out, config, overwrite=args.overwrite,
                                progress=lambda done, total: progress(f"{done}/{total} images",
                                                                      done / total if total else 1.0))
    if args.json:
        print(json.dumps(summary.__dict__, indent=2, ensure_ascii=False, default=str))
    else:
        counts = ", ".join(f"{s}: {summary.images[s]} images / {summary.records[s]} questions" for s in summary.images)
        print(f"wrote {summary.out_dir} ({counts}) in {summary.seconds:.1f}s")
    return 0
