"""`edge run`: answer one question about one image with Extract+Think.

    edge run                                   # the shipped default bundle's example
    edge run --image photo.jpg --question "How many cups?" --options 1 2 3 4
    edge run ... --thinking-budget 128 --deadline 20 --stream
    edge run ... --json                        # one JSON object (see docs/runtime.md)
    edge run --image photo.jpg --question "How many cups?" --question "What colour is the table?"
    edge run --perception-gguf vlm.gguf --mmproj mmproj.gguf --reasoner-gguf chat.gguf ...

With `--stream --json` every event is printed as one JSON line as it happens, the last
one being {"type": "done", "result": {...}}. Several --question flags ask them in turn about
the same image, in one process: the later ones reuse the image's prefix state (see
--prefix-cache-mb) and print one answer block (one JSON line with --json) each.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from edge.arguments import (
    add_gpu_layers,
    add_image_layout,
    add_kv_cache,
    add_lookup,
    add_options,
    add_prefix_cache,
    add_verify,
    add_vision_backend,
    check_gpu_layers,
    image_layout_kwargs,
    prefix_cache_mb,
    prompt_cache_dir,
)
from edge.extras import require
from edge.plan import make_plan, resolve_profile, stream_kwargs
from edge.profiles import PROFILE_FILE
from export.compose import ComposeRequest, compose_bundle
from runtime.bundle import Bundle, open_bundle
from runtime.defaults import default_bundle_path
from runtime.errors import InputError
from runtime.manifest import example_options
from runtime.pipeline import MODES, ExtractThink
from runtime.prompts import LETTERS
from runtime.request import check_text
from runtime.result import Done, Result, StageFinished, StageStarted, TokenEvent, event_to_dict


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "run",
        description="Answer a question about an image: focus hint, perception extraction, "
        "reasoning under a token budget. With no --image/--question, runs the bundle's example.",
    )
    p.add_argument("--image", metavar="PATH", help="image file (JPEG, PNG, WEBP, BMP, GIF, TIFF)")
    p.add_argument("--question", metavar="TEXT", action="append",
                   help="the question (repeat it to ask several about the same image)")
    add_options(p)
    p.add_argument("--bundle", metavar="DIR", help="bundle directory (default: the shipped default bundle)")
    p.add_argument("--backend", choices=("auto", "llamacpp", "onnx"), default="auto")
    p.add_argument("--quant", metavar="Q", help="quantization to run (e.g. q8_0, q4_k_m, int8)")
    p.add_argument("--reasoner-gguf", metavar="FILE", help="a stock GGUF chat model to use as the reasoner")
    p.add_argument("--perception-gguf", metavar="FILE", help="a VLM's text model GGUF to use as the perception "
                   "model (with --mmproj; checked as `edge export compose` does)")
    p.add_argument("--mmproj", metavar="FILE", help="the vision projector GGUF of --perception-gguf")
    p.add_argument("--mode", choices=MODES, default="extract-think")
    p.add_argument("--thinking-budget", type=int, metavar="N", help="thinking tokens (default: the bundle's)")
    p.add_argument("--answer-budget", type=int, metavar="N", help="answer tokens after thinking")
    p.add_argument("--extraction-budget", type=int, metavar="N", help="perception tokens")
    p.add_argument("--hint-budget", type=int, metavar="N", help="focus-hint tokens")
    p.add_argument("--no-thinking", action="store_true", help="answer without thinking")
    p.add_argument("--no-hint", action="store_true", help="skip the focus hint")
    p.add_argument("--no-nowait", action="store_true", help="allow reflexive tokens (wait, hmm...) while thinking")
    p.add_argument("--focus", metavar="TEXT", help="what the perception model should pay attention to")
    p.add_argument("--deadline", type=float, metavar="S", help="answer within S seconds (plans the budgets)")
    p.add_argument("--max-memory", metavar="SIZE", help="memory cap, e.g. 2G or 512M (default: what is free)")
    p.add_argument("--residency", choices=("auto", "resident", "sequential"), default="auto",
                   help="keep both models loaded, or load them one after the other")
    p.add_argument("--context", type=int, metavar="N", help="context length per model")
    add_kv_cache(p)
    add_image_layout(p)
    p.add_argument("--threads", type=int, metavar="N", help="CPU threads (default: physical cores)")
    add_gpu_layers(p)
    add_prefix_cache(p)
    add_verify(p)
    p.add_argument("--profile", metavar="NAME|FILE",
                   help="device profile for threads, memory, context, quantization and budgets "
                   "(default: none, or the profile.json of a bundle packed by `edge pack`); "
                   "explicit flags win")
    p.add_argument("--seed", type=int, default=0, metavar="N", help="sampling seed (default 0)")
    p.add_argument("--greedy", action="store_true", help="greedy decoding everywhere")
    add_lookup(p)
    add_vision_backend(p)
    p.add_argument("--stream", action="store_true", help="print tokens as they are generated")
    p.add_argument("--json", action="store_true", help="print one JSON object (JSON lines with --stream)")
    p.set_defaults(func=main)


def _example(bundle: Bundle) -> tuple[str, str, list[str] | None]:
    examples = bundle.manifest.examples
    if not examples:
        raise InputError(f"bundle {bundle.manifest.name!r} has no example: give --image and --question")
    ex = examples[0]
    if "image" not in ex or "question" not in ex:
        raise InputError(f"bundle {bundle.manifest.name!r} has a malformed example (needs image and question)")
    return str(bundle.path(ex["image"])), ex["question"], list(example_options(ex)) or None


def main(args: argparse.Namespace) -> int:
    image, questions, options = args.image, args.question, args.options
    prefix_cache_mb(args.prefix_cache_mb)  # before the bundle is hashed
    prompt_cache_dir(args.prompt_cache)
    if args.threads is not None and args.threads < 1:
        raise InputError(f"--threads must be at least 1, got {args.threads}")
    check_gpu_layers(args.gpu_layers)
    if args.backend != "auto":
        require(args.backend, f"--backend {args.backend}")
    if args.reasoner_gguf is not None:
        require("llamacpp", "--reasoner-gguf")
    with contextlib.ExitStack() as stack:
        bundle_dir = args.bundle if args.bundle else default_bundle_path()
        if args.perception_gguf is not None or args.mmproj is not None:
            require("llamacpp", "--perception-gguf")
            bundle_dir = stack.enter_context(_composed(args, Path(bundle_dir)))
        return _run(args, open_bundle(bundle_dir, verify=args.verify), image, questions, options)


@contextlib.contextmanager
def _composed(args: argparse.Namespace, base: Path) -> Iterator[Path]:
    """A temporary bundle: --perception-gguf/--mmproj composed with the base bundle's
    other model (hard-linked next to the GGUF when that folder is writable, else copied)."""
    gguf = Path(args.perception_gguf) if args.perception_gguf is not None else None
    parent = gguf.parent if gguf is not None and os.access(gguf.parent, os.W_OK) else None
    with tempfile.TemporaryDirectory(prefix=".edge-run-", dir=parent) as tmp:
        yield compose_bundle(ComposeRequest(out=Path(tmp) / "bundle", perception_gguf=gguf, mmproj=args.mmproj,
                                            from_bundle=base, check_load=False))


def _run(args: argparse.Namespace, bundle: Bundle, image: str | None, questions: list[str] | None,
         options: list[str] | None) -> int:
    if image is None and questions is None:
        image, question, ex_options = _example(bundle)
        questions, options = [question], options or ex_options
    elif questions is None:
        raise InputError("give --question (or neither --image nor --question to run the bundle's example)")
    elif image is None and args.mode != "blind":
        raise InputError("give --image (or --mode blind to answer without one)")

    for question in questions:  # every question checked before the first answer is printed
        check_text(question, options, args.focus)
    load_kw, request_kw = _profile_defaults(args, bundle)
    et = ExtractThink.load(bundle, reasoner_gguf=args.reasoner_gguf, **load_kw)
    try:
        for question in questions:
            events = et.stream(
                image, question, options, mode=args.mode, hint=not args.no_hint, focus=args.focus,
                sampling="greedy" if args.greedy else "paper", seed=args.seed, nowait=not args.no_nowait,
                **request_kw,
            )
            if len(questions) > 1 and not args.json:
                print(f"Question:   {question}", flush=True)
            result = _consume(events, stream=args.stream, as_json=args.json)
            if args.json and not args.stream:
                print(json.dumps(result.to_dict(), ensure_ascii=False), flush=True)
            elif not args.json:
                _print_result(result, streamed=args.stream)
    finally:
        et.close()
    return 0


def _profile_defaults(args: argparse.Namespace, bundle: Bundle) -> tuple[dict, dict]:
    """Load and request settings: explicit flags, else the device profile's, else the runtime's.

    A profile applies when --profile is given or the bundle was packed for a device (it then
    carries profile.json); otherwise nothing is guessed and the runtime's defaults hold.
    """
    load = {"backend": args.backend, "quant": args.quant, "threads": args.threads,
            "max_memory": args.max_memory, "context_length": args.context, "residency": args.residency,
            "gpu_layers": args.gpu_layers or 0, **image_layout_kwargs(args),
            "lookup": args.lookup, "vision_backend": args.vision_backend, "kv_cache_type": args.kv_cache}
    if args.prefix_cache_mb is not None:
        load["prefix_cache_mb"] = prefix_cache_mb(args.prefix_cache_mb)
    if args.prompt_cache is not None:
        load["prompt_cache"] = prompt_cache_dir(args.prompt_cache)
    request = {"thinking": not args.no_thinking, "hint_budget": args.hint_budget,
               "extraction_budget": args.extraction_budget, "thinking_budget": args.thinking_budget,
               "answer_budget": args.answer_budget, "deadline_s": args.deadline}
    if args.profile is None and not (bundle.root / PROFILE_FILE).is_file():
        return load, request
    plan = make_plan(bundle.root, resolve_profile(args.profile, bundle.root),
                     backend=None if args.backend == "auto" else args.backend)
    load.update(
        backend=plan.selection.backend if args.backend == "auto" else args.backend,
        quant=args.quant or dict(plan.selection.quants),
        threads=args.threads or plan.threads,
        max_memory=args.max_memory or (plan.max_memory_mb << 20 if plan.max_memory_mb else None),
        context_length=args.context or plan.context_length,
        residency=plan.residency if args.residency == "auto" else args.residency,
        gpu_layers=plan.gpu_layers if args.gpu_layers is None else args.gpu_layers,
    )
    planned = stream_kwargs(plan)
    planned["thinking"] = planned["thinking"] and not args.no_thinking
    if not planned["thinking"] and args.answer_budget is None:
        planned["answer_budget"] = plan.budgets.non_thinking_answer
    request = {k: (v if v is not None and k != "thinking" else planned[k]) for k, v in request.items()}
    return load, request


def _consume(events: Any, *, stream: bool, as_json: bool) -> Result:
    out = sys.stdout
    result = None
    for ev in events:
        if isinstance(ev, Done):
            result = ev.result
        if not stream:
            continue
        if as_json:
            out.write(json.dumps(event_to_dict(ev), ensure_ascii=False) + "\n")
            out.flush()
        elif isinstance(ev, StageStarted):
            out.write(f"[{ev.stage}] ")
            out.flush()
        elif isinstance(ev, TokenEvent) and ev.text:
            out.write(ev.text)
            out.flush()
        elif isinstance(ev, StageFinished):
            extra = " (cached)" if ev.stats.cached else ""
            out.write(f"{extra}\n")
            out.flush()
    return result


def forced_note(result: Result) -> str:
    """" (forced: ...)" when the budget controller had to write the Answer line itself."""
    forced = next((e for e in result.budget_events if e.kind == "force_answer"), None)
    return f"  (forced: {forced.detail})" if forced is not None else ""


def _print_result(result: Result, *, streamed: bool) -> None:
    lines = []
    if not streamed:
        if result.hint:
            lines.append(f"Focus:      {result.hint}")
        if result.extraction is not None:
            lines.append(f"Extraction: {result.extraction.strip() or '(empty)'}")
        if result.thinking is not None:
            lines.append(f"Thinking:   {result.thinking.strip() or '(empty)'}")
    answer = result.answer if result.answer is not None else "(no answer found)"
    if result.options and result.answer in LETTERS[: len(result.options)]:
        answer = f"{answer}. {result.options[LETTERS.index(result.answer)]}"
    lines.append(f"Answer:     {answer}{forced_note(result)}")
    parts = []
    for name, s in result.stages.items():
        if s.cached:
            parts.append(f"{name} cached")
        elif name == "vision":
            parts.append(f"{name} {s.seconds:.2f} s")
        else:
            parts.append(f"{name} {s.tokens} tok {s.seconds:.2f} s ({s.tokens_per_s:.1f} tok/s)")
    lines.append("Stages:     " + " | ".join(parts))
    lines.append(f"Total:      {result.seconds:.2f} s, peak RSS {result.peak_rss_mb:.0f} MiB, {result.residency}")
    print("\n".join(lines))
