"""Pack a bundle for one device profile into one checksummed archive.

`pack_bundle` keeps only what the profile runs (one format, each model's preferred
quantization present in the bundle, the tokenizers, the example images), rewrites the
manifest to list exactly those files with their sizes and sha256, adds the profile as
`profile.json` and a README for the target, and writes a tar (gzip when asked) under a
temporary name renamed into place. The manifest is the archive's first member so the
device can check everything while streaming.

`pack_bundle` trusts the source bundle no more than the runtime does: no file is read
through a symbolic link that leads outside the bundle (each path is checked with lstat
before it is opened, and opened without following a last link), each file must be a
regular file of the listed size, and its sha256 is checked while it is packed.

The device side, `edge unpack`, is `edge.unpack`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import logging
import os
import re
import stat
import tarfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from edge.profiles import PROFILE_FILE, DeviceProfile, load_profile
from edge.selection import Selection, select
from runtime.bundle import (
    MANIFEST_NAME,
    open_bundle,
    safe_relpath,
)
from runtime.config_io import to_dict
from runtime.errors import BundleError, ConfigError
from runtime.manifest import FORMAT_VERSION, FileEntry, Manifest
from runtime.progress import Progress, report

log = logging.getLogger(__name__)

README_FILE = "README.md"
PYTHON_MIN = "3.10"  # pyproject's requires-python, as the project's README says it


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
    # (long: it is the README's template, one f-string to read top to bottom)
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

Python {PYTHON_MIN} or newer, as for the project; on an ARM board use 3.11+, for which PyPI has
aarch64 onnxruntime wheels (Raspberry Pi OS 64-bit bookworm has 3.11; a Jetson with JetPack 6
ships 3.10: install 3.11, see the project's docs/deploy.md). The project is installed from a
checkout of its source (the same version that packed this archive), copied to the device, here
to `~/extract-think-edge`:

```sh
python3 -m venv ~/edge-venv && . ~/edge-venv/bin/activate
pip install -e "$HOME/extract-think-edge[{selection.backend}]"
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

Each command checks every file's sha256 when it opens the bundle; after `edge unpack` (which
checked them) `--verify size` skips that, which saves seconds per start on a board.
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


def refuse_outside_links(root: Path, rels: Iterable[str]) -> None:
    """BundleError when any of `rels` (bundle-relative) reaches outside `root` through a
    symbolic link, in its last part or in a folder on the way. Checked with lstat, part
    by part: nothing is followed to find out."""
    real_root = Path(os.path.realpath(root))
    for rel in rels:
        here = real_root
        for part in Path(safe_relpath(rel)).parts:
            here = here / part
            try:
                st = os.lstat(here)
            except OSError:
                break  # missing (or under a file): the bundle checks report it, with its name
            if stat.S_ISLNK(st.st_mode):
                target = Path(os.path.realpath(here))
                if target != real_root and real_root not in target.parents:
                    raise BundleError(f"{root}: {rel} is a symbolic link to {target}, outside the "
                                      "bundle: refused")
                here = target


class _HashingReader:
    """A file read by tarfile, hashed on the way (so what is packed is what was checked)."""

    def __init__(self, fh, rel: str, entry: FileEntry) -> None:
        self.fh, self.rel, self.entry = fh, rel, entry
        self.sha256 = hashlib.sha256()

    def read(self, n: int = -1) -> bytes:
        block = self.fh.read(n)
        self.sha256.update(block)
        return block

    def check(self) -> None:
        if self.sha256.hexdigest() != self.entry.sha256:
            raise BundleError(f"{self.rel} has the wrong sha256 (corrupt or modified): not packed")


def _open_regular(root: Path, rel: str, entry: FileEntry):
    """`rel` opened for reading: a regular file of the listed size, no last link followed."""
    path = Path(os.path.realpath(root / rel))
    if Path(os.path.realpath(root)) not in path.parents:  # changed since refuse_outside_links
        raise BundleError(f"{root}: {rel} leads outside the bundle: refused")
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or st.st_size != entry.size:
        os.close(fd)
        what = "not a regular file" if not stat.S_ISREG(st.st_mode) else \
            f"{st.st_size} bytes, the manifest says {entry.size}"
        raise BundleError(f"{root}: {rel} is {what}")
    return os.fdopen(fd, "rb")


def _archive_contents(manifest: Manifest, prof: DeviceProfile, selection: Selection, models: dict,
                      needed: list[str], archive_name: str) -> tuple[dict[str, FileEntry], dict[str, bytes], bytes]:
    """The archive's files (bundle files + profile.json + README.md), the bytes of the two
    written here, and the rewritten manifest listing exactly those files."""
    extras = {PROFILE_FILE: (json.dumps(to_dict(prof), indent=2) + "\n").encode()}
    files = {rel: manifest.files[rel] for rel in needed if rel not in (PROFILE_FILE, README_FILE)}
    files[PROFILE_FILE] = FileEntry(len(extras[PROFILE_FILE]), hashlib.sha256(extras[PROFILE_FILE]).hexdigest())
    readme = _readme(manifest, prof, selection, files, archive_name).encode()
    extras[README_FILE] = readme
    files[README_FILE] = FileEntry(len(readme), hashlib.sha256(readme).hexdigest())
    note = (f"packed for profile {prof.name} ({selection.describe()}) by edge pack on "
            f"{datetime.now(timezone.utc).isoformat(timespec='seconds')}")
    packed = dataclasses.replace(
        manifest,
        format_version=FORMAT_VERSION,  # written with this runtime's schema (every field)
        models=models,
        files=dict(sorted(files.items())),
        provenance=dataclasses.replace(
            manifest.provenance,
            notes=f"{manifest.provenance.notes}; {note}" if manifest.provenance.notes else note,
        ),
    )
    return files, extras, (json.dumps(to_dict(packed), indent=2, ensure_ascii=False) + "\n").encode()


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
    prof = load_profile(profile) if isinstance(profile, str) else profile
    out = Path(out).resolve()
    if out.exists() and not overwrite:
        raise ConfigError(f"{out} already exists (use --force to replace it)")
    if out.is_dir():
        raise ConfigError(f"{out} is a directory; --out names the archive file to write")
    if not out.parent.is_dir():
        raise ConfigError(f"{out.parent}: no such directory")
    report(progress, "check source", 0.0)
    refuse_outside_links(Path(bundle), [MANIFEST_NAME])
    # sizes now; every packed file's sha256 while it is packed (one read, not two)
    src = open_bundle(bundle, verify="size")
    manifest = src.manifest
    selection = select(prof, manifest, backend=backend)
    models, needed = _needed_files(manifest, selection)
    refuse_outside_links(src.root, needed)

    files, extras, manifest_bytes = _archive_contents(manifest, prof, selection, models, needed, out.name)
    # the archive's folder name comes from the bundle's name: keep it to safe characters
    top = re.sub(r"[^A-Za-z0-9._-]+", "-", f"{manifest.name}-{prof.name}").strip(".-") or "bundle"
    epoch = os.environ.get("SOURCE_DATE_EPOCH", "")  # reproducible archives when set
    mtime = int(epoch) if epoch.isdigit() else int(time.time())
    tmp = out.parent / f".{out.name}.{os.getpid()}.tmp"
    try:
        _write_tar(tmp, src.root, top, mtime, manifest_bytes, files, extras,
                   _wants_gzip(out, compress), progress)
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    report(progress, "pack", 1.0)
    log.info("packed %s for %s into %s", manifest.name, prof.name, out)
    return PackResult(out, selection, {rel: e.size for rel, e in files.items()}, out.stat().st_size)


def _write_tar(path: Path, root: Path, top: str, mtime: int, manifest_bytes: bytes, files: dict[str, FileEntry],
               extras: dict[str, bytes], gzip_it: bool, progress: Progress | None) -> None:
    """The archive: `top/` then its manifest first (a device checks it before any model
    byte), then every file, each source file hashed while it is written."""
    total = sum(f.size for f in files.values()) or 1
    done = 0
    # level 6: nearly the size of 9 at a fraction of the time on multi-GB model files
    gz = {"compresslevel": 6} if gzip_it else {}
    with tarfile.open(path, "w:gz" if gz else "w", format=tarfile.PAX_FORMAT, **gz) as tar:
        tar.addfile(_tarinfo(top, 0, mtime, directory=True))
        tar.addfile(_tarinfo(f"{top}/{MANIFEST_NAME}", len(manifest_bytes), mtime), io.BytesIO(manifest_bytes))
        for rel in sorted(files):
            report(progress, f"pack {rel}", done / total)
            if rel in extras:
                data = extras[rel]
                tar.addfile(_tarinfo(f"{top}/{rel}", len(data), mtime), io.BytesIO(data))
            else:
                with _open_regular(root, rel, files[rel]) as fh:
                    reader = _HashingReader(fh, rel, files[rel])
                    tar.addfile(_tarinfo(f"{top}/{rel}", files[rel].size, mtime), reader)
                    reader.check()
            done += files[rel].size
    with open(path, "rb+") as fh:
        os.fsync(fh.fileno())
