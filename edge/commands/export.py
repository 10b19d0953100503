"""`edge export`: checkpoint folders -> a verified GGUF and/or ONNX bundle.

    edge export --perception DIR --reasoner DIR --format both --quant q4_k_m --quant int8 --out B
    edge export --perception markendo/llava-extract-qwen3-0.6B --reasoner Qwen/Qwen3-0.6B@main --out B
    edge export verify B            parity of B's files against its source checkpoints
    edge export convert SRC --out DIR   a paper (LLaVA-OneVision) checkpoint -> project format
"""

from __future__ import annotations

import argparse
import functools
import json
from collections.abc import Callable
from pathlib import Path

from edge.extras import require
from edge.progress import ProgressDisplay
from export.bundle_writer import ExportRequest, export_bundle
from export.compose import ComposeRequest, compose_bundle
from export.convert_llava_ov import convert_llava_ov
from export.verify import verify_bundle
from runtime.bundle import read_manifest
from runtime.defaults import default_bundle_path
from runtime.errors import ConfigError, EdgeError
from runtime.manifest import GGUF_QUANTS, ONNX_QUANTS


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        description="Export a perception VLM and/or a reasoning LLM (transformers checkpoint "
        "folders or hub ids) to a bundle the runtime runs: GGUF (llama.cpp) and/or ONNX, "
        "quantized. The bundle is written under a temporary name, checked, verified for parity "
        "against the source and only then renamed into place.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=f"quant names: gguf {' '.join(GGUF_QUANTS)}; onnx {' '.join(ONNX_QUANTS)} "
        "(f32 means full precision in every format). Repeat --quant or separate with commas.",
    )
    p.add_argument("--perception", metavar="DIR_OR_ID",
                   help="perception checkpoint: a folder or a hub id org/name[@revision] (LLaVA-style "
                   "SigLIP+Qwen3; the paper's LLaVA-OneVision layout is converted on the fly)")
    p.add_argument("--reasoner", metavar="DIR_OR_ID", help="reasoner checkpoint (Qwen3): a folder or a hub id")
    p.add_argument("--tokenizer", type=Path, help="tokenizer folder for a paper checkpoint that ships none "
                   "(default: the reasoner's)")
    p.add_argument("--vision-heads", type=int, help="attention heads of a paper checkpoint's unknown vision tower")
    p.add_argument("--format", choices=("gguf", "onnx", "both"), default="gguf")
    p.add_argument("--quant", action="append", default=None, metavar="NAME",
                   help="quantization (repeatable); default q8_0 for gguf, int8 for onnx")
    p.add_argument("--mmproj-quant", choices=("f32", "f16", "q8_0"), default=None,
                   help="the perception vision tower's GGUF type (default: f32 beside f32 files, else f16); "
                        "q8_0 is checked against f16 on a probe image and refused when too far off")
    p.add_argument("--vision-quant", choices=("fp32", "int8"), default=None,
                   help="the perception vision graph's ONNX type (default fp32); int8 is checked against "
                        "fp32 on a probe image (embeddings and the extraction's greedy tokens) and refused "
                        "when too far off")
    p.add_argument("--out", type=Path, help="bundle directory to create")
    p.add_argument("--name", help="bundle name recorded in the manifest (default: the folder name)")
    p.add_argument("--force", action="store_true", help="replace an existing bundle at --out")
    p.add_argument("--no-verify", action="store_true", help="skip the parity check before publishing")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--image-tokens", type=int, metavar="N",
                   help="perception image tokens per view after LLaVA-OneVision pooling (729, 196 or 81 for "
                        "27x27; default: unpooled); runs can override it")
    p.add_argument("--input-mode", choices=("single", "anyres"),
                   help="the perception model's default image input: one view, or the paper's any-resolution "
                        "tiles (converted paper checkpoints and models trained with anyres; default: the mode "
                        "the model was trained with, single for converted ones); runs can override it")
    p.set_defaults(func=_json_errors(main_export))

    sub2 = p.add_subparsers(dest="export_command", metavar="{verify,convert,compose}")
    v = sub2.add_parser("verify", help="check a bundle's parity against its source checkpoints",
                        description="Load the source checkpoints recorded in the manifest and "
                        "compare every exported file's outputs with PyTorch (logits, image "
                        "embeddings, top-1 agreement), with tolerances per quantization.")
    v.add_argument("bundle", type=Path)
    v.add_argument("--role", choices=("perception", "reasoner"), action="append")
    v.add_argument("--json", action="store_true")
    v.set_defaults(func=_json_errors(main_verify))
    c = sub2.add_parser("convert", help="convert a paper (LLaVA-OneVision Qwen3) checkpoint",
                        description="Convert markendo/llava-extract-qwen3-* style checkpoints "
                        "(LLaVA-OneVision layout) into the project's perception format, single-view "
                        "(one 384 px view, 729 tokens). Then export the result with `edge export`.")
    c.add_argument("src", type=Path, help="paper checkpoint folder")
    c.add_argument("--out", type=Path, required=True)
    c.add_argument("--tokenizer", type=Path, help="folder or tokenizer.json (default: the checkpoint's)")
    c.add_argument("--vision-heads", type=int, help="attention heads of an unknown vision tower")
    c.add_argument("--force", action="store_true")
    c.set_defaults(func=main_convert)
    k = sub2.add_parser("compose", help="a bundle from GGUF files you already have",
                        description="Make a bundle from existing GGUF files (llama.cpp, Ollama, LM Studio): "
                        "a chat model as the reasoner, a VLM text model with its mmproj as the perception "
                        "model. The files are hard-linked (or copied), hashed and checked: shapes, vocabulary "
                        "and context from the GGUF, the projector width against the text model, the chat "
                        "family recognised from tokenizer.chat_template (never rendered). A role not given "
                        "comes from --from.")
    k.add_argument("--out", type=Path, required=True)
    k.add_argument("--perception-gguf", type=Path, metavar="FILE", help="the VLM's text model GGUF")
    k.add_argument("--mmproj", type=Path, metavar="FILE", help="the VLM's vision projector GGUF")
    k.add_argument("--reasoner-gguf", type=Path, metavar="FILE", help="a chat model GGUF")
    k.add_argument("--from", dest="from_bundle", type=Path, metavar="BUNDLE",
                   help="take the roles not given from this bundle ('default': the shipped default bundle)")
    k.add_argument("--chat-format", choices=("chatml", "qwen3-chatml"),
                   help="the chat family of a GGUF without tokenizer.chat_template")
    k.add_argument("--name", help="bundle name recorded in the manifest (default: the folder name)")
    k.add_argument("--force", action="store_true", help="replace an existing bundle at --out")
    k.add_argument("--json", action="store_true", help="print the result as JSON")
    k.set_defaults(func=_json_errors(main_compose))


