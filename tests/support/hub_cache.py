"""A Hugging Face hub cache entry written by hand, laid out as huggingface_hub lays it out.

    models--org--name/blobs/<sha256>            the file contents
    models--org--name/refs/<ref>                the 40-hex commit, no trailing newline
    models--org--name/snapshots/<commit>/<path> relative symlinks into blobs/
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


def write_cache_entry(cache_dir: Path, repo_id: str, files: dict[str, bytes], *, commit: str,
                      refs: tuple[str, ...] = ("main",)) -> Path:
    root = Path(cache_dir) / ("models--" + repo_id.replace("/", "--"))
    (root / "blobs").mkdir(parents=True, exist_ok=True)
    (root / "refs").mkdir(exist_ok=True)
    snap = root / "snapshots" / commit
    for name, data in files.items():
        blob = root / "blobs" / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        dst = snap / name
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.symlink_to(os.path.relpath(blob, dst.parent))
    for ref in refs:
        (root / "refs" / ref).write_text(commit)
    return snap


def folder_files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(Path(folder).rglob("*")) if p.is_file()}
