"""Checkpoint folders -> a verified bundle directory, atomically.

The whole bundle is assembled in a hidden sibling directory (`.NAME.XXXX.partial`), every
file is hashed, the manifest is written last, the result is re-opened with the
runtime's own checks, and only then is the directory renamed into place. An interrupted
or failed export leaves no directory that looks like a bundle.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import logging
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from export.checkpoint import (  # text_shape, vision_shape: also imported from here by others
    image_layout,
    image_preprocess,
    load_for_export,
    system_prompt,
    text_shape,
    vision_shape,
)
from export.gguf import export_gguf
from export.gguf.mmproj import MMPROJ_QUANTS
from export.onnx import export_onnx
from export.sources import Source, open_source
from export.verify import failure_summary, verify_bundle
from runtime.atomic import check_replaceable, is_empty_dir, staged_dir
from runtime.bundle import MANIFEST_NAME, open_bundle, sha256_file
from runtime.chat_format import SPECIAL_ROLES
from runtime.config_io import save_json
from runtime.errors import ConfigError, EdgeError
from runtime.image_layout import image_tokens_to_pool
from runtime.manifest import (
    FORMAT_NAME,
    FORMAT_VERSION,
    GGUF_QUANTS,
    ONNX_QUANTS,
    ONNX_VISION_QUANTS,
    Artifact,
    Budgets,
    FileEntry,
    Manifest,
    ModelEntry,
    Provenance,
    SpecialTokens,
)
from runtime.progress import Progress
from runtime.tokenizer import BundleTokenizer

log = logging.getLogger(__name__)

ROLES = ("perception", "reasoner")


# Format name -> its exporter (same signature: model, checkpoint folder, out dir, role, quant).
EXPORTERS = {"gguf": export_gguf, "onnx": export_onnx}
# Which format each quant name belongs to; "f32" (or ONNX's "fp32") means full precision in
# every requested format. The names are runtime.manifest's: exporters accept exactly these.
FULL_PRECISION = {"gguf": "f32", "onnx": "fp32"}


def assign_quants(formats: Sequence[str], quants: Sequence[str]) -> dict[str, list[str]]:
    """Split the requested quant names between the requested formats.

    Each name belongs to one format (q4_k_m -> gguf, int8 -> onnx); "f32"/"fp32" means full
    precision in every requested format. Every format must end up with at least one.
    """
    out: dict[str, list[str]] = {f: [] for f in formats}
    for q in (x.strip().lower() for x in quants):
        if q in ("f32", "fp32"):
            for f in formats:
                out[f].append(FULL_PRECISION[f])
        elif q in GGUF_QUANTS:
            if "gguf" not in out:
                raise ConfigError(f"quant {q!r} is a GGUF type but --format is {'/'.join(formats)}")
            out["gguf"].append(q)
        elif q in ONNX_QUANTS:
            if "onnx" not in out:
                raise ConfigError(f"quant {q!r} is an ONNX type but --format is {'/'.join(formats)}")
            out["onnx"].append(q)
        else:
            known = ", ".join(GGUF_QUANTS + ONNX_QUANTS[1:])
            raise ConfigError(f"unknown quant {q!r} (known: {known})")
    for f, qs in out.items():
        if not qs:
            example = "q4_k_m" if f == "gguf" else "int8"
            raise ConfigError(f"no quant given for the {f} format (e.g. --quant {example})")
        out[f] = list(dict.fromkeys(qs))
    return out


@dataclass(frozen=True)
class ExportRequest:
    out: Path
    perception: str | Path | None = None  # checkpoint folder or hub id (org/name[@revision])
    reasoner: str | Path | None = None
    formats: tuple[str, ...] = ("gguf",)
    quants: tuple[str, ...] = ("q8_0",)
    name: str | None = None
    budgets: Budgets = field(default_factory=Budgets)
    examples: tuple[dict[str, str], ...] = ()
    example_files: tuple[Path, ...] = ()  # copied into the bundle's examples/ folder
    overwrite: bool = False
    verify: bool = True  # run the parity checks before publishing the bundle
    tokenizer: Path | None = None  # for a paper checkpoint that ships no tokenizer.json
    vision_heads: int | None = None  # attention heads of a paper checkpoint's unknown vision tower
    # the perception model's default image input (runtime.image_layout); None: the mode it was
    # trained with (anyres for a model trained so, else single)
    input_mode: str | None = None
    image_tokens: int | None = None  # per view after LLaVA-OV pooling (729/196/81 at 27x27); None: unpooled
    # the perception mmproj's type: f32, f16 or q8_0 (None: f32 beside f32 files, else f16)
    mmproj_quant: str | None = None
    vision_quant: str | None = None  # the onnx vision graph: fp32 (None) or int8


def file_entries(folder: Path) -> dict[str, FileEntry]:
    """Size and sha256 of every file below `folder` but the manifest, by relative path."""
    return {p.relative_to(folder).as_posix(): FileEntry(size=p.stat().st_size, sha256=sha256_file(p))
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != MANIFEST_NAME}


def special_tokens_of(tokenizer_json: Path) -> SpecialTokens:
    tok = BundleTokenizer(tokenizer_json)
    ids = {role: tok.token_id(text) for role, text in SPECIAL_ROLES.items()}
    missing = [k for k in ("im_start", "im_end", "end_of_text") if ids[k] is None]
    if missing:
        raise ConfigError(f"{tokenizer_json}: tokenizer lacks the ChatML tokens {missing}")
    return SpecialTokens(**ids)


def _check_vocab(role: str, model: Any, tokenizer_json: Path) -> None:
    cfg = model.config.text_config if role == "perception" else model.config
    n_tok = BundleTokenizer(tokenizer_json).vocab_size
    if n_tok > cfg.vocab_size:
        raise ConfigError(f"--{role}: tokenizer has {n_tok} tokens but the model only {cfg.vocab_size} embedding rows")
    if role == "perception":
        image_id = special_tokens_of(tokenizer_json).image
        if image_id is None or image_id != model.config.image_token_id:
            raise ConfigError(f"--{role}: config image_token_id {model.config.image_token_id} "
                              f"is not the tokenizer's <|image_pad|> ({image_id})")


def export_bundle(req: ExportRequest, progress: Progress | None = None,
                  report: dict[str, Any] | None = None) -> Path:
    """Export the requested modules to a bundle at `req.out`; returns its path.

    `report` (optional) receives what the export measured: "mmproj_parity", file name ->
    the quantized mmproj's embedding error against F16 (`export.gguf.mmproj_parity`);
    "vision_parity", file name -> an int8 ONNX vision graph's against float32
    (`export.onnx.vision_parity`)."""
    progress = progress or (lambda stage, frac: None)
    if req.perception is None and req.reasoner is None:
        raise ConfigError("nothing to export: give --perception and/or --reasoner")
    out = Path(req.out).resolve()
    if out.exists() and not req.overwrite and not is_empty_dir(out):
        raise ConfigError(f"{out} already exists (use --force to replace it)")
    check_replaceable(out, marker=MANIFEST_NAME)  # --force replaces a bundle, nothing else
    if not os.access(out.parent if out.parent.exists() else _existing_parent(out), os.W_OK):
        raise ConfigError(f"{out.parent} is not writable")
    for f in req.formats:
        if f not in EXPORTERS:
            raise ConfigError(f"unknown format {f!r} (gguf, onnx)")
    plan = assign_quants(req.formats, req.quants)
    if req.mmproj_quant is not None and req.mmproj_quant not in MMPROJ_QUANTS:
        raise ConfigError(f"the mmproj can be {', '.join(MMPROJ_QUANTS)}, not {req.mmproj_quant!r}")
    if req.vision_quant is not None:
        if req.vision_quant not in ONNX_VISION_QUANTS:
            raise ConfigError(f"the ONNX vision graph can be {', '.join(ONNX_VISION_QUANTS)}, "
                              f"not {req.vision_quant!r}")
        if "onnx" not in plan or req.perception is None:
            raise ConfigError("--vision-quant applies to the perception model's ONNX export "
                              "(give --perception and --format onnx or both)")

    t0 = time.perf_counter()
    with contextlib.ExitStack() as stack, staged_dir(out, marker=MANIFEST_NAME) as tmp:
        sources = _open_sources(req, stack, progress)
        manifest = _assemble(req, sources, tmp, plan, progress, report)
        save_json(manifest, tmp / MANIFEST_NAME)
        open_bundle(tmp, verify="full")  # the runtime's own checks, before publishing
        if req.verify:
            progress("verify", 0.0)
            failed = failure_summary(verify_bundle(tmp, folders={r: s.folder for r, s in sources.items()}))
            if failed:
                raise EdgeError(f"exported files fail parity with the source checkpoint: {failed}")
            progress("verify", 1.0)
    log.info("bundle written to %s in %.1f s", out, time.perf_counter() - t0)
    return out


def _open_sources(req: ExportRequest, stack: contextlib.ExitStack, progress: Progress) -> dict[str, Source]:
    """Resolve hub ids and convert paper checkpoints; the reasoner first, so that its Qwen3
    tokenizer can stand in for a paper checkpoint that ships none."""
    sources: dict[str, Source] = {}
    if req.reasoner is not None:
        sources["reasoner"] = stack.enter_context(open_source(req.reasoner, "reasoner", progress=progress))
    if req.perception is not None:
        tok = req.tokenizer or (sources["reasoner"].folder if "reasoner" in sources else None)
        sources["perception"] = stack.enter_context(open_source(
            req.perception, "perception", progress=progress, tokenizer=tok, vision_heads=req.vision_heads))
    return {r: sources[r] for r in ROLES if r in sources}


def _existing_parent(p: Path) -> Path:
    while not p.exists():
        p = p.parent
    return p


def _export_role(role: str, src: Source, tmp: Path, plan: dict[str, list[str]], progress: Progress,
                 step: tuple[int, int], tokenizer_name: str, req: ExportRequest,
                 report: dict[str, Any] | None = None) -> ModelEntry:
    """Load one checkpoint, write its artifacts into `tmp` and describe them."""
    done, steps = step
    folder = src.folder
    progress(f"load {role}", done / steps)
    model = load_for_export(role, folder)
    tok_src = folder / "tokenizer.json"
    _check_vocab(role, model, tok_src)
    vcfg = model.config.vision_config if role == "perception" else None
    image = image_preprocess(folder, vcfg.image_size) if vcfg is not None else None  # checked before the work
    layout = None
    if vcfg is not None:
        grid = vcfg.image_size // vcfg.patch_size
        # the option, else what training recorded (training.models.pooling), else none
        pool = (int(getattr(model.config, "image_pool", 1) or 1) if req.image_tokens is None
                else image_tokens_to_pool(grid, req.image_tokens))
        layout, newline_src = image_layout(folder, tile=vcfg.image_size, hidden=model.config.text_config.hidden_size,
                                           input_mode=req.input_mode, pool=pool)
        if newline_src is not None:
            shutil.copyfile(newline_src, tmp / layout.newline)
    artifacts = []
    for fmt, quants in plan.items():
        for quant in quants:
            stage = f"{role} {fmt}/{quant}"

            def sub(msg: str, frac: float, _stage=stage, _done=done) -> None:
                progress(f"{_stage}: {msg}", (_done + min(max(frac, 0.0), 1.0)) / steps)

            progress(stage, done / steps)
            extra: dict[str, Any] = {}
            if fmt == "gguf" and role == "perception":
                extra = {"mmproj_quant": req.mmproj_quant, "report": report.setdefault("mmproj_parity", {})
                         if report is not None else None}
            if fmt == "onnx" and role == "perception":
                extra = {"vision_quant": req.vision_quant, "report_to": report.setdefault("vision_parity", {})
                         if report is not None else None}
            parts = EXPORTERS[fmt](model, folder, tmp, role=role, quant=quant, progress=sub, **extra)
            vquant = (req.vision_quant or "fp32") if fmt == "onnx" and "vision" in parts else None
            artifacts.append(Artifact(format=fmt, quant=quant, files=dict(parts), vision_quant=vquant))
            done += 1
    return ModelEntry(
        role=role,
        architecture="llava-qwen3" if role == "perception" else "qwen3",
        text=text_shape(model.config.text_config if role == "perception" else model.config),
        tokenizer=tokenizer_name,
        special_tokens=special_tokens_of(tok_src),
        artifacts=tuple(artifacts),
        vision=vision_shape(vcfg) if vcfg is not None else None,
        image=image,
        system_prompt=system_prompt(folder),
        source=src.source,
        source_sha256=src.source_sha256,
        source_revision=src.revision,
        source_files=dict(src.files),
        source_layout=src.layout,
        image_layout=layout,
    )


def _assemble(req: ExportRequest, sources: dict[str, Source], tmp: Path, plan: dict[str, list[str]],
              progress: Progress, report: dict[str, Any] | None = None) -> Manifest:
    tokenizer_files: dict[str, str] = {}  # sha256 -> bundle-relative name (shared when identical)
    models: dict[str, ModelEntry] = {}
    per_role = sum(len(qs) for qs in plan.values())
    for i, (role, src) in enumerate(sources.items()):
        folder = src.folder
        tok_src = folder / "tokenizer.json"
        digest = sha256_file(tok_src) if tok_src.is_file() else None
        if digest is not None and digest not in tokenizer_files:
            name = "tokenizer.json" if not tokenizer_files else f"{role}-tokenizer.json"
            shutil.copyfile(tok_src, tmp / name)
            tokenizer_files[digest] = name
        models[role] = _export_role(role, src, tmp, plan, progress, (i * per_role, per_role * len(sources)),
                                    tokenizer_files.get(digest, "tokenizer.json"), req, report)
    for src in req.example_files:
        dst = tmp / "examples" / Path(src).name
        dst.parent.mkdir(exist_ok=True)
        shutil.copyfile(src, dst)
    try:
        version = importlib.metadata.version("extract-think-edge")
    except importlib.metadata.PackageNotFoundError:
        version = "0+unknown"
    return Manifest(
        format=FORMAT_NAME,
        format_version=FORMAT_VERSION,
        name=req.name or req.out.name,
        models=models,
        files=file_entries(tmp),
        provenance=Provenance(
            tool="edge export",
            tool_version=version,
            created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        ),
        budgets=req.budgets,
        examples=tuple(req.examples),
    )
