"""Helpers shared by the GGUF export tests and the llama.cpp backend tests.

`write_gguf_bundle` exports a tiny model with `export.gguf.export_gguf` and writes a
minimal, valid bundle manifest around the files, so backend tests load through the same
`open_bundle` path the runtime uses (the full bundle writer lives in export/bundle_writer).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from export.gguf import export_gguf
from runtime.bundle import sha256_file
from runtime.config_io import save_json
from runtime.manifest import (
    FORMAT_NAME,
    FORMAT_VERSION,
    Artifact,
    FileEntry,
    ImagePreprocess,
    Manifest,
    ModelEntry,
    Provenance,
    SpecialTokens,
    TextShape,
    VisionShape,
)
from runtime.tokenizer import BundleTokenizer


def text_shape(cfg: Any, n_rows: int) -> TextShape:
    rope = (getattr(cfg, "rope_parameters", None) or {}).get("rope_theta", getattr(cfg, "rope_theta", 1e6))
    return TextShape(
        hidden_size=cfg.hidden_size, num_layers=cfg.num_hidden_layers,
        num_heads=cfg.num_attention_heads, num_kv_heads=cfg.num_key_value_heads,
        head_dim=cfg.head_dim, intermediate_size=cfg.intermediate_size, vocab_size=n_rows,
        context_length=cfg.max_position_embeddings, rope_theta=float(rope),
        rms_norm_eps=float(cfg.rms_norm_eps), tie_word_embeddings=bool(cfg.tie_word_embeddings),
    )


def special_tokens(tok: BundleTokenizer) -> SpecialTokens:
    return SpecialTokens(
        im_start=tok.token_id("<|im_start|>"), im_end=tok.token_id("<|im_end|>"),
        end_of_text=tok.token_id("<|endoftext|>"), think_start=tok.token_id("<think>"),
        think_end=tok.token_id("</think>"), image=tok.token_id("<|image_pad|>"),
    )


def model_entry(model: Any, role: str, tokenizer_dir: Path, artifact: Artifact) -> ModelEntry:
    tok = BundleTokenizer(Path(tokenizer_dir) / "tokenizer.json")
    if role == "perception":
        cfg = model.config
        tcfg, v = cfg.text_config, cfg.vision_config
        rows = int(model.model.language_model.embed_tokens.weight.shape[0])
        tokens = (v.image_size // v.patch_size) ** 2
        vision = VisionShape(image_size=v.image_size, patch_size=v.patch_size, hidden_size=v.hidden_size,
                             num_layers=v.num_hidden_layers, num_heads=v.num_attention_heads,
                             intermediate_size=v.intermediate_size, tokens_per_image=tokens)
        image = ImagePreprocess(size=v.image_size, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
        return ModelEntry(role="perception", architecture="llava-qwen3", text=text_shape(tcfg, rows),
                          tokenizer="tokenizer.json", special_tokens=special_tokens(tok),
                          artifacts=(artifact,), vision=vision, image=image)
    rows = int(model.model.embed_tokens.weight.shape[0])
    return ModelEntry(role="reasoner", architecture="qwen3", text=text_shape(model.config, rows),
                      tokenizer="tokenizer.json", special_tokens=special_tokens(tok), artifacts=(artifact,))


def write_manifest(root: Path, entries: dict[str, ModelEntry]) -> Path:
    names = {"tokenizer.json"} | {f for e in entries.values() for a in e.artifacts for f in a.files.values()}
    files = {n: FileEntry(size=(root / n).stat().st_size, sha256=sha256_file(root / n)) for n in sorted(names)}
    manifest = Manifest(
        format=FORMAT_NAME, format_version=FORMAT_VERSION, name="test-gguf", models=entries,
        files=files, provenance=Provenance(tool="tests", tool_version="0", created="2025-01-01T00:00:00Z"),
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
