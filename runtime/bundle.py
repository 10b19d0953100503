"""Open a bundle directory and check it before anything is loaded from it.

Checks, in order: the manifest parses strictly; every path stays inside the bundle;
every listed file exists with the listed size; sha256 matches (unless the caller
asked for size-only checks); every model's artifacts and tokenizer are listed files.
Shapes are checked by the backends against `TextShape`/`VisionShape` after loading.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Literal

from runtime.config_io import from_dict
from runtime.errors import BundleError, ConfigError
from runtime.manifest import FORMAT_NAME, FORMAT_VERSION, Artifact, Manifest, ModelEntry

log = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.json"
MAX_MANIFEST_BYTES = 4 << 20
Verify = Literal["full", "size", "none"]

# (path, size, mtime_ns, inode) -> sha256, so a long-lived process re-opening the same
# bundle does not hash gigabytes again.
_hash_memo: dict[tuple[str, int, int, int], str] = {}


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def _memo_sha256(path: Path) -> str:
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns, st.st_ino)
    if key not in _hash_memo:
        _hash_memo[key] = sha256_file(path)
    return _hash_memo[key]


def safe_relpath(rel: str) -> str:
    """Reject absolute paths, backslashes and '..' so a manifest cannot point outside."""
    p = PurePosixPath(rel)
    if not rel or p.is_absolute() or "\\" in rel or any(part in ("..", "") for part in p.parts):
        raise BundleError(f"manifest names an unsafe path: {rel!r}")
    return str(p)


@dataclass(frozen=True)
class Bundle:
    root: Path
    manifest: Manifest

    def path(self, rel: str) -> Path:
        return self.root / safe_relpath(rel)

    def model(self, role: str) -> ModelEntry:
        return self.manifest.model(role)

    def artifact(self, role: str, fmt: str | None = None, quant: str | None = None) -> Artifact:
        """The artifact of `role` in `fmt` (and `quant`); the first listed when unspecified."""
        entry = self.model(role)
        for art in entry.artifacts:
            if (fmt is None or art.format == fmt) and (quant is None or art.quant == quant):
                return art
        have = ", ".join(f"{a.format}/{a.quant}" for a in entry.artifacts) or "none"
        want = "/".join(x for x in (fmt, quant) if x) or "any"
        raise BundleError(f"bundle has no {want} artifact for the {role} model (has: {have})")

    def size_of(self, rel: str) -> int:
        return self.manifest.files[rel].size


def read_manifest(root: str | os.PathLike[str]) -> Manifest:
    """Parse and validate manifest.json without touching the model files."""
    import json

    root = Path(root)
    mpath = root / MANIFEST_NAME
    if not root.is_dir():
        raise BundleError(f"{root}: not a bundle directory")
    if not mpath.is_file():
        raise BundleError(f"{root}: no {MANIFEST_NAME} (not a bundle, or an unfinished export)")
    if mpath.stat().st_size > MAX_MANIFEST_BYTES:
        raise BundleError(f"{mpath}: manifest is implausibly large")
    try:
        data = json.loads(mpath.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"{mpath}: not valid JSON ({exc})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT_NAME:
        raise BundleError(f"{mpath}: not an {FORMAT_NAME} manifest")
    if data.get("format_version") != FORMAT_VERSION:
        raise BundleError(
            f"{mpath}: format_version {data.get('format_version')!r} is not supported "
            f"(this runtime reads version {FORMAT_VERSION})"
        )
    try:
        manifest = from_dict(Manifest, data, where="manifest")
    except ConfigError as exc:
        raise BundleError(f"{mpath}: {exc}") from None
    _check_references(manifest)
    return manifest


def _check_references(m: Manifest) -> None:
    for rel in m.files:
        safe_relpath(rel)
    for role, entry in m.models.items():
        if entry.role != role:
            raise BundleError(f"manifest: models.{role} says its role is {entry.role!r}")
        if entry.tokenizer not in m.files:
            raise BundleError(f"manifest: {role} tokenizer {entry.tokenizer!r} is not in files")
        if not entry.artifacts:
            raise BundleError(f"manifest: the {role} model has no artifacts")
        if (entry.vision is None) != (entry.image is None):
            raise BundleError(f"manifest: {role} needs both 'vision' and 'image' or neither")
        for art in entry.artifacts:
            for part, rel in art.files.items():
                if rel not in m.files:
                    raise BundleError(f"manifest: {role} {art.format} {part} file {rel!r} is not in files")


def open_bundle(
    root: str | os.PathLike[str],
    *,
    verify: Verify = "full",
    only: set[str] | None = None,
) -> Bundle:
    """Open and check a bundle. `only` limits file checks to these relative paths."""
    root = Path(root).resolve()
    manifest = read_manifest(root)
    if verify != "none":
        for rel, entry in manifest.files.items():
            if only is not None and rel not in only:
                continue
            path = root / rel
            if not path.is_file():
                raise BundleError(f"{root}: missing file {rel}")
            size = path.stat().st_size
            if size != entry.size:
                raise BundleError(f"{root}: {rel} is {size} bytes, manifest says {entry.size}")
            if verify == "full":
                digest = _memo_sha256(path)
                if digest != entry.sha256:
                    raise BundleError(f"{root}: {rel} has the wrong sha256 (corrupt or modified)")
    log.debug("opened bundle %s (%s check)", root, verify)
    return Bundle(root=root, manifest=manifest)
