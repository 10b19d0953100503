"""Writers that never leave something half-written that looks finished.

Files go to a temporary name beside the target, are fsynced and renamed over it.
Folders (bundles, checkpoints, datasets, converted models) are built in a hidden sibling
folder `.NAME.TOKEN.partial` and renamed into place only when the build succeeded; an
older folder is moved aside first and deleted only after the new one is in place.

Three rules every folder writer gets from `staged_dir` / `publish_dir`:
- Replacing: an existing target is replaced only when it is an empty folder or a folder
  holding the writer's `marker` file (a bundle's manifest.json, a dataset's dataset.json):
  `--force` never wipes a folder of other files (`check_replaceable`).
- Leftovers: each build holds an exclusive lock (flock) on `.NAME.TOKEN.lock` for as long
  as it runs; the kernel drops it when the process dies, even by SIGKILL. The next write
  into the same parent removes the `.partial` folders whose lock nobody holds (and puts a
  moved-aside `.old` folder back if the new one never arrived), never a live build's.
- Modes: published files are 0644 and folders 0755 (executables 0755), less the process
  umask: a bundle written by one user can be read by a service user, and a user who asked
  for private files (umask 077) gets 0600/0700. Temporary files start 0600 (mkstemp) and
  are set to that mode before the rename.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import secrets
import shutil
import stat
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from runtime.errors import ConfigError
from runtime.procfs import status_field

try:  # POSIX; elsewhere builds still work, stale folders are just not cleaned
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

FILE_MODE = 0o644
EXEC_MODE = 0o755
DIR_MODE = 0o755
PARTIAL_SUFFIX = ".partial"
OLD_SUFFIX = ".old"
LOCK_SUFFIX = ".lock"
# Folders left by versions without lock files (tempfile.mkdtemp names): removed only when
# this old, since their owner cannot be asked.
LEGACY_PARTIAL_AGE_S = 24 * 3600
_LEGACY_PARTIAL = re.compile(r"^\..+\.[a-z0-9_]{8}\.partial$")
_TOKEN_BYTES = 6  # 12 hex digits
_OUR_LOCK = re.compile(rf"^\..+\.[0-9a-f]{{{2 * _TOKEN_BYTES}}}\.lock$")  # never anyone else's


def current_umask() -> int:
    """The process umask, read without changing it where the OS allows (Linux >= 4.7)."""
    umask = status_field("Umask")
    if umask is not None:
        with contextlib.suppress(ValueError):
            return int(umask, 8)
    mask = os.umask(0o022)  # elsewhere: set and restore (not thread-safe, but brief)
    os.umask(mask)
    return mask


def published_mode(current: int, *, is_dir: bool) -> int:
    """The mode a published file or folder gets (see the module docstring)."""
    base = DIR_MODE if is_dir else EXEC_MODE if current & stat.S_IXUSR else FILE_MODE
    return base & ~current_umask()


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write to a temporary file beside `path`, fsync, then rename over it.

    A replaced file keeps its mode; a new one gets 0644 less the umask.
    """
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    try:
        mode = stat.S_IMODE(p.stat().st_mode)
    except OSError:
        mode = published_mode(0, is_dir=False)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            if hasattr(os, "fchmod"):  # POSIX; Windows has no such modes
                os.fchmod(fh.fileno(), mode)
            os.fsync(fh.fileno())
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def ensure_writable_dir(path: str | os.PathLike[str]) -> Path:
    """Create `path` if needed; a ConfigError naming it when it cannot be created or written."""
    p = Path(path)
    if os.path.lexists(p) and not p.is_dir():
        raise ConfigError(f"{p}: cannot create the output folder (a file of that name is in the way)")
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"{p}: cannot create the output folder ({exc.strerror})") from None
    if not os.access(p, os.W_OK):
        raise ConfigError(f"{p}: the output folder is not writable")
    return p


def is_empty_dir(path: str | os.PathLike[str]) -> bool:
    p = Path(path)
    if p.is_symlink() or not p.is_dir():
        return False
    with os.scandir(p) as it:
        return next(it, None) is None


def check_replaceable(final: str | os.PathLike[str], *, marker: str | None = None) -> None:
    """Refuse (ConfigError naming the folder) to replace anything but nothing, an empty
    folder, or a folder holding `marker` (the file that says it is what the writer makes)."""
    final = Path(final)
    if not os.path.lexists(final):
        return
    if final.is_symlink() or not final.is_dir():
        raise ConfigError(f"{final} exists and is not a folder: refusing to replace it")
    if is_empty_dir(final):
        return
    if marker is not None and (final / marker).is_file():
        return
    what = f"has no {marker}" if marker is not None else "is not empty"
    raise ConfigError(f"{final} {what}: refusing to replace a folder that this command did not "
                      "write (remove it yourself or choose another path)")


