"""runtime.atomic: what a folder writer may replace, what a killed one leaves, file modes."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from runtime.atomic import (
    atomic_write_bytes,
    check_replaceable,
    clean_stale,
    published_mode,
    staged_dir,
)
from runtime.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


def _build(final: Path, marker: str | None = "manifest.json", text: str = "new") -> None:
    with staged_dir(final, marker=marker) as tmp:
        (tmp / "manifest.json").write_text(text)


def _hidden(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith("."))


def test_replaces_only_nothing_an_empty_folder_or_a_marked_folder(tmp_path):
    user = tmp_path / "user"
    user.mkdir()
    (user / "thesis.tex").write_text("mine")
    with pytest.raises(ConfigError, match=f"{user} has no manifest.json: refusing to replace"):
        _build(user)
    assert (user / "thesis.tex").read_text() == "mine" and _hidden(tmp_path) == []
    with pytest.raises(ConfigError, match="is not empty: refusing"):
        _build(user, marker=None)  # no marker: only an empty folder may go
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="exists and is not a folder"):
        _build(tmp_path / "file")
    (tmp_path / "link").symlink_to(user)
    with pytest.raises(ConfigError, match="exists and is not a folder"):
        _build(tmp_path / "link")
    assert (user / "thesis.tex").read_text() == "mine"

    for name in ("new", "empty", "bundle"):
        target = tmp_path / name
        if name == "empty":
            target.mkdir()
        if name == "bundle":
            _build(target, text="old")
            (target / "extra.bin").write_text("old file")
        _build(target)
        assert (target / "manifest.json").read_text() == "new" and not (target / "extra.bin").exists()
    assert _hidden(tmp_path) == []


def test_the_rule_is_checked_again_at_publish(tmp_path):
    """A folder that became foreign during a long build is still not replaced."""
    final = tmp_path / "b"
    with pytest.raises(ConfigError, match="has no manifest.json"), \
            staged_dir(final, marker="manifest.json") as tmp:
        (tmp / "manifest.json").write_text("new")
        final.mkdir()
        (final / "notes.txt").write_text("written meanwhile")
    assert (final / "notes.txt").read_text() == "written meanwhile" and _hidden(tmp_path) == []
    check_replaceable(tmp_path / "absent", marker="manifest.json")  # nothing there: fine


CHILD = textwrap.dedent("""
    import os, signal, sys, time
    from pathlib import Path
    import runtime.atomic as atomic
    final, mode = Path(sys.argv[1]), sys.argv[2]
    if mode == "kill-between-renames":
        real = os.replace
        def replace(src, dst):
            if str(src).endswith(".partial"):  # the old folder went aside; die before the new one lands
                os.kill(os.getpid(), signal.SIGKILL)
            return real(src, dst)
        atomic.os.replace = replace
    with atomic.staged_dir(final, marker="manifest.json") as tmp:
        (tmp / "manifest.json").write_text("child")
        if mode == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        if mode == "wait":
            print("building", flush=True)
            sys.stdin.readline()
""")


def _child(final: Path, mode: str, **kw) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-c", CHILD, str(final), mode], env=env, cwd=ROOT,
                            text=True, **kw)


def test_a_killed_build_is_cleaned_by_the_next_write_to_that_parent(tmp_path):
    proc = _child(tmp_path / "a", "kill")
    assert proc.wait(timeout=60) == -signal.SIGKILL
    left = _hidden(tmp_path)
    assert any(n.startswith(".a.") and n.endswith(".partial") for n in left), left
    (tmp_path / ".notes.lock").write_text("someone else's")  # not ours: never touched
    (tmp_path / ".notes.old").mkdir()
    _build(tmp_path / "b")  # another bundle, same parent
    assert _hidden(tmp_path) == [".notes.lock", ".notes.old"] and not (tmp_path / "a").exists()


def test_a_live_build_is_never_cleaned(tmp_path):
    proc = _child(tmp_path / "a", "wait", stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert proc.stdout.readline().strip() == "building"
        live = _hidden(tmp_path)
        _build(tmp_path / "b")
        assert clean_stale(tmp_path) == []
        assert _hidden(tmp_path) == live  # its .partial and .lock are still there
        proc.stdin.write("go\n")
        proc.stdin.flush()
        assert proc.wait(timeout=60) == 0
    finally:
        proc.kill()
    assert (tmp_path / "a" / "manifest.json").read_text() == "child" and _hidden(tmp_path) == []


def test_a_replace_killed_between_the_renames_gets_the_old_folder_back(tmp_path):
    final = tmp_path / "a"
    _build(final, text="old")
    proc = _child(final, "kill-between-renames")
    assert proc.wait(timeout=60) == -signal.SIGKILL
    assert not final.exists()  # moved aside, the new one never arrived
    assert len(clean_stale(tmp_path)) == 2  # the .partial removed, the .old put back
    assert (final / "manifest.json").read_text() == "old" and _hidden(tmp_path) == []


@pytest.mark.parametrize(("umask", "file_mode", "dir_mode"), [(0o022, 0o644, 0o755), (0o077, 0o600, 0o700)])
def test_published_modes_follow_0644_0755_less_the_umask(tmp_path, umask, file_mode, dir_mode):
    import tempfile

    old = os.umask(umask)
    try:
        final = tmp_path / "b"
        with staged_dir(final) as tmp:
            fd, _ = tempfile.mkstemp(dir=tmp)  # 0600, as the exporters' temporary files are
            os.close(fd)
            sub = Path(tempfile.mkdtemp(dir=tmp))  # 0700
            (sub / "tool.sh").write_text("#!/bin/sh\n")
            os.chmod(sub / "tool.sh", 0o700)
        atomic_write_bytes(final / "manifest.json", b"{}")
        modes = {p.relative_to(final).as_posix(): stat.S_IMODE(p.stat().st_mode) for p in final.rglob("*")}
        assert stat.S_IMODE(final.stat().st_mode) == dir_mode
        for rel, mode in modes.items():
            want = dir_mode if (final / rel).is_dir() else (
                dir_mode if rel.endswith("tool.sh") else file_mode)
            assert mode == want, (rel, oct(mode), oct(want))
        assert published_mode(0, is_dir=False) == file_mode
    finally:
        os.umask(old)


def test_atomic_write_keeps_the_mode_of_the_file_it_replaces(tmp_path):
    p = tmp_path / "secret.json"
    atomic_write_bytes(p, b"1")
    os.chmod(p, 0o600)
    atomic_write_bytes(p, b"2")
    assert p.read_bytes() == b"2" and stat.S_IMODE(p.stat().st_mode) == 0o600
    assert _hidden(tmp_path) == []


def test_a_file_in_the_way_is_a_clear_error_even_for_root(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="cannot create the output folder .a file of that name is in the way"):
        _build(tmp_path / "file" / "b")
