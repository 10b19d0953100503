"""`edge data extract` (the visual-extraction pipeline) and `edge data merge` (its shards)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from edge.extras import require
from edge.progress import ProgressDisplay
from runtime.errors import InputError
from training.data.extraction import merge_shards, run_extraction, shard_range
from training.data.sources import open_source
from training.data.teachers import OpenAITeacher, SyntheticTeacher, Teacher, TransformersTeacher


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "extract", help="run the visual-extraction pipeline (QA -> statements -> description)",
        description="For every input row: the teacher rewrites the QA pairs as declarative statements, then "
        "describes the image (resized to 512x512) working the statements in. Rows are appended to OUT in "
        "index order; a rerun resumes after the rows already written. Split big inputs across workers "
        "with --shard K/N (one output per shard, joined with `edge data merge`).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
        "  edge data extract data/synth --split train --teacher synthetic --out extract.jsonl\n"
        "  edge data extract llava.json --images imgs/ --teacher openai --base-url http://node1:8000 \\\n"
        "      --model Qwen/Qwen3-VL-8B-Instruct --shard 0/16 --out out/shard-00.jsonl\n"
        "  edge data extract llava.json --teacher transformers --model-path Qwen/Qwen3-VL-8B-Instruct \\\n"
        "      --batch-size 16 --out extract.jsonl",
    )
    p.add_argument("input", type=Path, help="LLaVA JSON/JSONL, a synthetic dataset folder, or one of its split files")
    p.add_argument("--out", required=True, type=Path, help="output JSONL (appended to / resumed)")
    p.add_argument("--split", help="split of a synthetic dataset folder (default train)")
    p.add_argument("--images", type=Path, help="folder image paths are relative to (default: the input's folder)")
    p.add_argument("--teacher", choices=("synthetic", "openai", "transformers"), required=True)
    rng = p.add_mutually_exclusive_group()
    rng.add_argument("--shard", help="K/N: this worker's share of the rows (0-based K)")
    rng.add_argument("--start", type=int, help="first row index (with --end)")
    p.add_argument("--end", type=int, help="row index to stop before")
    p.add_argument("--batch-size", type=int, help="rows per teacher call and per fsync")
    p.add_argument("--image-size", type=int, default=512, help="teacher image side (the paper: 512)")
    p.add_argument("--statement-tokens", type=int, default=1024, help="generation cap, step 1")
    p.add_argument("--description-tokens", type=int, default=2048, help="generation cap, step 2")
    g = p.add_argument_group("openai-compatible server")
    g.add_argument("--base-url", help="e.g. http://localhost:8000 (vLLM, SGLang, llama.cpp server)")
    g.add_argument("--model", help="model name the server expects")
    g.add_argument("--api-key-env", default="OPENAI_API_KEY", help="environment variable holding the API key")
    g.add_argument("--concurrency", type=int, default=8, help="requests in flight")
    g.add_argument("--timeout", type=float, default=300.0, help="seconds per request")
    g.add_argument("--retries", type=int, default=5, help="retries per request (exponential backoff)")
    g.add_argument("--image-format", choices=("png", "jpeg"), default="png")
    g.add_argument("--extra-body", help='JSON merged into every request, e.g. '
                   '\'{"chat_template_kwargs": {"enable_thinking": false}}\' for Qwen3 teachers on vLLM')
    g = p.add_argument_group("transformers")
    g.add_argument("--model-path", help="local folder or hub id of an image-text-to-text model")
    g.add_argument("--device", help="cuda, cuda:1, cpu (default: cuda when available)")
    g.add_argument("--dtype", help="bfloat16 (GPU default), float16, float32 (CPU default)")
    p.add_argument("--json", action="store_true", help="print a JSON summary")
    p.set_defaults(func=_extract)

    p = sub.add_parser("merge", help="join extraction shard outputs in order (checks indices)",
                       description="Concatenate the outputs of `edge data extract --shard K/N` in shard order. "
                       "Fails if rows are missing, repeated or out of order.")
    p.add_argument("shards", nargs="+", type=Path, help="shard outputs, in shard order")
    p.add_argument("--out", required=True, type=Path)
    p.set_defaults(func=_merge)



def _parse_shard(text: str) -> tuple[int, int]:
    try:
        k, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise InputError(f"--shard must look like K/N (e.g. 3/16), got {text!r}") from None
    return k, n


def _make_teacher(args: argparse.Namespace) -> Teacher:
    caps = {"statement_tokens": args.statement_tokens, "description_tokens": args.description_tokens}
    if args.teacher == "synthetic":
        return SyntheticTeacher(batch_size=args.batch_size or 64)
    if args.teacher == "openai":
        if not args.base_url or not args.model:
            raise InputError("--teacher openai needs --base-url and --model")
        try:
            extra = json.loads(args.extra_body) if args.extra_body else None
        except json.JSONDecodeError as exc:
            raise InputError(f"--extra-body is not JSON ({exc})") from None
        if extra is not None and not isinstance(extra, dict):
            raise InputError("--extra-body must be a JSON object")
        return OpenAITeacher(args.base_url, args.model, api_key=os.environ.get(args.api_key_env) or None,
                             concurrency=args.concurrency, batch_size=args.batch_size, timeout=args.timeout,
                             retries=args.retries, image_format=args.image_format, extra_body=extra, **caps)
    if not args.model_path:
        raise InputError("--teacher transformers needs --model-path")
    return TransformersTeacher(args.model_path, device=args.device, dtype=args.dtype,
                               batch_size=args.batch_size or 8, **caps)


def _row_range(args: argparse.Namespace, n_rows: int) -> tuple[int, int]:
    if args.shard:
        if args.end is not None:
            raise InputError("--shard and --end cannot be combined")
        start, end = shard_range(n_rows, *_parse_shard(args.shard))
    else:
        start = args.start or 0
        end = args.end if args.end is not None else n_rows
    if not 0 <= start <= end:
        raise InputError(f"bad row range {start}..{end}")
    return start, end


def _extract(args: argparse.Namespace) -> int:
    if args.teacher == "transformers":
        require("train", "--teacher transformers")
    if str(args.input).lower().endswith(".parquet"):
        require("data", "reading parquet")
    rows, report, kind = open_source(args.input, split=args.split, image_root=args.images)
    if args.teacher == "synthetic" and kind != "synthetic":
        raise InputError("--teacher synthetic needs a synthetic dataset (scene graphs); "
                         f"{args.input} is a {kind} file: use --teacher openai or transformers")
    if report.problems and not args.quiet:
        print(report.summary(), file=sys.stderr)
    start, end = _row_range(args, len(rows))
    teacher = _make_teacher(args)
    source = str(args.input.resolve()) + (f"#{args.split}" if args.split else "")
    with ProgressDisplay("extract", enabled=not args.quiet) as progress:
        summary = run_extraction(rows, teacher, args.out, start=start, end=end, image_size=args.image_size,
                                 source=source, batch_size=args.batch_size,
                                 progress=lambda p: progress(f"{p.done}/{p.total} rows",
                                                             p.done / p.total if p.total else 1.0))
    if args.json:
        print(json.dumps(summary.to_dict() | {"input": report.to_dict(), "kind": kind}, indent=2, ensure_ascii=False))
    else:
        resumed = f" (resumed at row {summary.resumed_at})" if summary.resumed_at > start else ""
        print(f"{summary.output}: rows {summary.start}..{summary.end}{resumed}: wrote {summary.written} "
              f"({summary.ok} ok, {summary.skipped} skipped, {summary.errors} errors) in {summary.seconds:.1f}s")
    return 0


def _merge(args: argparse.Namespace) -> int:
    n = merge_shards(args.shards, args.out)
    print(f"{args.out}: {n} rows from {len(args.shards)} shards")
    return 0
