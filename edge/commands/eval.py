"""`edge eval`: accuracy per category, with confidence intervals, budgets used and latency.

    edge eval --data synth/test.jsonl                       # the shipped default bundle
    edge eval --bundle B --data mmstar.parquet --mode end-to-end --limit 200
    edge eval --data test.jsonl --no-thinking --json
    edge eval --data test.jsonl --sweep-thinking off,0,64,256,1024   # accuracy vs budget vs latency
    edge eval --bundle B --data test.jsonl --input-mode anyres --max-image-tokens 3000   # the paper's tiles

Input: JSONL ({"id", "image", "question", "answer", "options"?, "category"?}) or an
MMStar-style .parquet/.tsv. Per-item predictions are appended to
OUT/predictions-<mode>-<thinking>.jsonl, so a killed run picks up where it stopped (rows
are reused only for the same data file, question, options, image and gold answer);
OUT also gets summary JSON/markdown (and sweep.json/.md/.png for a sweep).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from benchmarks.accuracy import EvalConfig, run_eval
from benchmarks.eval_items import load_items
from benchmarks.eval_report import parse_sweep, summary_markdown, sweep_markdown, sweep_point
from benchmarks.plots import sweep_plot
from edge.arguments import add_image_layout, image_layout_kwargs
from edge.extras import require
from edge.progress import ProgressDisplay
from runtime.atomic import atomic_write_text
from runtime.bundle import MANIFEST_NAME, open_bundle, sha256_file
from runtime.defaults import default_bundle_path
from runtime.errors import InputError
from runtime.pipeline import MODES, ExtractThink


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "eval",
        description="Evaluate a bundle on a question set: accuracy overall and per category with 95% "
        "confidence intervals, the token budget actually used, latency per item. Resumable.",
    )
    p.add_argument("--data", required=True, metavar="FILE", help="JSONL file, or MMStar-style .parquet/.tsv")
    p.add_argument("--bundle", metavar="DIR", help="bundle directory (default: the shipped default bundle)")
    p.add_argument("--mode", choices=MODES, default="extract-think",
                   help="extract-think (default), end-to-end (perception answers), caption-think, blind (no image)")
    p.add_argument("--no-thinking", action="store_true", help="the reasoner answers without thinking")
    p.add_argument("--thinking-budget", type=int, metavar="N", help="thinking tokens (default: the bundle's)")
    p.add_argument("--answer-budget", type=int, metavar="N", help="answer tokens")
    p.add_argument("--extraction-budget", type=int, metavar="N", help="perception tokens")
    p.add_argument("--hint-budget", type=int, metavar="N", help="focus-hint tokens")
    p.add_argument("--no-hint", action="store_true", help="skip the focus hint")
    p.add_argument("--sweep-thinking", metavar="LIST",
                   help="evaluate each thinking budget in LIST (e.g. off,0,64,256,1024) and plot the trade-off")
    p.add_argument("--no-plots", action="store_true", help="write no PNG plot for a sweep")
    p.add_argument("--limit", type=int, metavar="N", help="only the first N items")
    p.add_argument("--sampling", choices=("paper", "greedy"), default="paper",
                   help="the paper's sampling with a per-item seed (default), or greedy")
    p.add_argument("--seed", type=int, default=0, metavar="N", help="base sampling seed")
    p.add_argument("--backend", choices=("auto", "llamacpp", "onnx"), default="auto")
    p.add_argument("--quant", metavar="Q", help="quantization to run (e.g. q8_0, int8)")
    p.add_argument("--threads", type=int, metavar="N", help="CPU threads (default: physical cores)")
    p.add_argument("--max-memory", metavar="SIZE", help="memory cap, e.g. 2G")
    add_image_layout(p)
    p.add_argument("--out", metavar="DIR", help="output folder (default runs/eval/<data>-<bundle>)")
    p.add_argument("--fresh", action="store_true", help="discard earlier predictions instead of resuming")
    p.add_argument("--json", action="store_true", help="print one JSON object with the results")
    p.set_defaults(func=main)


def _check(args: argparse.Namespace) -> None:
    """Everything that can be refused before a model loads."""
    if args.limit is not None and args.limit < 1:
        raise InputError(f"--limit must be at least 1, got {args.limit}")
    if args.sweep_thinking and (args.no_thinking or args.thinking_budget is not None):
        raise InputError("--sweep-thinking sets the thinking budgets itself: drop --no-thinking/--thinking-budget")
    if args.backend != "auto":
        require(args.backend, f"--backend {args.backend}")
    if Path(args.data).suffix.lower() == ".parquet":
        require("data", "reading parquet")
    if args.sweep_thinking and not args.no_plots:
        require("bench", "the sweep's plot", alternative="or pass --no-plots")


def main(args: argparse.Namespace) -> int:
    _check(args)
    # (thinking on?, thinking budget) per evaluation; "off" in a sweep means no thinking
    if args.sweep_thinking:
        runs = [(b is not None, b) for b in parse_sweep(args.sweep_thinking)]
    else:
        runs = [(not args.no_thinking, args.thinking_budget)]

    items, report = load_items(args.data, need_image=args.mode != "blind", limit=args.limit)
    bundle = open_bundle(args.bundle if args.bundle else default_bundle_path())
    bundle_id = f"{bundle.manifest.name}:{sha256_file(bundle.root / MANIFEST_NAME)[:16]}"
    layout = image_layout_kwargs(args)
    for flag, value in layout.items():  # other embeddings: earlier predictions do not carry over
        if value is not None:
            bundle_id += f":{flag}={value}"
    out = Path(args.out) if args.out else Path("runs") / "eval" / f"{Path(args.data).stem}-{bundle.manifest.name}"
    out.mkdir(parents=True, exist_ok=True)
    if not args.quiet and report.problems:
        skipped = ", ".join(f"{n} {r}" for r, n in report.problems.items())
        print(f"edge eval: {report.loaded} items loaded, skipped {skipped}", file=sys.stderr)

    summaries = []
    with ExtractThink.load(bundle, backend=args.backend, quant=args.quant, threads=args.threads,
                           max_memory=args.max_memory, **layout) as et:
        for thinking, budget in runs:
            cfg = EvalConfig(mode=args.mode, thinking=thinking, thinking_budget=budget, hint=not args.no_hint,
                             hint_budget=args.hint_budget, extraction_budget=args.extraction_budget,
                             answer_budget=args.answer_budget, sampling=args.sampling, seed=args.seed)
            with ProgressDisplay(f"eval {cfg.tag}", enabled=not args.quiet) as progress:
                summary = run_eval(et, items, cfg, out / f"predictions-{cfg.tag}.jsonl", bundle_id=bundle_id,
                                   data_sha256=report.sha256, fresh=args.fresh, progress=progress)
                progress.done(f"{summary['correct']}/{summary['n']} correct")
            summary.update(data=str(args.data), bundle=bundle.manifest.name, skipped_rows=report.problems)
            atomic_write_text(out / f"summary-{cfg.tag}.json", json.dumps(summary, indent=1) + "\n")
            atomic_write_text(out / f"summary-{cfg.tag}.md", summary_markdown(summary, f"{args.data}: {cfg.tag}"))
            summaries.append((budget, summary))

    if args.sweep_thinking:
        return _sweep_outputs(args, summaries, out, bundle.manifest.name)
    summary = summaries[0][1]
    if args.json:
        print(json.dumps(summary))
    else:
        print(summary_markdown(summary, f"{args.data} ({summary['mode']})") + f"\npredictions: {summary['predictions']}")
    return 0


def _sweep_outputs(args: argparse.Namespace, summaries: list[tuple[int | None, dict]], out: Path,
                   bundle_name: str) -> int:
    points = [sweep_point(s, b) for b, s in summaries]
    sweep = {"data": str(args.data), "bundle": bundle_name, "mode": args.mode, "points": points}
    atomic_write_text(out / "sweep.json", json.dumps(sweep, indent=1) + "\n")
    atomic_write_text(out / "sweep.md", sweep_markdown(points))
    if not args.no_plots:
        sweep_plot(points, out / "sweep.png", f"{bundle_name} on {Path(args.data).name} ({args.mode})")
    if args.json:
        s = summaries[-1][1]
        print(json.dumps({"accuracy": s["accuracy"], "n": s["n"], "categories": s["categories"],
                          "sweep": points, "out": str(out)}))
    else:
        print(sweep_markdown(points) + f"\nwritten to {out}")
    return 0