def _json_errors(command: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """With --json, a failure also prints {"error": ..., "type": ..., "exit_code": ...} on
    stdout, so scripts reading stdout get JSON either way (the one-line error still goes to
    stderr, from edge.cli)."""

    @functools.wraps(command)
    def run(args: argparse.Namespace) -> int:
        try:
            return command(args)
        except EdgeError as exc:
            if getattr(args, "json", False):
                print(json.dumps({"error": str(exc), "type": type(exc).__name__, "exit_code": exc.exit_code}))
            raise

    return run


def main_export(args: argparse.Namespace) -> int:
    if args.out is None:
        raise ConfigError("--out is required")
    require("export", "edge export")
    formats = ("gguf", "onnx") if args.format == "both" else (args.format,)
    quants = [q for item in (args.quant or []) for q in item.split(",") if q.strip()]
    if not quants:
        quants = [{"gguf": "q8_0", "onnx": "int8"}[f] for f in formats]
    report: dict = {}
    with ProgressDisplay("export", enabled=not args.quiet) as progress:
        out = export_bundle(
            ExportRequest(out=args.out, perception=args.perception, reasoner=args.reasoner,
                          formats=formats, quants=tuple(quants), name=args.name,
                          overwrite=args.force, verify=not args.no_verify, tokenizer=args.tokenizer,
                          vision_heads=args.vision_heads, input_mode=args.input_mode,
                          image_tokens=args.image_tokens, mmproj_quant=args.mmproj_quant,
                          vision_quant=args.vision_quant),
            progress=progress, report=report,
        )
        progress.done(f"wrote {out}")
    m = read_manifest(out)
    parity = report.get("mmproj_parity") or {}
    vision = report.get("vision_parity") or {}
    if args.json:
        print(json.dumps({"bundle": str(out), "files": {k: v.size for k, v in m.files.items()},
                          "mmproj_parity": parity, "vision_parity": vision}))
    else:
        for rel, entry in sorted(m.files.items()):
            print(f"{entry.size / 1e6:10.2f} MB  {rel}")
        for against, found in (("f16", parity), ("fp32", vision)):
            for name, metrics in found.items():
                print(f"{name} vs {against}: " + ", ".join(f"{k} {v:.4g}" for k, v in metrics.items()))
    return 0


def main_verify(args: argparse.Namespace) -> int:
    require("export", "edge export verify")
    with ProgressDisplay("verify", enabled=not args.quiet) as progress:
        report = verify_bundle(args.bundle, roles=tuple(args.role) if args.role else None, progress=progress)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        for r in report["artifacts"]:
            metrics = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                                for k, v in r.items() if k not in ("role", "format", "quant", "passed", "tolerances"))
            print(f"{'PASS' if r['passed'] else 'FAIL'}  {r['role']:10s} {r['format']}/{r['quant']:7s} {metrics}")
    return 0 if report["passed"] else 1


def main_compose(args: argparse.Namespace) -> int:
    require("llamacpp", "edge export compose")
    if args.from_bundle is not None and str(args.from_bundle) == "default" and not args.from_bundle.exists():
        args.from_bundle = default_bundle_path()
    with ProgressDisplay("compose", enabled=not args.quiet) as progress:
        out = compose_bundle(ComposeRequest(
            out=args.out, perception_gguf=args.perception_gguf, mmproj=args.mmproj,
            reasoner_gguf=args.reasoner_gguf, from_bundle=args.from_bundle, name=args.name,
            chat_format=args.chat_format, overwrite=args.force), progress=progress)
        progress.done(f"wrote {out}")
    m = read_manifest(out)
    roles = {r: {"architecture": e.architecture, "chat_format": e.prompt_format(m.chat_format),
                 "thinking": e.special_tokens.think_start is not None} for r, e in m.models.items()}
    if args.json:
        print(json.dumps({"bundle": str(out), "models": roles}))
    else:
        for r, d in roles.items():
            print(f"{r:10s} {d['architecture']:14s} {d['chat_format']:13s} thinking {'on' if d['thinking'] else 'off'}")
    return 0


def main_convert(args: argparse.Namespace) -> int:
    require("export", "edge export convert")
    with ProgressDisplay("convert", enabled=not args.quiet) as progress:
        out = convert_llava_ov(args.src, args.out, tokenizer=args.tokenizer,
                               vision_heads=args.vision_heads, overwrite=args.force, progress=progress)
        progress.done(f"wrote {out}")
    print(f"converted to {out}; next: edge export --perception {out} --format both --out BUNDLE")
    return 0
