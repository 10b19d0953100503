"""Checkpoint folders -> a verified bundle directory, atomically.

The whole bundle is assembled in a hidden sibling directory (`.NAME.XXXX.partial`), every
file is hashed, the manifest is written last, the result is re-opened with the
runtime's own checks, and only then is the directory renamed into place. An interrupted
or failed export leaves no directory that looks like a bundle.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from runtime.atomic import staged_dir
from runtime.bundle import MANIFEST_NAME, open_bundle, sha256_file
from runtime.chat_format import SPECIAL_ROLES
from runtime.config_io import save_json
from runtime.errors import ConfigError, EdgeError
from runtime.image import SIGLIP_MEAN, SIGLIP_STD
from runtime.manifest import (
    FORMAT_NAME,
    FORMAT_VERSION,
    Artifact,
    Budgets,
    FileEntry,
    ImagePreprocess,
    Manifest,
    ModelEntry,
    Provenance,
    SpecialTokens,
    TextShape,
    VisionShape,
)
from runtime.progress import Progress

log = logging.getLogger(__name__)

ROLES = ("perception", "reasoner")


def _formats():
    """Format name -> (exporter, quant names). Imported lazily: torch-heavy."""
    from export.gguf import GGUF_QUANTS, export_gguf
    from export.onnx import ONNX_QUANTS, export_onnx

    return {"gguf": (export_gguf, GGUF_QUANTS), "onnx": (export_onnx, ONNX_QUANTS)}


# Quant names users type, and which format each belongs to. "f32" means full precision in
# both formats (ONNX spells it fp32).
GGUF_QUANT_NAMES = ("f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "q5_0", "q5_1", "q4_k_m", "q5_k_m", "q6_k")
ONNX_QUANT_NAMES = ("fp32", "int8", "int4")


def assign_quants(formats: Sequence[str], quants: Sequence[str]) -> dict[str, list[str]]:
    """Split the requested quant names between the requested formats.

    Each name belongs to one format (q4_k_m -> gguf, int8 -> onnx); "f32"/"fp32" means full
    precision in every requested format. Every format must end up with at least one.
    """
    out: dict[str, list[str]] = {f: [] for f in formats}
    for q in (x.strip().lower() for x in quants):
        if q in ("f32", "fp32"):
            for f in formats:
                out[f].append("f32" if f == "gguf" else "fp32")
        elif q in GGUF_QUANT_NAMES:
            if "gguf" not in out:
                raise ConfigError(f"quant {q!r} is a GGUF type but --format is {'/'.join(formats)}")
            out["gguf"].append(q)
        elif q in ONNX_QUANT_NAMES:
            if "onnx" not in out:
                raise ConfigError(f"quant {q!r} is an ONNX type but --format is {'/'.join(formats)}")
            out["onnx"].append(q)
        else:
            known = ", ".join(GGUF_QUANT_NAMES + ONNX_QUANT_NAMES[1:])
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
    perception: Path | None = None
    reasoner: Path | None = None
    formats: tuple[str, ...] = ("gguf",)
    quants: tuple[str, ...] = ("q8_0",)
    name: str | None = None
    budgets: Budgets = field(default_factory=Budgets)
    examples: tuple[dict[str, str], ...] = ()
    example_files: tuple[Path, ...] = ()  # copied into the bundle's examples/ folder
    overwrite: bool = False
    verify: bool = True  # run the parity checks before publishing the bundle


def checkpoint_sha256(folder: Path) -> str:
    """One hash over the config and every safetensors file of a checkpoint folder."""
    h = hashlib.sha256()
    for p in sorted([folder / "config.json", *folder.glob("*.safetensors")]):
        h.update(p.name.encode())
        h.update(sha256_file(p).encode())
    return h.hexdigest()


def file_entries(folder: Path) -> dict[str, FileEntry]:
    """Size and sha256 of every file below `folder` but the manifest, by relative path."""
    return {p.relative_to(folder).as_posix(): FileEntry(size=p.stat().st_size, sha256=sha256_file(p))
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != MANIFEST_NAME}


def text_shape(cfg: Any) -> TextShape:
    rope = getattr(cfg, "rope_parameters", None) or {}
    theta = rope.get("rope_theta", getattr(cfg, "rope_theta", None))
    if theta is None:
        raise ConfigError("text config has no rope_theta")
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    return TextShape(
        hidden_size=cfg.hidden_size,
        num_layers=cfg.num_hidden_layers,
        num_heads=cfg.num_attention_heads,
        num_kv_heads=cfg.num_key_value_heads,
        head_dim=head_dim,
        intermediate_size=cfg.intermediate_size,
        vocab_size=cfg.vocab_size,
        context_length=cfg.max_position_embeddings,
        rope_theta=float(theta),
        rms_norm_eps=float(cfg.rms_norm_eps),
        tie_word_embeddings=bool(cfg.tie_word_embeddings),
    )


def vision_shape(v: Any) -> VisionShape:
    """From a SigLIP vision config (or any object with its field names)."""
    n = (v.image_size // v.patch_size) ** 2
    return VisionShape(
        image_size=v.image_size,
        patch_size=v.patch_size,
        hidden_size=v.hidden_size,
        num_layers=v.num_hidden_layers,
        num_heads=v.num_attention_heads,
        intermediate_size=v.intermediate_size,
        tokens_per_image=n,
    )


def image_preprocess(folder: Path, cfg: Any) -> ImagePreprocess:
    """From preprocessor_config.json when the checkpoint has one, else SigLIP's defaults."""
    import json

    mean, std, resample = SIGLIP_MEAN, SIGLIP_STD, "bicubic"
    pp = folder / "preprocessor_config.json"
    if pp.is_file():
        data = json.loads(pp.read_text())
        mean = tuple(data.get("image_mean", mean))
        std = tuple(data.get("image_std", std))
        resample = {2: "bilinear", 3: "bicubic"}.get(data.get("resample", 3), "bicubic")
    return ImagePreprocess(size=cfg.vision_config.image_size, mean=mean, std=std, resample=resample)


