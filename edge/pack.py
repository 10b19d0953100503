"""Pack a bundle for one device profile, and unpack such an archive safely on the device.

`pack_bundle` keeps only what the profile runs (one format, each model's preferred
quantization present in the bundle, the tokenizers, the example images), rewrites the
manifest to list exactly those files with their sizes and sha256, adds the profile as
`profile.json` and a README for the target, and writes a tar (gzip when asked) under a
temporary name renamed into place. The manifest is the archive's first member so the
device can check everything while streaming.

`unpack_archive` trusts nothing in the archive: only regular files and directories
(no links, devices or fifos), only paths listed in the manifest (no absolute paths, no
`..`), each file's size checked against the manifest before it is read and its sha256
while it is written, the free disk space checked up front, and the result assembled in a
hidden `.partial` directory that is renamed into place only when complete.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import json
import logging
import os
import re
import shutil
import tarfile
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from edge.profiles import PROFILE_FILE, DeviceProfile, load_profile
from edge.selection import Selection, select
from runtime.atomic import staged_dir
from runtime.bundle import (
    MANIFEST_NAME,
    MAX_MANIFEST_BYTES,
    open_bundle,
    read_manifest,
    safe_relpath,
)
from runtime.config_io import to_dict
from runtime.errors import BundleError, ConfigError
from runtime.manifest import FileEntry, Manifest
from runtime.progress import Progress

log = logging.getLogger(__name__)

README_FILE = "README.md"
_CHUNK = 1 << 20
_MAX_DIR_MEMBERS = 10_000


@dataclass(frozen=True)
class PackResult:
    archive: Path
    selection: Selection
    files: dict[str, int]  # bundle-relative path -> size
    archive_bytes: int

    def to_dict(self) -> dict:
        return {"archive": str(self.archive), "selection": self.selection.to_dict(),
                "files": dict(self.files), "archive_bytes": self.archive_bytes}


def _wants_gzip(out: Path, compress: bool | None) -> bool:
    if compress is not None:
        return compress
    return out.name.endswith((".tar.gz", ".tgz"))


def _needed_files(manifest: Manifest, selection: Selection) -> tuple[dict, list[str]]:
    """The models narrowed to the chosen artifacts, and every file they (and examples) need."""
    models = {}
    needed: list[str] = []
    for role, entry in manifest.models.items():
        art = next(a for a in entry.artifacts
                   if a.format == selection.format and a.quant == selection.quants[role])
        models[role] = dataclasses.replace(entry, artifacts=(art,))
        needed += [entry.tokenizer, *art.files.values()]
    for example in manifest.examples:
        needed += [v for v in example.values() if v in manifest.files]
    return models, list(dict.fromkeys(needed))


def _size(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 100_000 else f"{n / 1e3:.1f} KB"


def _readme(manifest: Manifest, profile: DeviceProfile, selection: Selection,
            files: dict[str, FileEntry], archive_name: str) -> str:
    total = sum(f.size for f in files.values())
    rows = "\n".join(f"| `{rel}` | {_size(entry.size)} |" for rel, entry in sorted(files.items()))
    quants = ", ".join(f"{role} {q}" for role, q in sorted(selection.quants.items()))
    cap = f"{profile.memory_cap_mb} MB" if profile.memory_cap_mb else "what the device has free"
    example = next((e for e in manifest.examples if e.get("image") and e.get("question")), None)
    run_args = (f'--image ~/edge-bundle/{example["image"]} --question "{example["question"]}"'
                if example else '--image photo.jpg --question "What colour is the car?"')
    return f"""# {manifest.name} for {profile.title}

