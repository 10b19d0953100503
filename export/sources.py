"""What `edge export --perception/--reasoner` name -> a checkpoint folder in the project's format.

A source is a local folder or a hub id (`org/name[@revision]`, see export.hub). A
checkpoint in the paper's released LLaVA-OneVision layout (`model_type` llava_qwen_3) is
converted on the fly into a temporary folder (export.convert_llava_ov), which lives as long
as the `open_source` context. The recorded provenance (hub id, resolved commit, file hashes,
layout) goes into the bundle's manifest.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from export.checkpoint import checkpoint_sha256
from export.convert_llava_ov import convert_llava_ov, is_paper_checkpoint
from export.hub import HubError, HubSnapshot, parse_hub_id, resolve_hub
from runtime.bundle import sha256_file
from runtime.errors import ConfigError
from runtime.progress import Progress


@dataclass(frozen=True)
class Source:
    folder: Path  # project-format checkpoint to export from
    source: str  # what the manifest records: the folder, or the hub id
    source_sha256: str  # checkpoint_sha256 of the folder as given (before any conversion)
    revision: str | None = None  # hub: the resolved 40-hex commit
    files: dict[str, str] = field(default_factory=dict)  # hub: snapshot file -> sha256
    layout: str = "project"  # or "llava-onevision" (converted on the fly)


def snapshot_files(folder: Path) -> dict[str, str]:
    """sha256 of every file in a snapshot folder, by relative path (LFS blob names are
    sha256 but small files are named by git sha1, so the files are hashed here)."""
    return {p.relative_to(folder).as_posix(): sha256_file(p)
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _given_folder(spec: str | Path, role: str, progress: Progress) -> tuple[Path, HubSnapshot | None]:
    path = Path(spec)
    if path.is_dir():
        return path.resolve(), None
    if path.exists():
        raise ConfigError(f"--{role} {spec}: is not a folder")
    if parse_hub_id(str(spec)) is None:
        raise ConfigError(f"--{role} {spec}: no such folder, and not a hub id (org/name[@revision])")
    try:
        snap = resolve_hub(str(spec), progress=lambda stage, frac: progress(f"download {role}", frac))
    except HubError as exc:  # a mistyped local folder looks like a hub id too
        raise HubError(f"--{role} {spec}: no such folder, and as a hub id: {exc}") from None
    return snap.path, snap


@contextlib.contextmanager
def open_source(spec: str | Path, role: str, *, progress: Progress | None = None,
                tokenizer: Path | None = None, vision_heads: int | None = None) -> Iterator[Source]:
    """The project-format folder for `spec` while the context lasts.

    `tokenizer` (a folder or tokenizer.json) is used when a paper-layout checkpoint ships
    none (the reasoner's Qwen3 tokenizer has the same vocabulary).
    """
    progress = progress or (lambda stage, frac: None)
    folder, snap = _given_folder(spec, role, progress)
    given_hash = checkpoint_sha256(folder)
    hub = dict(source=snap.repo_id, revision=snap.commit, files=snapshot_files(folder)) if snap else \
        dict(source=str(folder))
    if not is_paper_checkpoint(folder):
        yield Source(folder=folder, source_sha256=given_hash, **hub)
        return
    if role != "perception":
        raise ConfigError(f"--{role} {spec}: a LLaVA-OneVision (paper) checkpoint is a perception model")
    tok = folder if (folder / "tokenizer.json").is_file() else tokenizer
    if tok is None:
        raise ConfigError(f"--{role} {spec}: the checkpoint has no tokenizer.json; give --reasoner (its Qwen3 "
                          "tokenizer is used) or --tokenizer")
    with tempfile.TemporaryDirectory(prefix="edge-convert-") as tmp:
        out = convert_llava_ov(folder, Path(tmp) / "converted", tokenizer=tok, vision_heads=vision_heads,
                               progress=lambda stage, frac: progress(f"convert {role}: {stage}", frac))
        yield Source(folder=out, source_sha256=given_hash, layout="llava-onevision", **hub)