def normalize_feature_layer(model: Any) -> None:
    """Make the feature layer the last kept layer, dropping layers that never run.

    LLaVA picks image features from `vision_feature_layer` (e.g. -2); the exported graphs
    and llama.cpp's mmproj run the tower to its end, so trailing layers are removed here.
    """
    cfg = model.config
    layer = cfg.vision_feature_layer
    if not isinstance(layer, int):
        raise ConfigError("multi-layer vision features are not supported by the exporters")
    if cfg.vision_feature_select_strategy != "full":
        raise ConfigError("only vision_feature_select_strategy='full' (SigLIP, no CLS) is supported")
    n = cfg.vision_config.num_hidden_layers
    keep = n + 1 + layer if layer < 0 else layer
    if not 1 <= keep <= n:
        raise ConfigError(f"vision_feature_layer {layer} is out of range for {n} layers")
    if keep < n:
        tower = model.model.vision_tower
        tower.encoder.layers = tower.encoder.layers[:keep]
        cfg.vision_config.num_hidden_layers = keep
        log.info("vision tower: keeping %d of %d layers (feature layer %d)", keep, n, layer)
    cfg.vision_feature_layer = -1


def special_tokens_of(tokenizer_json: Path) -> SpecialTokens:
    from runtime.tokenizer import BundleTokenizer

    tok = BundleTokenizer(tokenizer_json)
    ids = {role: tok.token_id(text) for role, text in SPECIAL_ROLES.items()}
    missing = [k for k in ("im_start", "im_end", "end_of_text") if ids[k] is None]
    if missing:
        raise ConfigError(f"{tokenizer_json}: tokenizer lacks the ChatML tokens {missing}")
    return SpecialTokens(**ids)


def _system_prompt(folder: Path) -> str | None:
    """Converted paper checkpoints record the system prompt their training used."""
    import json

    note = folder / "conversion.json"
    if note.is_file():
        return json.loads(note.read_text()).get("system_prompt")
    return None


def _load(role: str, folder: Path):
    from training.models.loading import load_perception, load_reasoner

    if not folder.is_dir():
        raise ConfigError(f"--{role}: {folder} is not a folder")
    if not (folder / "tokenizer.json").is_file():
        raise ConfigError(f"--{role}: {folder} has no tokenizer.json")
    model = (load_perception if role == "perception" else load_reasoner)(folder)
    return model.float().eval()


def _check_vocab(role: str, model: Any, tokenizer_json: Path) -> None:
    from runtime.tokenizer import BundleTokenizer

    cfg = model.config.text_config if role == "perception" else model.config
    n_tok = BundleTokenizer(tokenizer_json).vocab_size
    if n_tok > cfg.vocab_size:
        raise ConfigError(f"--{role}: tokenizer has {n_tok} tokens but the model only {cfg.vocab_size} embedding rows")
    if role == "perception":
        image_id = special_tokens_of(tokenizer_json).image
        if image_id is None or image_id != model.config.image_token_id:
            raise ConfigError(f"--{role}: config image_token_id {model.config.image_token_id} "
                              f"is not the tokenizer's <|image_pad|> ({image_id})")


