"""`edge`: the single front door. Each subcommand lives in `edge.commands.<name>`.

Command modules import only argparse at module level; the heavy stacks (torch,
llama.cpp, onnxruntime) are imported inside their `main`, so `edge --help` is instant
and `edge run` never imports torch. User errors (`runtime.errors.EdgeError`) print one
line and exit with the error's code; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

# subcommand -> module; each module defines `add_parser(subparsers)` which registers
# the subcommand and sets `func` on its parser.
COMMANDS: dict[str, str] = {
    "export": "edge.commands.export",
    "run": "edge.commands.run",
    "doctor": "edge.commands.doctor",
    "pack": "edge.commands.pack",
    "unpack": "edge.commands.unpack",
    "demo": "edge.commands.demo",
    "watch": "edge.commands.watch",
    "data": "edge.commands.data",
    "train": "edge.commands.train",
    "bench": "edge.commands.bench",
    "eval": "edge.commands.eval",
    "heldout": "edge.commands.heldout",
    "study": "edge.commands.study",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edge",
        description="Extract+Think on the edge: small VLM perception + small LLM reasoning, "
        "with token-budget control, on laptops, Raspberry Pi and Jetson.",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv for debug)")
    parser.add_argument("-q", "--quiet", action="store_true", help="only errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in COMMANDS.values():
        importlib.import_module(module).add_parser(sub)
    return parser


def _setup_logging(verbose: int, quiet: bool) -> None:
    level = logging.ERROR if quiet else (logging.WARNING, logging.INFO, logging.DEBUG)[min(verbose, 2)]
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    from runtime.errors import EdgeError

    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0 if args.command is None else 2
    _setup_logging(args.verbose, args.quiet)
    try:
        return int(args.func(args) or 0)
    except EdgeError as exc:
        print(f"edge {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"edge {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except OSError as exc:
        # the file system said no (permissions, a full disk, a missing folder): that is the
        # user's to fix, so one line naming the path, not a traceback
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"edge {args.command}: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
