"""Unpack an `edge pack` archive safely on the device (`edge unpack`).

`unpack_archive` trusts nothing in the archive: only regular files and directories
(no links, devices or fifos), only paths listed in the manifest (no absolute paths, no
`..`), each file's size checked against the manifest before it is read and its sha256
while it is written, the free disk space checked up front, and the result assembled in a
hidden `.partial` directory that is renamed into place only when complete. It replaces
only an empty folder or a bundle (a folder with manifest.json), and only when asked to.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import os
import shutil
import tarfile
import zlib
from collections.abc import Callable
from pathlib import Path

from runtime import atomic
from runtime.atomic import staged_dir
from runtime.bundle import (
    MANIFEST_NAME,
    MAX_MANIFEST_BYTES,
    open_bundle,
    read_manifest,
    safe_relpath,
)
from runtime.errors import BundleError, ConfigError
from runtime.manifest import FileEntry, Manifest
from runtime.progress import Progress, report

log = logging.getLogger(__name__)

_CHUNK = 1 << 20
_MAX_DIR_MEMBERS = 10_000


def _strip_top(name: str, top: str | None) -> str | None:
    """Member name without the archive's top directory; None for the top directory itself."""
    name = name.rstrip("/")
    if top is None:
        return name
    if name == top:
        return None
    if not name.startswith(top + "/"):
        raise BundleError(f"archive member {name!r} is outside the archive's folder {top!r}")
    return name[len(top) + 1:]


def _copy_verified(tar: tarfile.TarFile, member: tarfile.TarInfo, dest: Path, entry: FileEntry,
                   rel: str, on_bytes: Callable[[int], None]) -> None:
    src = tar.extractfile(member)
    if src is None:
        raise BundleError(f"archive member {rel!r} has no data")
    dest.parent.mkdir(parents=True, exist_ok=True)
    h = hashlib.sha256()
    written = 0
    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    with os.fdopen(fd, "wb") as fh:
        while block := src.read(_CHUNK):
            written += len(block)
            if written > entry.size:
                raise BundleError(f"archive file {rel!r} is larger than the manifest says")
            h.update(block)
            fh.write(block)
            on_bytes(len(block))
        fh.flush()
        os.fsync(fh.fileno())
    if written != entry.size:
        raise BundleError(f"archive file {rel!r} is {written} bytes, the manifest says {entry.size} "
                          "(truncated archive?)")
    if h.hexdigest() != entry.sha256:
        raise BundleError(f"archive file {rel!r} has the wrong sha256 (corrupt or modified)")


def _top_folder(member: tarfile.TarInfo) -> tuple[str | None, bool]:
    """The archive's folder from its first member (a directory entry, or the folder of
    manifest.json), and whether that member is the folder itself."""
    name = member.name.rstrip("/")
    if member.isdir():
        top = safe_relpath(name)
        if "/" in top:
            raise BundleError(f"not an edge pack archive: first entry {name!r}")
        return top, True
    if name == MANIFEST_NAME:
        return None, False
    head, _, tail = name.partition("/")
    if tail != MANIFEST_NAME:
        raise BundleError(f"not an edge pack archive: it must start with {MANIFEST_NAME} (got {name!r})")
    return safe_relpath(head), False


def _read_archive_manifest(tar: tarfile.TarFile, member: tarfile.TarInfo, rel: str, staging: Path) -> Manifest:
    """The archive's first file must be its manifest: parsed strictly, space checked."""
    if rel != MANIFEST_NAME:
        raise BundleError(f"not an edge pack archive: the first file is {rel!r}, not {MANIFEST_NAME}")
    if member.size > MAX_MANIFEST_BYTES:
        raise BundleError("archive manifest is implausibly large")
    (staging / MANIFEST_NAME).write_bytes(tar.extractfile(member).read())
    manifest = read_manifest(staging)  # strict parse; every path safe and listed
    need = sum(e.size for e in manifest.files.values())
    free = shutil.disk_usage(staging).free
    if need > free:
        raise BundleError(f"unpacking needs {need / 1e6:.0f} MB but only {free / 1e6:.0f} MB are free at "
                          f"{staging.parent}")
    return manifest


def _unpack_into(archive: Path, staging: Path, progress: Progress | None) -> Manifest:
    manifest: Manifest | None = None
    top: str | None = None
    seen: set[str] = set()
    dirs = done = 0
    total = 1

    def on_bytes(n: int) -> None:
        nonlocal done
        done += n
        report(progress, "unpack", done / total)

    with tarfile.open(archive, "r|*") as tar:
        for index, member in enumerate(tar):
            if not (member.isreg() or member.isdir()):
                kind = "link" if (member.issym() or member.islnk()) else "special file"
                raise BundleError(f"archive member {member.name!r} is a {kind}: refused")
            if index == 0:
                top, is_folder = _top_folder(member)
                if is_folder:
                    continue
            rel = _strip_top(member.name.rstrip("/"), top)
            if rel is None:
                continue
            rel = safe_relpath(rel)
            if member.isdir():
                dirs += 1
                if dirs > _MAX_DIR_MEMBERS:
                    raise BundleError("archive has an implausible number of directories")
                continue
            if manifest is None:
                manifest = _read_archive_manifest(tar, member, rel, staging)
                total = sum(e.size for e in manifest.files.values()) or 1
                continue
            if rel in seen:
                raise BundleError(f"archive holds {rel!r} twice")
            entry = manifest.files.get(rel)
            if entry is None or rel == MANIFEST_NAME:
                raise BundleError(f"archive file {rel!r} is not listed in its manifest: refused")
            if member.size != entry.size:
                raise BundleError(f"archive file {rel!r} is {member.size} bytes, the manifest says {entry.size}")
            _copy_verified(tar, member, staging / rel, entry, rel, on_bytes)
            seen.add(rel)
    if manifest is None:
        raise BundleError(f"not an edge pack archive: no {MANIFEST_NAME}")
    missing = sorted(set(manifest.files) - seen)
    if missing:
        raise BundleError(f"archive is missing {len(missing)} file(s) its manifest lists: {', '.join(missing[:5])}")
    return manifest


def check_replaceable(to: Path, overwrite: bool) -> None:
    """`to` may be absent or an empty folder; with `overwrite` also a bundle (a folder holding
    manifest.json). A folder of someone's own files is never replaced, --force or not: the
    one rule of `runtime.atomic`, checked here first so the refusal comes before any work."""
    atomic.check_replaceable(to, marker=MANIFEST_NAME if overwrite else None)


def unpack_archive(
    archive: str | os.PathLike[str],
    to: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    progress: Progress | None = None,
) -> Path:
    """Unpack an `edge pack` archive into the bundle directory `to`; returns its path.

    `to` must not exist or be an empty folder; with `overwrite` it may also be a bundle
    (a folder with manifest.json), which is replaced. It only appears once every file is
    written and verified.
    """
    archive = Path(archive)
    if not archive.is_file():
        raise ConfigError(f"{archive}: no such archive")
    to = Path(to).resolve()
    check_replaceable(to, overwrite)
    with staged_dir(to, marker=MANIFEST_NAME if overwrite else None) as staging:
        try:
            _unpack_into(archive, staging, progress)
        except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
            raise BundleError(f"{archive}: not a readable tar archive ({exc})") from None
        open_bundle(staging, verify="size")  # the runtime's own reference checks, once more
        check_replaceable(to, overwrite)  # again: the folder may have changed meanwhile
    report(progress, "unpack", 1.0)
    log.info("unpacked %s into %s", archive, to)
    return to
