"""`edge`: the single front door. Each subcommand lives in `edge.commands.<name>`.

Only the subcommand being run is imported (with its imports at its top, as usual);
the others are registered by name and one-line summary, so `edge --help` imports no
command module at all and stays instant, and `edge run` never imports torch.

User errors (`runtime.errors.EdgeError`), file-system refusals and running out of memory
print one line (`edge CMD: error: ...`) and exit non-zero; anything else is a bug and
keeps its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from edge.extras import fix_install_hints
from runtime.errors import EdgeError

# subcommand -> (module, one-line summary for `edge --help`); each module defines
# `add_parser(subparsers)`, which registers the subcommand and sets `func` on its parser
COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("edge.commands.run", "answer a question about an image"),
    "export": ("edge.commands.export", "export checkpoints to a GGUF/ONNX bundle (also: verify, convert)"),
    "doctor": ("edge.commands.doctor",
               "show the device, installed backends, the default bundle and the profile it picks"),
    "pack": ("edge.commands.pack", "pack a bundle for one device profile into a checksummed archive"),
    "unpack": ("edge.commands.unpack", "unpack an `edge pack` archive into a bundle directory (verified, atomic)"),
    "serve": ("edge.commands.serve", "serve the OpenAI chat-completions API (streaming, queue, metrics)"),
    "demo": ("edge.commands.demo", "serve a local web page: upload or snap an image, ask, watch the stages stream"),
    "watch": ("edge.commands.watch",
              "headless loop: answer a fixed question for each new image in a folder or camera frame"),
    "data": ("edge.commands.data", "synthetic data, dataset loaders, visual-extraction pipeline"),
    "train": ("edge.commands.train", "train perception / reasoning stages from a recipe; rebuild the default bundle"),
    "bench": ("edge.commands.bench",
              "latency and memory per stage, against raw llama.cpp / onnxruntime and transformers"),
    "eval": ("edge.commands.eval", "accuracy on a question set (JSONL, MMStar parquet/TSV), per category"),
    "heldout": ("edge.commands.heldout", "write or score a held-out test split from the second, independent world"),
    "study": ("edge.commands.study", "the downscaling study: train a grid of micro models, evaluate, report verdicts"),
}
_GLOBAL_FLAGS = {"-h", "--help", "-q", "--quiet", "-v", "--verbose", "--version"}
OUT_OF_MEMORY_EXIT = 6  # the code of runtime.errors.MemoryPlanError: the same trouble
_RUNS_MODELS = {"run", "eval", "serve", "demo", "watch", "bench"}


def version() -> str:
    # importlib.metadata costs ~30 ms to import: only `--version` pays for it, not every run
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return dist_version("extract-think-edge")
    except PackageNotFoundError:
        return "unknown (not installed)"


class _VersionAction(argparse.Action):
    """`--version`, looked up only when asked for."""

    def __init__(self, option_strings: Sequence[str], dest: str = argparse.SUPPRESS, **kw: object) -> None:
        super().__init__(option_strings, dest=dest, default=argparse.SUPPRESS, nargs=0,
                         help="print the version and exit")

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        print(f"edge (extract-think-edge) {version()}")
        parser.exit()


def _add_verbosity(parser: argparse.ArgumentParser, *, top: bool) -> None:
    """-v / -q on the top level and on every subcommand (`edge run -q` = `edge -q run`).

    Below the top they default to SUPPRESS, so a flag given before the subcommand is kept."""
    parser.add_argument("-v", "--verbose", action="count", default=0 if top else argparse.SUPPRESS,
                        help="more logging (-vv for debug)")
    parser.add_argument("-q", "--quiet", action="store_true", default=False if top else argparse.SUPPRESS,
                        help="only errors: no progress, no notes")
    for action in parser._actions:  # nested subcommands (`edge export verify`, `edge data synth`)
        if isinstance(action, argparse._SubParsersAction):
            for child in dict.fromkeys(action.choices.values()):
                _add_verbosity(child, top=False)


def command_in(argv: Sequence[str]) -> str | None:
    """The subcommand `argv` names (its first word after the global flags), if any."""
    for arg in argv:
        if arg in _GLOBAL_FLAGS or (arg.startswith("-v") and set(arg[1:]) == {"v"}):
            continue
        return arg if arg in COMMANDS else None
    return None


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser, with `command`'s options registered in full and the others by name."""
    parser = argparse.ArgumentParser(
        prog="edge",
        description="Extract+Think on the edge: small VLM perception + small LLM reasoning, "
        "with token-budget control, on laptops, Raspberry Pi and Jetson.",
    )
    parser.add_argument("--version", action=_VersionAction)
    _add_verbosity(parser, top=True)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, summary) in COMMANDS.items():
        if name == command:
            importlib.import_module(module).add_parser(sub)
            _add_verbosity(sub.choices[name], top=False)
        else:
            sub.add_parser(name, help=summary, add_help=False)
    return parser


def _setup_logging(verbose: int, quiet: bool) -> None:
    level = logging.ERROR if quiet else (logging.WARNING, logging.INFO, logging.DEBUG)[min(verbose, 2)]
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)


def _error(command: str, message: str) -> None:
    print(f"edge {command}: error: {message}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(command_in(argv))
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0 if args.command is None else 2
    _setup_logging(args.verbose, args.quiet)
    try:
        return int(args.func(args) or 0)
    except EdgeError as exc:
        _error(args.command, fix_install_hints(str(exc)))
        return exc.exit_code
    except MemoryError:
        # a failed allocation (ulimit -v, a cgroup's memory.max, a small board): the
        # user's to fix, and a traceback would not say more than this line
        hint = (" (a smaller quantization, --residency sequential, smaller budgets)"
                if args.command in _RUNS_MODELS else "")
        _error(args.command, "out of memory: the machine, or this process's memory limit (ulimit -v, a "
               f"cgroup's memory.max), has too little free memory for this work; free some or ask for less{hint}")
        return OUT_OF_MEMORY_EXIT
    except KeyboardInterrupt:
        print(f"edge {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except OSError as exc:
        # the file system said no (permissions, a full disk, a missing folder): that is the
        # user's to fix, so one line naming the path, not a traceback
        where = f"{exc.filename}: " if exc.filename else ""
        _error(args.command, f"{where}{exc.strerror or exc}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