def export_bundle(req: ExportRequest, progress: Progress | None = None) -> Path:
    """Export the requested modules to a bundle at `req.out`; returns its path."""
    progress = progress or (lambda stage, frac: None)
    if req.perception is None and req.reasoner is None:
        raise ConfigError("nothing to export: give --perception and/or --reasoner")
    out = Path(req.out).resolve()
    if out.exists() and not req.overwrite:
        raise ConfigError(f"{out} already exists (use --force to replace it)")
    if not os.access(out.parent if out.parent.exists() else _existing_parent(out), os.W_OK):
        raise ConfigError(f"{out.parent} is not writable")
    formats = _formats()
    for f in req.formats:
        if f not in formats:
            raise ConfigError(f"unknown format {f!r} (gguf, onnx)")
    plan = assign_quants(req.formats, req.quants)
    for f, qs in plan.items():
        for q in qs:
            if q not in formats[f][1]:
                raise ConfigError(f"the {f} exporter does not support {q!r} (supports: {', '.join(formats[f][1])})")

    t0 = time.perf_counter()
    with staged_dir(out) as tmp:
        manifest = _assemble(req, tmp, plan, formats, progress)
        save_json(manifest, tmp / MANIFEST_NAME)
        open_bundle(tmp, verify="full")  # the runtime's own checks, before publishing
        if req.verify:
            progress("verify", 0.0)
            from export.verify import verify_bundle

            report = verify_bundle(tmp)
            failed = [r for r in report["artifacts"] if not r.get("passed")]
            if failed:
                names = ", ".join(f"{r['role']} {r['format']}/{r['quant']}" for r in failed)
                raise EdgeError(f"exported files fail parity with the source checkpoint: {names}")
            progress("verify", 1.0)
    log.info("bundle written to %s in %.1f s", out, time.perf_counter() - t0)
    return out


def _existing_parent(p: Path) -> Path:
    while not p.exists():
        p = p.parent
    return p


def _assemble(req: ExportRequest, tmp: Path, plan: dict[str, list[str]], formats, progress: Progress) -> Manifest:
    import importlib.metadata

    sources = {r: p for r, p in (("perception", req.perception), ("reasoner", req.reasoner)) if p is not None}
    tokenizer_files: dict[str, str] = {}  # sha256 -> bundle-relative name (shared when identical)
    models: dict[str, ModelEntry] = {}
    steps = sum(len(qs) for qs in plan.values()) * len(sources)
    done = 0
    for role, folder in sources.items():
        folder = Path(folder).resolve()
        progress(f"load {role}", done / steps)
        model = _load(role, folder)
        tok_src = folder / "tokenizer.json"
        _check_vocab(role, model, tok_src)
        digest = sha256_file(tok_src)
        if digest not in tokenizer_files:
            name = "tokenizer.json" if not tokenizer_files else f"{role}-tokenizer.json"
            shutil.copyfile(tok_src, tmp / name)
            tokenizer_files[digest] = name
        if role == "perception":
            normalize_feature_layer(model)
            tcfg = model.config.text_config
        else:
            tcfg = model.config
        artifacts = []
        for fmt, quants in plan.items():
            exporter = formats[fmt][0]
            for quant in quants:
                stage = f"{role} {fmt}/{quant}"

                def sub(msg: str, frac: float, _stage=stage, _done=done) -> None:
                    progress(f"{_stage}: {msg}", (_done + min(max(frac, 0.0), 1.0)) / steps)

                progress(stage, done / steps)
                parts = exporter(model, folder, tmp, role=role, quant=quant, progress=sub)
                artifacts.append(Artifact(format=fmt, quant=quant, files=dict(parts)))
                done += 1
        models[role] = ModelEntry(
            role=role,
            architecture="llava-qwen3" if role == "perception" else "qwen3",
            text=text_shape(tcfg),
            tokenizer=tokenizer_files[digest],
            special_tokens=special_tokens_of(tok_src),
            artifacts=tuple(artifacts),
            vision=vision_shape(model.config.vision_config) if role == "perception" else None,
            image=image_preprocess(folder, model.config) if role == "perception" else None,
            system_prompt=_system_prompt(folder),
            source=str(folder),
            source_sha256=checkpoint_sha256(folder),
        )
        del model
    for src in req.example_files:
        dst = tmp / "examples" / Path(src).name
        dst.parent.mkdir(exist_ok=True)
        shutil.copyfile(src, dst)
    files = file_entries(tmp)
    try:
        version = importlib.metadata.version("extract-think-edge")
    except importlib.metadata.PackageNotFoundError:
        version = "0+unknown"
    return Manifest(
        format=FORMAT_NAME,
        format_version=FORMAT_VERSION,
        name=req.name or req.out.name,
        models=models,
        files=files,
        provenance=Provenance(
            tool="edge export",
            tool_version=version,
            created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        ),
        budgets=req.budgets,
        examples=tuple(req.examples),
    )
