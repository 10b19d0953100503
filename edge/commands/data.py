"""`edge data`: the synthetic world, dataset loaders and the visual-extraction pipeline.

    edge data synth      write a synthetic dataset (images + JSONL with every target)
    edge data extract    run the visual-extraction pipeline (resumable, shardable)
    edge data merge      join the outputs of extraction shards, checking the indices
    edge data traces     write reasoner SFT data (thinking traces, focus phrases)
    edge data export-llava  write a perception style as LLaVA conversation JSON
    edge data stats      counts per split, category, question type; target lengths
    edge data check      load a LLaVA JSON or MMStar parquet/TSV and report bad rows
    edge data import-mmstar  convert MMStar-style parquet/TSV into an eval JSONL set
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("data", help="synthetic data, dataset loaders, visual-extraction pipeline",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="data_command", metavar="SUBCOMMAND")
    p.set_defaults(func=lambda args: (p.print_help(), 0)[1])
    _synth_parser(sub)
    _extract_parser(sub)
    _merge_parser(sub)
    _traces_parser(sub)
    _export_llava_parser(sub)
    _stats_parser(sub)
    _check_parser(sub)
    _import_mmstar_parser(sub)


# ---------------------------------------------------------------------------------------
# Progress on stderr


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "--"
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds}s"


def format_progress(label: str, done: int, total: int, rate: float, eta: float | None, width: int = 24) -> str:
    frac = done / total if total else 1.0
    filled = int(frac * width)
    bar = "#" * filled + "-" * (width - filled)
    return f"{label} [{bar}] {done}/{total} {frac * 100:5.1f}% {rate:.1f}/s ETA {_duration(eta)}"


class ProgressBar:
    """Redraws one stderr line on a terminal; prints a line every few seconds otherwise."""

    def __init__(self, label: str, *, enabled: bool = True, every: float = 5.0) -> None:
        self.label = label
        self.enabled = enabled
        self.tty = sys.stderr.isatty()
        self.every = every
        self._last = 0.0
        self._shown = False

    def update(self, done: int, total: int, rate: float, eta: float | None, *, final: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not final and now - self._last < (0.2 if self.tty else self.every):
            return
        self._last = now
        line = format_progress(self.label, done, total, rate, eta)
        if self.tty:
            sys.stderr.write("\r" + line + ("\n" if final else ""))
        else:
            sys.stderr.write(line + "\n")
        sys.stderr.flush()
        self._shown = True


def _print_json(obj) -> None:
    print(json.dumps(obj, indent=2, ensure_ascii=False))


# ---------------------------------------------------------------------------------------
# synth


def _synth_parser(sub) -> None:
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


def _synth(args) -> int:
    from training.data.scene import SceneConfig
    from training.data.synth import SynthConfig, write_dataset

    config = SynthConfig(
        seed=args.seed,
        scene=SceneConfig(image_size=args.image_size, min_objects=args.min_objects, max_objects=args.max_objects,
                          chart_prob=args.chart_prob, text_prob=args.text_prob),
        train=args.train, val=args.val, test=args.test, test_iid=args.test_iid,
        questions_per_image=args.questions_per_image, mc_prob=args.mc_prob,
        **({"held_out": ()} if args.no_held_out else {}),
    )
    bar = ProgressBar("synth", enabled=not args.quiet)
    start = time.perf_counter()

    def progress(done: int, total: int) -> None:
        elapsed = time.perf_counter() - start
        rate = done / elapsed if elapsed > 0 else 0.0
        bar.update(done, total, rate, (total - done) / rate if rate else None, final=done == total)

    summary = write_dataset(args.out, config, overwrite=args.overwrite, progress=progress)
    if args.json:
        _print_json(summary.__dict__)
    else:
        counts = ", ".join(f"{s}: {summary.images[s]} images / {summary.records[s]} questions" for s in summary.images)
        print(f"wrote {summary.out_dir} ({counts}) in {summary.seconds:.1f}s")
    return 0


# ---------------------------------------------------------------------------------------
# extract


def _extract_parser(sub) -> None:
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


def _parse_shard(text: str) -> tuple[int, int]:
    from runtime.errors import InputError

    try:
        k, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise InputError(f"--shard must look like K/N (e.g. 3/16), got {text!r}") from None
    return k, n


def _make_teacher(args):
    from runtime.errors import InputError
    from training.data.teachers import OpenAITeacher, SyntheticTeacher, TransformersTeacher

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


def _extract(args) -> int:
    from runtime.errors import InputError
    from training.data.extraction import run_extraction, shard_range
    from training.data.sources import open_source

    rows, report, kind = open_source(args.input, split=args.split, image_root=args.images)
    if args.teacher == "synthetic" and kind != "synthetic":
        raise InputError("--teacher synthetic needs a synthetic dataset (scene graphs); "
                         f"{args.input} is a {kind} file: use --teacher openai or transformers")
    if report.problems and not args.quiet:
        print(report.summary(), file=sys.stderr)
    if args.shard:
        if args.end is not None:
            raise InputError("--shard and --end cannot be combined")
        start, end = shard_range(len(rows), *_parse_shard(args.shard))
    else:
        start = args.start or 0
        end = args.end if args.end is not None else len(rows)
    if not 0 <= start <= end:
        raise InputError(f"bad row range {start}..{end}")
    teacher = _make_teacher(args)
    bar = ProgressBar("extract", enabled=not args.quiet)

    def progress(p) -> None:
        bar.update(p.done, p.total, p.rate, p.eta, final=p.done == p.total)

    source = str(args.input.resolve()) + (f"#{args.split}" if args.split else "")
    summary = run_extraction(rows, teacher, args.out, start=start, end=end, image_size=args.image_size,
                             source=source, batch_size=args.batch_size, progress=progress)
    if args.json:
        _print_json(summary.to_dict() | {"input": report.to_dict(), "kind": kind})
    else:
        resumed = f" (resumed at row {summary.resumed_at})" if summary.resumed_at > start else ""
        print(f"{summary.output}: rows {summary.start}..{summary.end}{resumed}: wrote {summary.written} "
              f"({summary.ok} ok, {summary.skipped} skipped, {summary.errors} errors) in {summary.seconds:.1f}s")
    return 0


# ---------------------------------------------------------------------------------------
# merge


def _merge_parser(sub) -> None:
    p = sub.add_parser("merge", help="join extraction shard outputs in order (checks indices)",
                       description="Concatenate the outputs of `edge data extract --shard K/N` in shard order. "
                       "Fails if rows are missing, repeated or out of order.")
    p.add_argument("shards", nargs="+", type=Path, help="shard outputs, in shard order")
    p.add_argument("--out", required=True, type=Path)
    p.set_defaults(func=_merge)


def _merge(args) -> int:
    from training.data.extraction import merge_shards

    n = merge_shards(args.shards, args.out)
    print(f"{args.out}: {n} rows from {len(args.shards)} shards")
    return 0


# ---------------------------------------------------------------------------------------
# traces / export-llava


def _traces_parser(sub) -> None:
    p = sub.add_parser("traces", help="write reasoner SFT data: thinking traces and focus phrases",
                       description="Chat-message JSONL for a text reasoner: the stage-2 prompt (a description, "
                       "the question with options) -> '<think>' steps working from the description '</think>' "
                       "then 'Answer: X'; with --hints also question -> focus phrase examples.")
    p.add_argument("dataset", type=Path, help="synthetic dataset folder")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--split", default="train")
    p.add_argument("--description", choices=("extraction", "caption"), default="extraction",
                   help="which description the reasoner reads (extraction: Extract+Think; caption: Caption+Think)")
    p.add_argument("--no-thinking-share", type=float, default=0.0,
                   help="share of examples in non-thinking form (empty think block, direct answer)")
    p.add_argument("--hints", action="store_true", help="also write focus-phrase (hint stage) examples")
    p.set_defaults(func=_traces)


def _traces(args) -> int:
    import hashlib

    from runtime.atomic import atomic_write_text
    from runtime.errors import InputError
    from training.data.styles import hint_messages, trace_messages
    from training.data.synth import SynthDataset

    if not 0.0 <= args.no_thinking_share <= 1.0:
        raise InputError("--no-thinking-share must be in [0, 1]")
    ds = SynthDataset(args.dataset)
    lines = []
    for rec in ds.records(args.split):
        frac = int.from_bytes(hashlib.sha256(f"{rec['id']}:nothink".encode()).digest()[:8], "big") / 2**64
        lines.append(json.dumps(trace_messages(rec, description=args.description,
                                               thinking=frac >= args.no_thinking_share), ensure_ascii=False))
        if args.hints:
            lines.append(json.dumps(hint_messages(rec), ensure_ascii=False))
    atomic_write_text(args.out, "\n".join(lines) + ("\n" if lines else ""))
    print(f"{args.out}: {len(lines)} examples")
    return 0


def _export_llava_parser(sub) -> None:
    p = sub.add_parser("export-llava", help="write a perception training style as LLaVA conversation JSON",
                       description="direct: question -> answer (visual instruction tuning); caption: describe -> "
                       "caption; extraction: extraction instruction + focus -> question-relevant description.")
    p.add_argument("dataset", type=Path, help="synthetic dataset folder")
    p.add_argument("--style", choices=("direct", "caption", "extraction"), required=True)
    p.add_argument("--split", default="train")
    p.add_argument("--out", required=True, type=Path, help="output JSON (image paths relative to its folder)")
    p.set_defaults(func=_export_llava)


def _export_llava(args) -> int:
    from training.data.llava import write_llava
    from training.data.styles import llava_conversation
    from training.data.synth import SynthDataset

    ds = SynthDataset(args.dataset)
    seen: set[str] = set()
    rows = []
    for rec in ds.records(args.split):
        if args.style == "caption":  # one caption per image
            if rec["scene_id"] in seen:
                continue
            seen.add(rec["scene_id"])
        row = llava_conversation(rec, args.style)
        # image paths relative to the output file, so the JSON works where it is written
        row["image"] = os.path.relpath(ds.image_path(rec).resolve(), args.out.resolve().parent)
        rows.append(row)
    write_llava(args.out, rows)
    print(f"{args.out}: {len(rows)} examples")
    return 0


# ---------------------------------------------------------------------------------------
# stats / check / import-mmstar


def _stats_parser(sub) -> None:
    p = sub.add_parser("stats", help="counts per split, category and question type; target lengths")
    p.add_argument("dataset", type=Path)
    p.add_argument("--tokenizer", help="tokenizer.json: report lengths in tokens instead of words")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_stats)


def _stats(args) -> int:
    from training.data.stats import dataset_stats
    from training.data.synth import SynthDataset

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


def _check_parser(sub) -> None:
    p = sub.add_parser("check", help="load a LLaVA JSON/JSONL or MMStar parquet/TSV and report bad rows")
    p.add_argument("file", type=Path)
    p.add_argument("--images", type=Path, help="image folder for LLaVA files (default: the file's folder)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_check)


def _check(args) -> int:
    if args.file.suffix.lower() in (".parquet", ".tsv"):
        from training.data.mmstar import load_mmstar

        _, report = load_mmstar(args.file)
    else:
        from training.data.llava import load_llava

        _, report = load_llava(args.file, args.images)
    if args.json:
        _print_json(report.to_dict())
    else:
        print(report.summary())
    return 0


def _import_mmstar_parser(sub) -> None:
    p = sub.add_parser("import-mmstar", help="convert MMStar-style parquet/TSV into an eval set (JSONL + images)")
    p.add_argument("file", type=Path)
    p.add_argument("--out", required=True, type=Path, help="output folder (data.jsonl + images/)")
    p.set_defaults(func=_import_mmstar)


def _import_mmstar(args) -> int:
    from training.data.mmstar import load_mmstar, write_eval_set

    items, report = load_mmstar(args.file)
    path = write_eval_set(items, args.out)
    print(f"{path}: {len(items)} items ({report.summary()})")
    return 0
