"""`edge watch`: answer a fixed question for every new image in a folder (or camera frame).

    edge watch ~/incoming --question "Is the shelf empty?"            JSON lines on stdout
    edge watch ~/incoming --question "..." --log answers.jsonl --once  the images there now, then exit
    edge watch --camera 0 --question "How many people are in view?" --interval 5
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import signal
import sys
from pathlib import Path

from edge.arguments import (
    add_bundle_options,
    add_gpu_layers,
    add_options,
    add_verify,
    check_gpu_layers,
)
from edge.plan import load_pipeline, make_plan, resolve_profile, stream_kwargs
from edge.watch import CameraSource, FolderSource, run_loop
from runtime.defaults import default_bundle_path
from runtime.errors import InputError


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "watch",
        description="Poll a folder for new (or changed) image files, or read frames from a camera "
        "or video through OpenCV when it is installed, answer the same question for each, and "
        "write one JSON line per image (the `edge run --json` fields plus time, source and ok/error) "
        "to stdout or --log. Unreadable files are logged as error lines and skipped; the loop keeps "
        "running until Ctrl-C or SIGTERM.",
    )
    p.add_argument("folder", type=Path, nargs="?", help="folder to watch (or use --camera)")
    p.add_argument("--question", required=True, help="the question asked about every image")
    add_options(p)
    p.add_argument("--camera", metavar="N|PATH", help="OpenCV camera index (0, 1...) or a video file/URL")
    add_bundle_options(p)
    p.add_argument("--log", type=Path, help="append JSON lines to this file instead of stdout")
    p.add_argument("--interval", type=float, default=1.0,
                   help="seconds between folder polls / camera frames (default 1)")
    p.add_argument("--include-existing", action="store_true",
                   help="also answer for the images already in the folder at start")
    p.add_argument("--once", action="store_true",
                   help="answer for the images in the folder now, then exit (1 if any failed)")
    p.add_argument("--max-images", type=int, help="exit after this many images")
    p.add_argument("--thinking-budget", type=int, help="override the profile's thinking budget")
    p.add_argument("--no-thinking", action="store_true", help="answer without thinking")
    p.add_argument("--deadline", type=float, metavar="S", help="answer each image within S seconds")
    add_gpu_layers(p)
    add_verify(p)
    p.set_defaults(func=main)


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def main(args: argparse.Namespace) -> int:
    check_gpu_layers(args.gpu_layers)
    if (args.folder is None) == (args.camera is None):
        raise InputError("give a folder to watch or --camera, not both or neither")
    if args.max_images is not None and args.max_images < 1:
        raise InputError("--max-images must be at least 1")
    if args.interval <= 0:
        raise InputError("--interval must be positive")
    bundle = args.bundle if args.bundle is not None else default_bundle_path()
    plan = make_plan(bundle, resolve_profile(args.profile, bundle), backend=args.backend)
    if args.gpu_layers is not None:
        plan = dataclasses.replace(plan, gpu_layers=args.gpu_layers)
    kwargs = stream_kwargs(plan)
    if args.no_thinking:
        kwargs["thinking"] = False
        kwargs["answer_budget"] = plan.budgets.non_thinking_answer
    if args.thinking_budget is not None:
        kwargs["thinking_budget"] = args.thinking_budget
    if args.deadline is not None:
        kwargs["deadline_s"] = args.deadline
    # open the source before loading models, so a wrong folder or camera fails at once
    if args.camera is not None:
        source = CameraSource(args.camera, interval=args.interval)
        what = f"camera {args.camera}"
    else:
        source = FolderSource(args.folder, interval=args.interval,
                              include_existing=args.include_existing, once=args.once)
        what = str(args.folder)
    pipeline = load_pipeline(bundle, plan, verify=args.verify)
    signal.signal(signal.SIGTERM, _interrupt)  # systemd's stop: end like Ctrl-C, exit 0
    try:
        with contextlib.ExitStack() as stack:
            stack.callback(pipeline.close)
            out = stack.enter_context(open(args.log, "a", encoding="utf-8")) if args.log else sys.stdout
            if not args.quiet:
                print(f"edge watch: {what}: {args.question!r} with {plan.selection.describe()} "
                      f"(profile {plan.profile.name}); answers to {args.log or 'stdout'}; Ctrl-C stops",
                      file=sys.stderr, flush=True)
            answered, failed = run_loop(pipeline, source, args.question, out, options=args.options,
                                        kwargs=kwargs, max_images=args.max_images,
                                        max_pixels=plan.profile.image.max_pixels)
    except KeyboardInterrupt:
        print("edge watch: stopped", file=sys.stderr)
        return 0
    if not args.quiet:
        print(f"edge watch: {answered} answered, {failed} failed", file=sys.stderr)
    return 1 if (args.once and failed) else 0
