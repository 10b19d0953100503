"""Open a bundle directory and check it before anything is loaded from it.

Checks, in order: the manifest parses strictly (bounded size and nesting, then types);
its fields make sense (`runtime.manifest_checks`: every path stays inside the bundle,
every referenced file is listed, shapes and image preprocessing within bounds); every
listed file is a regular file whose symbolic links, if any, stay inside the bundle (a
link out of it is refused, whatever the manifest's hashes say); every listed file exists
with the listed size; sha256 matches (unless the caller asked for size-only checks).
Shapes are checked by the backends against `TextShape`/`VisionShape` after loading.
"""

from __future__ import annotations

import hashlib
import logging
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from runtime.config_io import from_dict, read_json
from runtime.errors import BundleError, ConfigError
from runtime.manifest import (
    FORMAT_NAME,
    FORMAT_VERSION,
    READABLE_FORMAT_VERSIONS,
    Artifact,
    Manifest,
    ModelEntry,
)
from runtime.manifest_checks import check_manifest, safe_relpath

__all__ = ["MANIFEST_NAME", "Bundle", "contained_path", "open_bundle", "read_manifest", "safe_relpath",
           "sha256_file"]

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


def contained_path(root: str | os.PathLike[str], rel: str) -> Path:
    """The real path of `root/rel`, or `BundleError` if a symbolic link leads out of `root`.

    Links are resolved (their targets read), never opened; a link that stays inside the
    bundle (one tokenizer shared by two names) is fine. The returned path has no links
    left in it, so opening it cannot be redirected by the link the check just passed.
    """
    real_root = Path(os.path.realpath(root))
    real = Path(os.path.realpath(real_root / safe_relpath(rel)))
    if real != real_root and real_root not in real.parents:
        raise BundleError(f"{real_root}: {ascii(rel)} is a symbolic link to {real}, outside the bundle (refused)")
    return real


@dataclass(frozen=True)
class Bundle:
    root: Path
    manifest: Manifest

    def path(self, rel: str) -> Path:
        """The file `rel` inside the bundle (links resolved, none leading out of it)."""
        return contained_path(self.root, rel)

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
    root = Path(root)
    if not root.is_dir():
        raise BundleError(f"{root}: not a bundle directory")
    if not (root / MANIFEST_NAME).is_file():
        raise BundleError(f"{root}: no {MANIFEST_NAME} (not a bundle, or an unfinished export)")
    mpath = contained_path(root, MANIFEST_NAME)
    try:
        data = read_json(mpath, max_bytes=MAX_MANIFEST_BYTES)
    except ConfigError as exc:
        raise BundleError(str(exc)) from None
    if not isinstance(data, dict) or data.get("format") != FORMAT_NAME:
        raise BundleError(f"{mpath}: not an {FORMAT_NAME} manifest")
    version = data.get("format_version")
    if isinstance(version, bool) or version not in READABLE_FORMAT_VERSIONS:
        raise BundleError(
            f"{mpath}: format_version {_short(version)} is not supported "
            f"(this runtime reads versions {', '.join(map(str, READABLE_FORMAT_VERSIONS))}; it writes {FORMAT_VERSION})"
        )
    try:
        manifest = from_dict(Manifest, data, where="manifest")
    except ConfigError as exc:
        raise BundleError(f"{mpath}: {exc}") from None
    check_manifest(manifest, where=str(mpath))
    return manifest


def _short(value: object) -> str:
    text = ascii(value) if isinstance(value, (str, int, float, bool, type(None))) else type(value).__name__
    return text if len(text) <= 40 else text[:37] + "..."


def _check_file(root: Path, rel: str, entry_size: int, verify: Verify) -> None:
    path = contained_path(root, rel)
    if verify == "none":
        return
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise BundleError(f"{root}: missing file {rel}") from None
    except OSError as exc:
        raise BundleError(f"{root}: cannot read {rel} ({exc.strerror or exc})") from None
    if not stat.S_ISREG(st.st_mode):
        raise BundleError(f"{root}: {rel} is not a regular file")
    if st.st_size != entry_size:
        raise BundleError(f"{root}: {rel} is {st.st_size} bytes, manifest says {entry_size}")


def open_bundle(
    root: str | os.PathLike[str],
    *,
    verify: Verify = "full",
    only: set[str] | None = None,
) -> Bundle:
    """Open and check a bundle. `only` limits file checks to these relative paths."""
    root = Path(root).resolve()
    manifest = read_manifest(root)
    for rel, entry in manifest.files.items():
        if only is not None and rel not in only:
            continue
        _check_file(root, rel, entry.size, verify)  # links are checked even without verification
        if verify == "full" and _memo_sha256(contained_path(root, rel)) != entry.sha256:
            raise BundleError(f"{root}: {rel} has the wrong sha256 (corrupt or modified)")
    log.debug("opened bundle %s (%s check)", root, verify)
    return Bundle(root=root, manifest=manifest)
