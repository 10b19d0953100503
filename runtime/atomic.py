"""Writers that never leave something half-written that looks finished.

Files go to a temporary name beside the target, are fsynced and renamed over it.
Folders (bundles, checkpoints, datasets, converted models) are built in a hidden sibling
folder and renamed into place only when the build succeeded; an older folder is moved
aside first and deleted only after the new one is in place.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from runtime.errors import ConfigError


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write to a temporary file beside `path`, fsync, then rename over it."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
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
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"{p}: cannot create the output folder ({exc.strerror})") from None
    if not os.access(p, os.W_OK):
        raise ConfigError(f"{p}: the output folder is not writable")
    return p


def publish_dir(staging: str | os.PathLike[str], final: str | os.PathLike[str]) -> None:
    """Rename a finished folder into place; an existing `final` is removed only afterwards."""
    staging, final = Path(staging), Path(final)
    old = None
    if final.exists():
        old = final.parent / f".{final.name}.old-{os.getpid()}"
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
    os.replace(staging, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


@contextmanager
def staged_dir(final: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a hidden sibling folder (`.NAME.XXXX.partial`) to build `final` in.

    When the block finishes, the folder is renamed over `final`; when it raises (or is
    interrupted), the folder is deleted and `final` is left as it was.
    """
    final = Path(final)
    ensure_writable_dir(final.parent)
    staging = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".partial", dir=final.parent))
    try:
        yield staging
        publish_dir(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