def _publish_modes(root: Path) -> None:
    for dirpath, dirnames, filenames in os.walk(root):
        for name in filenames + dirnames:
            p = Path(dirpath) / name
            st = p.lstat()
            if not stat.S_ISLNK(st.st_mode):
                os.chmod(p, published_mode(st.st_mode, is_dir=stat.S_ISDIR(st.st_mode)))
    os.chmod(root, published_mode(0, is_dir=True))


def publish_dir(staging: str | os.PathLike[str], final: str | os.PathLike[str], *,
                marker: str | None = None, aside: str | os.PathLike[str] | None = None) -> None:
    """Rename a finished folder into place (modes set, see above); an existing `final`
    (only one `check_replaceable` allows) is moved to `aside` and removed afterwards."""
    staging, final = Path(staging), Path(final)
    check_replaceable(final, marker=marker)
    _publish_modes(staging)
    old = None
    if os.path.lexists(final):
        old = Path(aside) if aside is not None else final.parent / f".{final.name}.{os.getpid()}{OLD_SUFFIX}"
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
    os.replace(staging, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _lock(fd: int, *, block: bool) -> bool:
    if fcntl is None:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if block else fcntl.LOCK_NB))
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return False
        raise
    return True


@contextmanager
def _owned_name(final: Path) -> Iterator[str]:
    """A fresh `.NAME.TOKEN` stem beside `final`, its `.lock` file held while the block runs."""
    while True:
        stem = f".{final.name}.{secrets.token_hex(_TOKEN_BYTES)}"
        lock = final.parent / (stem + LOCK_SUFFIX)
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            continue  # (any other OSError names the path; the CLI prints it as one line)
        _lock(fd, block=True)
        # A sweeper may have taken the brand-new, not yet locked file for a dead one and
        # removed it: then start again under another name.
        if os.path.exists(lock) and os.path.samestat(os.stat(lock), os.fstat(fd)):
            break
        os.close(fd)
    try:
        yield stem
    finally:
        with contextlib.suppress(OSError):
            lock.unlink()
        os.close(fd)


def clean_stale(parent: str | os.PathLike[str]) -> list[Path]:
    """Remove what dead builds left in `parent`; returns the folders removed or restored.

    A build is dead when nobody holds its lock file. Its `.partial` folder is removed; its
    `.old` folder (the previous version, moved aside) is put back when the new one never
    arrived, else removed. Live builds, whoever runs them, are never touched.
    """
    parent = Path(parent)
    if fcntl is None or not parent.is_dir():
        return []
    done: list[Path] = []
    for lock in parent.glob(f".*{LOCK_SUFFIX}"):
        if not _OUR_LOCK.match(lock.name):
            continue
        stem = lock.name[: -len(LOCK_SUFFIX)]
        partial, old = parent / (stem + PARTIAL_SUFFIX), parent / (stem + OLD_SUFFIX)
        try:
            fd = os.open(lock, os.O_RDWR)
        except OSError:
            continue  # gone meanwhile (its build finished), or not ours to open
        try:
            if not _lock(fd, block=False):
                continue  # a live build
            if partial.is_dir():
                shutil.rmtree(partial, ignore_errors=True)
                done.append(partial)
            if old.is_dir():
                final = parent / stem[1:].rsplit(".", 1)[0]
                if os.path.lexists(final):
                    shutil.rmtree(old, ignore_errors=True)
                else:
                    os.replace(old, final)
                done.append(old)
            with contextlib.suppress(OSError):
                lock.unlink()
        finally:
            os.close(fd)
    now = time.time()
    for p in parent.glob(f".*{PARTIAL_SUFFIX}"):
        lockless = not (parent / (p.name[: -len(PARTIAL_SUFFIX)] + LOCK_SUFFIX)).exists()
        if lockless and _LEGACY_PARTIAL.match(p.name) and p.is_dir() and not p.is_symlink() \
                and now - p.stat().st_mtime > LEGACY_PARTIAL_AGE_S:
            shutil.rmtree(p, ignore_errors=True)
            done.append(p)
    return done


@contextmanager
def staged_dir(final: str | os.PathLike[str], *, marker: str | None = None) -> Iterator[Path]:
    """Yield a hidden sibling folder (`.NAME.TOKEN.partial`) to build `final` in.

    `final` must be absent, an empty folder or a folder holding `marker` (checked before
    the work and again before the rename). When the block finishes, the folder is renamed
    over `final`; when it raises (or is interrupted), the folder is deleted and `final` is
    left as it was. Leftovers of dead builds in the same parent are removed first.
    """
    final = Path(final)
    ensure_writable_dir(final.parent)
    check_replaceable(final, marker=marker)
    with _owned_name(final) as stem:
        clean_stale(final.parent)
        staging = final.parent / (stem + PARTIAL_SUFFIX)
        staging.mkdir(mode=0o700)
        try:
            yield staging
            publish_dir(staging, final, marker=marker, aside=final.parent / (stem + OLD_SUFFIX))
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
