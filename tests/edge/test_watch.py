"""`edge watch`: folder polling, camera/video frames, one JSON line per image, errors skipped."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edge.watch import FolderSource
from tests.edge.helpers import REPO, json_lines, one_error_line, run_edge, write_png
from tests.support.blocked_imports import run_without


def _watch_args(bundle: Path, *extra: str) -> list[str]:
    return ["watch", *extra, "--question", "What colour is the square?", "--bundle", str(bundle),
            "--thinking-budget", "4"]


def test_once_answers_each_image_and_logs_unreadable_files(edge_bundle_dir, tmp_path):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    write_png(inbox / "a.png", seed=3)
    (inbox / "b.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated jpeg")
    write_png(tmp_path / "c.png", seed=4).rename(inbox / "c.png.partial")  # being written: skipped
    write_png(tmp_path / "d.png", seed=4).rename(inbox / ".d.png")  # hidden: skipped
    proc = run_edge(*_watch_args(edge_bundle_dir, str(inbox), "--once"))
    assert proc.returncode == 1, proc.stderr  # one image failed
    lines = json_lines(proc.stdout)
    assert [Path(r["source"]).name for r in lines] == ["a.png", "b.jpg"]
    good, bad = lines
    assert good["ok"] and good["error"] is None and good["answer"] is not None
    assert set(good["stages"]) >= {"extraction", "thinking", "answer"} and good["time"].endswith("+00:00")
    assert good["stages"]["thinking"]["tokens"] <= 4
    assert not bad["ok"] and "b.jpg" in bad["error"] and bad["question"] == "What colour is the square?"
    assert "1 answered, 1 failed" in proc.stderr


def test_loop_picks_up_new_files_only_and_keeps_running(edge_bundle_dir, tmp_path):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    write_png(inbox / "old.png", seed=5)  # there before the start: not answered
    log = tmp_path / "answers.jsonl"
    proc = subprocess.Popen(
        [sys.executable, "-m", "edge", *_watch_args(edge_bundle_dir, str(inbox), "--interval", "0.2",
                                                    "--max-images", "3", "--log", str(log))],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    try:
        banner = proc.stderr.readline()
        assert "edge watch:" in banner and "answers to" in banner, banner
        (inbox / "notes.txt").write_text("not an image")
        # written under a temporary name, then renamed into the folder: the usual way
        tmp = write_png(tmp_path / "new.png", seed=6).rename(inbox / "new.png.tmp")
        time.sleep(0.5)
        tmp.rename(inbox / "new.png")
        time.sleep(1.0)
        write_png(inbox / "later.png", seed=7)  # after an error, the loop still answers
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert out == ""  # with --log nothing goes to stdout
    records = json_lines(log.read_text())
    by_name = {Path(r["source"]).name: r for r in records}
    assert set(by_name) == {"notes.txt", "new.png", "later.png"}
    assert not by_name["notes.txt"]["ok"] and "not a readable image" in by_name["notes.txt"]["error"]
    assert by_name["new.png"]["ok"] and by_name["later.png"]["ok"]


def test_sigterm_stops_the_loop_cleanly(edge_bundle_dir, tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "edge", *_watch_args(edge_bundle_dir, str(tmp_path))],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    try:
        assert "edge watch:" in proc.stderr.readline()
        proc.terminate()
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0 and "stopped" in err


def test_folder_source_waits_for_files_to_settle(tmp_path):
    """A file is taken once it holds still between two polls; a rewritten file is taken again."""
    target = tmp_path / "a.png"
    between_polls = iter([
        lambda: target.write_bytes(b"12"),  # 1: appears
        lambda: target.write_bytes(b"1234"),  # 2: still growing
        lambda: None,  # 3: unchanged from here on, so the next poll takes it
        lambda: None,  # 4
        lambda: os.utime(target, ns=(1, 10**18)),  # 5: rewritten in place
        lambda: None,  # 6
    ])
    sleeps = []

    def fake_sleep(seconds: float) -> None:
        sleeps.append(seconds)
        next(between_polls)()

    source = iter(FolderSource(tmp_path, interval=0.5, sleep=fake_sleep))
    first = next(source)
    after_first = len(sleeps)
    second = next(source)
    assert first.source == second.source == str(target)
    assert (after_first, len(sleeps)) == (3, 6)
    assert set(sleeps) == {0.5}


def test_camera_needs_opencv_clear_error(edge_bundle_dir, tmp_path):
    code = f"import sys; from edge.cli import main; sys.exit(main({_watch_args(edge_bundle_dir, '--camera', '0')!r}))"
    proc = run_without(("cv2",), code, timeout=120, cwd=REPO)
    assert proc.returncode == 7
    line = one_error_line(proc)
    assert "--camera needs opencv-python-headless" in line and "pip install -e '.[camera]'" in line


def test_bad_arguments_fail_before_loading(edge_bundle_dir, tmp_path):
    proc = run_edge(*_watch_args(edge_bundle_dir, str(tmp_path / "missing")))
    assert proc.returncode == 2 and "not a directory to watch" in one_error_line(proc)
    proc = run_edge(*_watch_args(edge_bundle_dir))
    assert proc.returncode == 2 and "give a folder to watch or --camera" in one_error_line(proc)


def test_video_file_through_opencv(edge_bundle_dir, tmp_path):
    cv2 = pytest.importorskip("cv2", reason="OpenCV not installed (pip install opencv-python-headless)")
    import numpy as np

    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (64, 48))
    for i in range(3):
        writer.write(np.full((48, 64, 3), (40 * i, 100, 200), dtype=np.uint8))
    writer.release()
    proc = run_edge(*_watch_args(edge_bundle_dir, "--camera", str(video), "--interval", "0.1"))
    assert proc.returncode == 0, proc.stderr
    lines = json_lines(proc.stdout)
    assert [r["frame"] for r in lines] == [0, 1, 2]
    assert all(r["ok"] and r["source"] == f"camera:{video}" for r in lines)
    bad = run_edge(*_watch_args(edge_bundle_dir, "--camera", str(tmp_path / "nope.avi")))
    assert bad.returncode == 1 and "cannot open camera" in one_error_line(bad)


def test_help_lists_the_deploy_commands():
    proc = run_edge("--help")
    for cmd in ("doctor", "pack", "unpack", "demo", "watch"):
        assert cmd in proc.stdout
