"""`edge study`: the paper's findings (a)-(d) on a grid of micro models, with verdicts.

    edge study --preset smoke --out runs/study-smoke       # the code path in a few minutes
    edge study --preset laptop --out runs/study-laptop     # ~1 h on a 2-core CPU (docs/study.md)
    edge study --preset gpu --out runs/study-gpu           # the paper's sizes, one GPU (not run here)
    edge study --preset laptop --out runs/study-laptop --resume   # continue an interrupted run
    edge study --preset laptop --estimate                  # print the plan and its time estimate only
    edge study --preset laptop --out runs/study-laptop --publish docs/study.md   # how docs/study.md is made

Trains perception LMs and reasoners at two sizes each (end-to-end, Caption+Think and
Extract+Think; thinking on and off), evaluates them in domain, on held-out compositions and on
the held-out world, and writes OUT/report/study.md, study.json and the figures
(benchmarks/study, docs/study.md).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path
from typing import Any

from edge.progress import ProgressPrinter

PRESET_NAMES = ("smoke", "laptop", "gpu")


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "study",
        help="reproduce the paper's findings (a)-(d) on a grid of micro models, with verdicts",
        description="Train a grid of micro models on the synthetic world (perception LM and reasoner at two "
        "sizes; end-to-end, Caption+Think, Extract+Think; thinking on/off), evaluate each in domain and out of "
        "domain (held-out compositions, the held-out world), and write a report with 95%% intervals and a "
        "verdict per finding. Resumable; two single-thread processes at a time.",
    )
    p.add_argument("--preset", choices=PRESET_NAMES, default="laptop",
                   help="smoke (minutes, a test), laptop (default; ~1 h on 2 cores), gpu (paper sizes, one GPU)")
    p.add_argument("--out", type=Path, default=None, metavar="DIR",
                   help="the study folder (default runs/study-PRESET)")
    p.add_argument("--resume", action="store_true", help="continue the study in --out (finished work is skipped)")
    p.add_argument("--estimate", action="store_true", help="print the plan and its time estimate, run nothing")
    p.add_argument("--publish", type=Path, default=None, metavar="DOC.md",
                   help="also write the report as DOC.md, its figures and study.json beside it in "
                        "results/DOC/ (e.g. --publish docs/study.md)")
    p.add_argument("--json", action="store_true", help="print one JSON object (the verdicts) at the end")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from benchmarks.study import get_preset, run_study
    from benchmarks.study.jobs import estimate

    preset = get_preset(args.preset)
    out = args.out or Path(f"runs/study-{preset.name}")
    est = estimate(preset, out)
    quiet = args.quiet or args.json
    if not quiet or args.estimate:
        stream = sys.stderr if args.json else sys.stdout
        print(f"preset {preset.name}: {preset.description}", file=stream)
        work = f"  {est['stages']} training stages, {est['cells']} evaluation cells ({est['items']} answers), " \
               f"{est['workers']} process(es)"
        if est["measured"]:
            print(f"{work}; estimate {est['wall_seconds'] / 60:.0f} min wall, {est['process_seconds'] / 60:.0f} "
                  "process-minutes, at the rates measured on this project's 2-core machine (docs/study.md; "
                  "a busier machine takes longer)", file=stream)
        else:
            print(f"{work}; time not measured: no machine of this kind was available to the project", file=stream)
    if args.estimate:
        if args.json:
            print(json.dumps(est))
        return 0
    argv = ["--preset", preset.name, "--out", str(out), *(["--publish", str(args.publish)] if args.publish else [])]
    command = "edge study " + " ".join(shlex.quote(a) for a in argv)
    progress = ProgressPrinter("study", enabled=not quiet)
    report = run_study(preset, out, resume=args.resume, progress=progress, command=command)
    progress.done()
    if args.publish:
        from benchmarks.study.report import publish

        media = publish(out / "report", args.publish)
        if not quiet:
            print(f"published: {args.publish} (figures and study.json in {media})")
    verdicts = {f["key"]: {"verdict": f["verdict"], "effect": next(iter(f["effects"].values()))}
                for f in report["findings"]}
    if args.json:
        print(json.dumps({"out": str(out), "report": str(out / "report" / "study.md"), "verdicts": verdicts}))
        return 0
    for f in report["findings"]:
        name, e = next(iter(f["effects"].items()))
        print(f"({f['key']}) {f['verdict']:>14}  {name} {e['point']:+.1f} points "
              f"(95% CI {e['low']:+.1f} to {e['high']:+.1f})  {f['title']}")
    print(f"report: {out / 'report' / 'study.md'}")
    return 0