Packed by `edge pack` on {datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")} for the device
profile `{profile.name}` (`profile.json` holds all of it):

- backend: {selection.backend} ({selection.format}: {quants})
- threads: {profile.threads or "all physical cores"}; context: {profile.context_length}; memory cap: {cap}
- budgets: thinking {profile.budgets.thinking if profile.thinking else "off"}, extraction \
{profile.budgets.extraction}, answer {profile.budgets.answer} tokens

`manifest.json` lists every file with its size and sha256:

| file | size |
|---|---|
{rows}

Total {_size(total)}.

## Install (once)

Python 3.11 or newer (Raspberry Pi OS 64-bit bookworm has it; on a Jetson with JetPack 6
install 3.11, see the project's docs/deploy.md):

```sh
python3 -m venv ~/edge-venv && . ~/edge-venv/bin/activate
pip install 'extract-think-edge[{selection.backend}]'   # from a project checkout: pip install '.[{selection.backend}]'
edge unpack {archive_name} --to ~/edge-bundle          # checks every file's size and sha256
```

Without the `edge` command at hand, plain tar works too (`edge run` checks the hashes when it
opens the bundle):

```sh
mkdir -p ~/edge-bundle && tar -xf {archive_name} -C ~/edge-bundle --strip-components=1
```

## Run

```sh
edge doctor --bundle ~/edge-bundle                # what the device looks like, what will run
edge run --bundle ~/edge-bundle {run_args}
edge demo --bundle ~/edge-bundle --host 0.0.0.0 --port 8080     # web page on the local network
edge watch ~/incoming --bundle ~/edge-bundle --question "What is on the table?"
```
"""


def _tarinfo(name: str, size: int, mtime: int, *, directory: bool = False) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = 0 if directory else size
    info.mtime = mtime
    info.mode = 0o755 if directory else 0o644
    info.type = tarfile.DIRTYPE if directory else tarfile.REGTYPE
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def pack_bundle(
    bundle: str | os.PathLike[str],
    profile: DeviceProfile | str,
    out: str | os.PathLike[str],
    *,
    backend: str | None = None,
    compress: bool | None = None,
    overwrite: bool = False,
    progress: Progress | None = None,
) -> PackResult:
    """Write an archive of `bundle` holding only what `profile` runs. Returns what it wrote."""
    progress = progress or (lambda stage, frac: None)
    prof = load_profile(profile) if isinstance(profile, str) else profile
    out = Path(out).resolve()
    if out.exists() and not overwrite:
        raise ConfigError(f"{out} already exists (use --force to replace it)")
    if out.is_dir():
        raise ConfigError(f"{out} is a directory; --out names the archive file to write")
    if not out.parent.is_dir():
        raise ConfigError(f"{out.parent}: no such directory")
    progress("verify source", 0.0)
    src = open_bundle(bundle, verify="full")  # never pack (and re-checksum) a corrupt file
    manifest = src.manifest
    selection = select(prof, manifest, backend=backend)
    models, needed = _needed_files(manifest, selection)

    extras = {
        PROFILE_FILE: (json.dumps(to_dict(prof), indent=2) + "\n").encode(),
    }
    files = {rel: manifest.files[rel] for rel in needed if rel not in (PROFILE_FILE, README_FILE)}
    files[PROFILE_FILE] = FileEntry(len(extras[PROFILE_FILE]), hashlib.sha256(extras[PROFILE_FILE]).hexdigest())
    readme = _readme(manifest, prof, selection, files, out.name).encode()
    extras[README_FILE] = readme
    files[README_FILE] = FileEntry(len(readme), hashlib.sha256(readme).hexdigest())
    note = (f"packed for profile {prof.name} ({selection.describe()}) by edge pack on "
            f"{datetime.now(timezone.utc).isoformat(timespec='seconds')}")
    packed = dataclasses.replace(
        manifest,
        models=models,
        files=dict(sorted(files.items())),
        provenance=dataclasses.replace(
            manifest.provenance,
            notes=f"{manifest.provenance.notes}; {note}" if manifest.provenance.notes else note,
        ),
    )
    manifest_bytes = (json.dumps(to_dict(packed), indent=2, ensure_ascii=False) + "\n").encode()

    # the archive's folder name comes from the bundle's name: keep it to safe characters
    top = re.sub(r"[^A-Za-z0-9._-]+", "-", f"{manifest.name}-{prof.name}").strip(".-") or "bundle"
    epoch = os.environ.get("SOURCE_DATE_EPOCH", "")  # reproducible archives when set
    mtime = int(epoch) if epoch.isdigit() else int(time.time())
    total = sum(f.size for f in files.values()) or 1
    done = 0
    tmp = out.parent / f".{out.name}.{os.getpid()}.tmp"
    # level 6: nearly the size of 9 at a fraction of the time on multi-GB model files
    gz = {"compresslevel": 6} if _wants_gzip(out, compress) else {}
    try:
        with tarfile.open(tmp, "w:gz" if gz else "w", format=tarfile.PAX_FORMAT, **gz) as tar:
            tar.addfile(_tarinfo(top, 0, mtime, directory=True))
            tar.addfile(_tarinfo(f"{top}/{MANIFEST_NAME}", len(manifest_bytes), mtime),
                        io.BytesIO(manifest_bytes))
            for rel in sorted(files):
                progress(f"pack {rel}", done / total)
                if rel in extras:
                    data = extras[rel]
                    tar.addfile(_tarinfo(f"{top}/{rel}", len(data), mtime), io.BytesIO(data))
                else:
                    path = src.path(rel)
                    with open(path, "rb") as fh:
                        tar.addfile(_tarinfo(f"{top}/{rel}", files[rel].size, mtime), fh)
                done += files[rel].size
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    progress("pack", 1.0)
    log.info("packed %s for %s into %s", manifest.name, prof.name, out)
    return PackResult(out, selection, {rel: e.size for rel, e in files.items()}, out.stat().st_size)


# ---- unpacking -------------------------------------------------------------------


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


def _unpack_into(archive: Path, staging: Path, progress: Progress) -> Manifest:
    manifest: Manifest | None = None
    top: str | None = None
    seen: set[str] = set()
    dirs = 0
    total = 1
    done = 0

    def on_bytes(n: int) -> None:
        nonlocal done
        done += n
        progress("unpack", min(done / total, 1.0))

    with tarfile.open(archive, "r|*") as tar:
        for index, member in enumerate(tar):
            if not (member.isreg() or member.isdir()):
                kind = "link" if (member.issym() or member.islnk()) else "special file"
                raise BundleError(f"archive member {member.name!r} is a {kind}: refused")
            name = member.name.rstrip("/")
            if index == 0:
                # the archive's folder: a directory entry first, or the folder of manifest.json
                if member.isdir():
                    top = safe_relpath(name)
                    if "/" in top:
                        raise BundleError(f"not an edge pack archive: first entry {name!r}")
                    continue
                if name != MANIFEST_NAME:
                    head, _, tail = name.partition("/")
                    if tail != MANIFEST_NAME:
                        raise BundleError("not an edge pack archive: it must start with "
                                          f"{MANIFEST_NAME} (got {name!r})")
                    top = safe_relpath(head)
            rel = _strip_top(name, top)
            if rel is None:
                continue
            rel = safe_relpath(rel)
            if member.isdir():
                dirs += 1
                if dirs > _MAX_DIR_MEMBERS:
                    raise BundleError("archive has an implausible number of directories")
                continue
            if manifest is None:
                if rel != MANIFEST_NAME:
                    raise BundleError(f"not an edge pack archive: the first file is {rel!r}, "
                                      f"not {MANIFEST_NAME}")
                if member.size > MAX_MANIFEST_BYTES:
                    raise BundleError("archive manifest is implausibly large")
                (staging / MANIFEST_NAME).write_bytes(tar.extractfile(member).read())
                manifest = read_manifest(staging)  # strict parse; every path safe and listed
                need = sum(e.size for e in manifest.files.values())
                free = shutil.disk_usage(staging).free
                if need > free:
                    raise BundleError(f"unpacking needs {need / 1e6:.0f} MB but only "
                                      f"{free / 1e6:.0f} MB are free at {staging.parent}")
                total = need or 1
                continue
            if rel in seen:
                raise BundleError(f"archive holds {rel!r} twice")
            entry = manifest.files.get(rel)
            if entry is None or rel == MANIFEST_NAME:
                raise BundleError(f"archive file {rel!r} is not listed in its manifest: refused")
            if member.size != entry.size:
                raise BundleError(f"archive file {rel!r} is {member.size} bytes, the manifest says "
                                  f"{entry.size}")
            _copy_verified(tar, member, staging / rel, entry, rel, on_bytes)
            seen.add(rel)
    if manifest is None:
        raise BundleError(f"not an edge pack archive: no {MANIFEST_NAME}")
    missing = sorted(set(manifest.files) - seen)
    if missing:
        raise BundleError(f"archive is missing {len(missing)} file(s) its manifest lists: "
                          f"{', '.join(missing[:5])}")
    return manifest


def unpack_archive(
    archive: str | os.PathLike[str],
    to: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    progress: Progress | None = None,
) -> Path:
    """Unpack an `edge pack` archive into the bundle directory `to`; returns its path.

    `to` must not exist (or be an empty directory) unless `overwrite`; it only appears once
    every file is written and verified.
    """
    progress = progress or (lambda stage, frac: None)
    archive = Path(archive)
    if not archive.is_file():
        raise ConfigError(f"{archive}: no such archive")
    to = Path(to).resolve()
    if to.exists() and not (to.is_dir() and not any(to.iterdir())) and not overwrite:
        raise ConfigError(f"{to} already exists and is not empty (use --force to replace it)")
    with staged_dir(to, marker=MANIFEST_NAME) as staging:  # --force replaces only a bundle
        try:
            _unpack_into(archive, staging, progress)
        except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
            raise BundleError(f"{archive}: not a readable tar archive ({exc})") from None
        open_bundle(staging, verify="size")  # the runtime's own reference checks, once more
    progress("unpack", 1.0)
    log.info("unpacked %s into %s", archive, to)
    return to
