"""The one contract of every writer of a finished folder (runtime.atomic), checked the same way."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from runtime.errors import ConfigError


def check_replaces_only_its_own(write: Callable[[Path, bool], object], out: Path, marker: str,
                                written: str | None = None) -> None:
    """`write(out, overwrite)` refuses a non-empty `out` unless told to overwrite, and even
    then replaces only a folder it wrote (one holding `marker`), never a folder of other
    files; `written` (default: `marker`) is a file a finished write leaves there."""
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(ConfigError, match="not empty"):
        write(out, False)
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    with pytest.raises(ConfigError, match=f"has no {marker}"):
        write(out, True)
    assert [p.name for p in out.iterdir()] == ["keep.txt"] and (out / "keep.txt").read_text() == "mine"
    (out / "keep.txt").unlink()
    write(out, False)
    (out / "keep.txt").write_text("inside a finished folder: replaced with it")
    write(out, True)
    assert not (out / "keep.txt").exists() and (out / (written or marker)).is_file()
