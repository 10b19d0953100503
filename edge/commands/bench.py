"""`edge bench`: latency and memory per stage, with baselines measured in the same run.

    edge bench                                 # the shipped default bundle
    edge bench --bundle my_bundle/ --repeat 5 --threads 4
    edge bench --workload paper-0.6b           # random weights, paper shapes (built once, cached)
    edge bench --workload paper-1.7b --quant q4_k_m --no-transformers
    edge bench ... --json                      # the whole report as one JSON object
    edge bench build --workload paper-1.7b     # only build and cache a workload bundle
    edge bench serve --repeat 12               # `edge serve`'s overhead against the Python API
    edge bench --compare --json                # plain vs fast pipeline (+ a second question), interleaved
    edge bench --workload paper-0.6b --input-modes single,anyres   # views, image tokens, vision and
                                               # prefill seconds per image input mode and image size

Writes bench.json, bench.md and PNG plots (stage breakdown, tokens/s by quantization,
memory over time) into --out (default runs/bench/<bundle or workload>).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from benchmarks.bench_config import BenchConfig
from benchmarks.compare import CompareConfig, has_onnx_vision, run_compare
from benchmarks.compare import to_markdown as compare_markdown
from benchmarks.hf_baseline import HFModel
from benchmarks.input_modes import ModesConfig, parse_modes, parse_sizes, run_input_modes
from benchmarks.input_modes import to_markdown as modes_markdown
from benchmarks.inputs import TokenCounts
from benchmarks.latency import run_bench
from benchmarks.loops import HFSource
from benchmarks.plots import compare_plot
from benchmarks.report import to_markdown, write_outputs
from benchmarks.serve_overhead import ServeBenchConfig, run_serve_overhead
from benchmarks.serve_overhead import to_markdown as serve_markdown
from benchmarks.variants import anyres_variant, has_anyres_layout
from benchmarks.workloads import WORKLOADS, WorkloadBuilder, hf_source, workload
from edge.arguments import add_kv_cache
from edge.extras import require
from edge.progress import ProgressDisplay
from runtime.atomic import atomic_write_text
from runtime.bundle import Bundle, open_bundle
from runtime.defaults import default_bundle_path
from runtime.errors import BundleError, InputError
from runtime.threads import default_threads


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "bench",
        description="Benchmark a bundle (or a paper-scale workload) stage by stage: time to first token, "
        "tokens/s, wall time and RSS, with the raw engines and HF transformers measured in the same run.",
    )
    p.add_argument("action", nargs="?", choices=("run", "build", "serve"), default="run",
                   help="run the benchmark (default), only build a workload bundle, or measure what "
                   "`edge serve` adds to a request against the Python API (--repeat requests, interleaved)")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--bundle", metavar="DIR", help="bundle directory (default: the shipped default bundle)")
    src.add_argument("--workload", choices=tuple(WORKLOADS),
                     help="random-weight bundle with the paper's shapes (built under --artifacts)")
    p.add_argument("--artifacts", metavar="DIR", default="artifacts/bench",
                   help="where workloads are built and cached (default artifacts/bench)")
    p.add_argument("--out", metavar="DIR", help="output folder (default runs/bench/<name>)")
    p.add_argument("--repeat", type=int, default=3, metavar="N", help="measured repetitions (default 3)")
    p.add_argument("--warmup", type=int, default=1, metavar="N", help="warm-up repetitions (default 1)")
    p.add_argument("--threads", type=int, metavar="N", help="CPU threads for every engine (default: physical cores)")
    p.add_argument("--tokens", metavar="SPEC", default="",
                   help="tokens per stage, e.g. hint=16,extraction=128,thinking=256,answer=16 (the default)")
    p.add_argument("--backend", action="append", choices=("llamacpp", "onnx"),
                   help="only this backend (repeatable; default: all in the bundle)")
    p.add_argument("--quant", action="append", metavar="Q", help="only this quantization (repeatable)")
    p.add_argument("--residency", choices=("both", "resident", "sequential"), default="both",
                   help="memory plans to measure for whole requests (default both)")
    p.add_argument("--no-raw", action="store_true", help="skip the raw llama.cpp / onnxruntime baselines")
    p.add_argument("--no-transformers", action="store_true", help="skip the HF transformers baseline")
    p.add_argument("--no-loops", action="store_true", help="skip the per-stage comparison with the baselines")
    p.add_argument("--no-pipeline", action="store_true", help="skip whole requests")
    p.add_argument("--no-plots", action="store_true", help="write no PNG plots")
    add_kv_cache(p)
    p.add_argument("--compare", action="store_true",
                   help="only compare the plain pipeline with the fast settings and a second question on the "
                   "same image, interleaved, each run its own process (llama.cpp, sequential; docs/benchmarks.md)")
    p.add_argument("--input-modes", metavar="LIST",
                   help="only measure these image input modes (e.g. single,anyres): views, image tokens, vision "
                   "and extraction-prefill seconds per mode and image size, interleaved; a workload gets the "
                   "paper's any-resolution layout with a random image_newline (docs/runtime.md)")
    p.add_argument("--image-sizes", metavar="LIST", default="384x384,640x480",
                   help="with --input-modes: image sizes WIDTHxHEIGHT (default 384x384,640x480)")
    p.add_argument("--max-image-tokens", type=int, metavar="N",
                   help="with --input-modes: anyres uses fewer tiles so an image takes at most N tokens")
    p.add_argument("--json", action="store_true", help="print the report as one JSON object")
    p.set_defaults(func=main)


def _hf_source_for_bundle(bundle: Bundle) -> HFSource:
    sources = {}
    for role, entry in bundle.manifest.models.items():
        src = Path(entry.source) if entry.source else None
        if src is not None and (src / "config.json").is_file():
            sources[role] = src
    if not sources:
        return HFSource(None, "the bundle's source checkpoints are not on this machine")

    def load(role: str) -> HFModel:
        if role not in sources:
            raise BundleError(f"no source checkpoint for the {role}")
        return HFModel.from_checkpoint(sources[role], role)

    return HFSource(load, approx_bytes={r: sum(f.stat().st_size for f in s.glob("*.safetensors")) * 2
                                        for r, s in sources.items()})


def _check(args: argparse.Namespace) -> None:
    """Everything that can be refused before any work: numbers, and the packages needed."""
    if args.repeat < 1 or args.warmup < 0:
        raise InputError("--repeat must be >= 1 and --warmup >= 0")
    if args.threads is not None and args.threads < 1:
        raise InputError(f"--threads must be at least 1, got {args.threads}")
    if args.action == "build" and not args.workload:
        raise InputError("`edge bench build` needs --workload")
    for backend in args.backend or ():
        require(backend, f"--backend {backend}")
    if args.compare and args.action != "run":
        raise InputError("--compare is a kind of `edge bench run`")
    if args.input_modes is not None:
        if args.action != "run" or args.compare:
            raise InputError("--input-modes is a kind of `edge bench run` (not with --compare)")
        parse_modes(args.input_modes)
        parse_sizes(args.image_sizes)
        if args.max_image_tokens is not None and args.max_image_tokens < 1:
            raise InputError(f"--max-image-tokens must be at least 1, got {args.max_image_tokens}")
    elif args.max_image_tokens is not None:
        raise InputError("--max-image-tokens is an option of --input-modes")
    if args.action == "serve" and args.workload:
        raise InputError("`edge bench serve` measures a bundle: give --bundle (or nothing for the shipped one)")
    if args.action == "run" and not args.no_plots and args.input_modes is None:
        require("bench", "the benchmark's plots", alternative="or pass --no-plots")


def _workload_bundle(args: argparse.Namespace) -> tuple[Path, HFSource | None]:
    """The workload's bundle (built and cached on first use) and its transformers baseline."""
    builder = WorkloadBuilder(args.artifacts)
    # a workload bundle holds its default quantizations; --quant picks among them (and
    # builds a separate bundle only for quantizations it does not hold)
    default = workload(args.workload).quants
    extra = tuple(q for q in (args.quant or ()) if q not in default)
    quants = default + extra if extra else None
    if not (builder.bundle_path(args.workload, quants) / "manifest.json").is_file():
        # random weights written by the exporter's GGUF writer and quantized by llama.cpp
        require("export", f"building the {args.workload} workload")
        require("llamacpp", f"building the {args.workload} workload")
    with ProgressDisplay(f"build {args.workload}", enabled=not args.quiet) as progress:
        builder = WorkloadBuilder(args.artifacts, progress=progress)
        root = builder.bundle(args.workload, quants)
    if args.action == "build":
        return root, None
    return root, hf_source(args.workload, builder.tokenizer_dir())


