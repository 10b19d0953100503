"""Helpers shared by the GGUF export tests and the llama.cpp backend tests.

`write_gguf_bundle` exports a tiny model with `export.gguf.export_gguf` and writes a
minimal, valid bundle manifest around the files, so backend tests load through the same
`open_bundle` path the runtime uses (the full bundle writer lives in export/bundle_writer).
"""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

from export.bundle_writer import file_entries, special_tokens_of, text_shape, vision_shape
from export.gguf import export_gguf
from runtime.config_io import save_json
from runtime.manifest import (
    FORMAT_NAME,
    FORMAT_VERSION,
    Artifact,
    ImagePreprocess,
    Manifest,
    ModelEntry,
    Provenance,
)


def model_entry(model: Any, role: str, tokenizer_dir: Path, artifact: Artifact) -> ModelEntry:
    special = special_tokens_of(Path(tokenizer_dir) / "tokenizer.json")
    if role == "perception":
        cfg = model.config
        rows = int(model.model.language_model.embed_tokens.weight.shape[0])
        v = cfg.vision_config
        return ModelEntry(role="perception", architecture="llava-qwen3",
                          text=replace(text_shape(cfg.text_config), vocab_size=rows),
                          tokenizer="tokenizer.json", special_tokens=special, artifacts=(artifact,),
                          vision=vision_shape(v),
                          image=ImagePreprocess(size=v.image_size, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)))
    rows = int(model.model.embed_tokens.weight.shape[0])
    return ModelEntry(role="reasoner", architecture="qwen3", text=replace(text_shape(model.config), vocab_size=rows),
                      tokenizer="tokenizer.json", special_tokens=special, artifacts=(artifact,))


def write_manifest(root: Path, entries: dict[str, ModelEntry]) -> Path:
    manifest = Manifest(
        format=FORMAT_NAME, format_version=FORMAT_VERSION, name="test-gguf", models=entries,
        files=file_entries(root),
        provenance=Provenance(tool="tests", tool_version="0", created="2025-01-01T00:00:00Z"),
    )
    save_json(manifest, root / "manifest.json")
    return root


def write_gguf_bundle(root: Path, models: dict[str, Any], tokenizer_dir: Path, quant: str = "f32") -> Path:
    """Export each role's model to GGUF into `root` and write its manifest."""
    root.mkdir(parents=True, exist_ok=True)
    shutil.copy(Path(tokenizer_dir) / "tokenizer.json", root / "tokenizer.json")
    entries = {}
    for role, model in models.items():
        files = export_gguf(model, tokenizer_dir, root, role=role, quant=quant)
        entries[role] = model_entry(model, role, tokenizer_dir, Artifact(format="gguf", quant=quant, files=files))
    return write_manifest(root, entries)
