"""Shared helpers for the ONNX export and backend tests.

Exports are cached per session (keyed by checkpoint, role and quant) so the export
tests and the backend tests reuse one export of each tiny model. `write_onnx_bundle`
writes a minimal manifest around exported files; the real bundle writer lives in
`export/bundle_writer.py`, this one only exists so backend tests can open a `Bundle`.
"""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

_EXPORTS: dict[tuple[str, str, str], tuple[Path, dict[str, str]]] = {}
_MODELS: dict[str, Any] = {}


def load_model(ckpt: Path) -> Any:
    """The float32 transformers model in `ckpt` (perception or reasoner), cached."""
    key = str(ckpt)
    if key not in _MODELS:
        import json

        from training.models.loading import load_perception, load_reasoner

        mtype = json.loads((ckpt / "config.json").read_text())["model_type"]
        _MODELS[key] = load_perception(ckpt) if mtype == "llava" else load_reasoner(ckpt)
    return _MODELS[key]


def exported(tmp_path_factory: Any, ckpt: Path, role: str, quant: str) -> tuple[Path, dict[str, str]]:
    """(folder, files) of an ONNX export of `ckpt`, made once per test session."""
    from export.onnx import export_onnx

    key = (str(ckpt), role, quant)
    if key not in _EXPORTS:
        out = tmp_path_factory.mktemp(f"onnx-{role}-{quant}")
        files = export_onnx(load_model(ckpt), ckpt, out, role=role, quant=quant)
        _EXPORTS[key] = (out, files)
    return _EXPORTS[key]


def diverse_checkpoint(src: Path, dest: Path, *, std: float = 0.2, seed: int = 0) -> Path:
    """A copy of `src` with its matrices re-drawn from N(0, std^2).

    The fixtures' 0.02-scale random weights give near-uniform logits, and greedy decoding
    then repeats one token forever, which would make "same greedy tokens" a weak check.
    At 0.2 the greedy path wanders through the vocabulary.
    """
    import torch

    if (dest / "config.json").is_file():
        return dest
    model = load_model(src)
    gen = torch.Generator().manual_seed(seed)
    state = {}
    with torch.no_grad():
        for name, p in model.named_parameters():
            state[name] = p.detach().clone()
            if p.ndim == 2:
                p.copy_(torch.randn(p.shape, generator=gen) * std)
    model.save_pretrained(dest)
    with torch.no_grad():  # leave the cached source model as it was
        for name, p in model.named_parameters():
            p.copy_(state[name])
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(src / name, dest / name)
    return dest


def write_onnx_bundle(
    dest: Path, export_dir: Path, files: dict[str, str], model: Any, ckpt: Path, *,
    role: str, quant: str, text_override: dict[str, Any] | None = None,
) -> Path:
    """Copy exported files into `dest` and write a manifest.json for them."""
    from export.bundle_writer import file_entries, special_tokens_of, text_shape, vision_shape
    from runtime.config_io import save_json
    from runtime.manifest import Artifact, ImagePreprocess, Manifest, ModelEntry, Provenance

    dest.mkdir(parents=True, exist_ok=True)
    rels = dict(files)
    for name in rels.values():
        shutil.copy(export_dir / name, dest / name)
    shutil.copy(ckpt / "tokenizer.json", dest / "tokenizer.json")

    vision = image = None
    if role == "perception":
        cfg, vcfg = model.config.text_config, model.config.vision_config
        vision = vision_shape(vcfg)
        image = ImagePreprocess(vcfg.image_size, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    else:
        cfg = model.config
    text = text_shape(cfg)
    if text_override:
        text = replace(text, **text_override)
    entry = ModelEntry(
        role=role, architecture="llava-qwen3" if role == "perception" else "qwen3",
        text=text, tokenizer="tokenizer.json", special_tokens=special_tokens_of(dest / "tokenizer.json"),
        artifacts=(Artifact("onnx", quant, rels),), vision=vision, image=image,
    )
    manifest = Manifest(
        format="extract-think-bundle", format_version=1, name=f"test-{role}-{quant}",
        models={role: entry}, files=file_entries(dest),
        provenance=Provenance("tests", "0", "2026-01-01T00:00:00Z"),
    )
    save_json(manifest, dest / "manifest.json")
    return dest