def _serve_overhead(args: argparse.Namespace) -> int:
    require("serve", "edge bench serve")
    root = Path(args.bundle) if args.bundle else default_bundle_path()
    backend = (args.backend or ["llamacpp"])[0]
    cfg = ServeBenchConfig(bundle=str(root), requests=args.repeat, warmup=max(args.warmup, 1),
                           threads=args.threads or 1, backend=backend)
    report = run_serve_overhead(cfg, say=lambda m: None if args.quiet else print(f"edge bench: {m}", file=sys.stderr))
    out = Path(args.out) if args.out else Path("runs") / "bench" / f"serve-{root.name}"
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "serve_overhead.json", json.dumps(report, indent=1))
    atomic_write_text(out / "serve_overhead.md", serve_markdown(report) + "\n")
    print(json.dumps(report) if args.json else serve_markdown(report))
    return 0


def _compare(args: argparse.Namespace, bundle: Bundle, name: str | None) -> int:
    require("llamacpp", "edge bench --compare")
    require("export", "edge bench --compare (it writes the q8_0 mmproj)")
    out = Path(args.out) if args.out else Path("runs") / "bench" / f"compare-{name or bundle.manifest.name}"
    cfg = CompareConfig(threads=args.threads or default_threads(), repeat=args.repeat, warmup=args.warmup,
                        counts=TokenCounts.parse(args.tokens) if args.tokens else TokenCounts(),
                        quant=(args.quant or [None])[0])
    variant = Path(args.artifacts) / "compare" / f"{bundle.manifest.name}-mmproj-q8_0"
    with ProgressDisplay("bench compare", enabled=not args.quiet) as progress:
        graph = None
        if name is not None and WORKLOADS[name].format == "gguf" and not has_onnx_vision(bundle):
            # the fast pipeline runs vision on ONNX Runtime: the workload's graph, built once
            graph = WorkloadBuilder(args.artifacts, progress=progress).vision_graph(name)
            variant = variant.with_name(variant.name + "-onnx-vision")
        comparison = run_compare(bundle, variant, cfg, progress=progress, vision_graph=graph)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "compare.json", json.dumps({"comparison": comparison}, indent=1))
    atomic_write_text(out / "compare.md", compare_markdown(comparison) + "\n")
    if not args.no_plots:
        compare_plot(comparison, out / "compare.png")
    print(json.dumps({"comparison": comparison}) if args.json else compare_markdown(comparison))
    return 0


def _input_modes(args: argparse.Namespace, bundle: Bundle, name: str | None) -> int:
    modes = parse_modes(args.input_modes)
    if "anyres" in modes and not has_anyres_layout(bundle):
        if not name:
            raise InputError(f"{bundle.root}: the perception model has no any-resolution layout (pinpoints and "
                             "image_newline) for --input-modes anyres: export a converted paper checkpoint with "
                             "--input-mode anyres, or use --workload")
        # a random-weight workload: the paper's layout with a random newline (speed only)
        variant = anyres_variant(bundle, WorkloadBuilder(args.artifacts).anyres_path(bundle.root))
        bundle = open_bundle(variant, verify="size")  # its files are the checked bundle's, hard-linked
    out = Path(args.out) if args.out else Path("runs") / "bench" / f"input-modes-{name or bundle.manifest.name}"
    cfg = ModesConfig(threads=args.threads or default_threads(),
                      counts=TokenCounts.parse(args.tokens) if args.tokens else TokenCounts(), modes=modes,
                      sizes=parse_sizes(args.image_sizes), repeat=args.repeat, warmup=args.warmup,
                      backend=(args.backend or ["auto"])[0], quant=(args.quant or [None])[0],
                      max_image_tokens=args.max_image_tokens)
    with ProgressDisplay("bench input modes", enabled=not args.quiet) as progress:
        result = run_input_modes(bundle, cfg, progress=progress)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "input_modes.json", json.dumps({"input_modes": result}, indent=1))
    atomic_write_text(out / "input_modes.md", modes_markdown(result) + "\n")
    print(json.dumps({"input_modes": result}) if args.json else modes_markdown(result))
    return 0


def main(args: argparse.Namespace) -> int:
    _check(args)
    if args.action == "serve":
        return _serve_overhead(args)

    def say(msg: str) -> None:
        if not args.quiet:
            print(f"edge bench: {msg}", file=sys.stderr, flush=True)

    hf = None
    name = args.workload
    if args.workload:
        root, hf = _workload_bundle(args)
        if args.action == "build":
            print(root)
            return 0
    else:
        root = Path(args.bundle) if args.bundle else default_bundle_path()
    say(f"checking {root}")
    bundle = open_bundle(root, verify="full")
    if args.compare:
        return _compare(args, bundle, name)
    if args.input_modes is not None:
        return _input_modes(args, bundle, name)
    if hf is None:
        hf = _hf_source_for_bundle(bundle)
    residency = ("resident", "sequential") if args.residency == "both" else (args.residency,)
    baselines = tuple(b for b, off in (("raw", args.no_raw), ("transformers", args.no_transformers)) if not off)
    cfg = BenchConfig(threads=args.threads, repeat=args.repeat, warmup=args.warmup,
                      counts=TokenCounts.parse(args.tokens) if args.tokens else TokenCounts(),
                      backends=tuple(args.backend or ()), quants=tuple(args.quant or ()), baselines=baselines,
                      loops=not args.no_loops, pipeline=not args.no_pipeline, residency=residency,
                      kv_cache_type=args.kv_cache)
    out = Path(args.out) if args.out else Path("runs") / "bench" / (name or bundle.manifest.name)

    def partial(report: dict) -> None:  # a long run leaves its finished sections behind
        write_outputs(report, out, plots=False)
        progress.note(f"partial results in {out}")

    with ProgressDisplay("bench", enabled=not args.quiet) as progress:
        report = run_bench(bundle, cfg, workload=name, hf=hf, progress=progress, on_section=partial)
        paths = write_outputs(report, out, plots=not args.no_plots)
        progress.done(f"{report['seconds']:.0f} s of measurements")
    if args.json:
        print(json.dumps(report))
    else:
        print(to_markdown(report))
        print("written: " + ", ".join(str(p) for p in paths.values()))
    return 0
