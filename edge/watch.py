"""The headless loop for kiosks and robots: new image in, one JSON line out.

Sources: a folder polled for new or changed files (no extra dependencies; a file is taken
once its size and modification time hold still between two polls, so a half-written
photo is not read), or a camera / video stream through OpenCV when it is installed.
Each image gets the same question; each answer (or error) is one JSON line. A file that
is not a readable image is logged as an error line and skipped; the loop keeps running.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TextIO

from edge.extras import require
from runtime.errors import ConfigError, EdgeError
from runtime.image import load_image

log = logging.getLogger(__name__)

# names that are still being written or belong to editors/sync tools
_SKIP_SUFFIXES = (".tmp", ".part", ".partial", ".crdownload", ".swp", ".lock")
MAX_CAMERA_FAILURES = 10


@dataclass(frozen=True)
class Item:
    source: str  # file path, or "camera:<device>"
    image: Any  # a path, or an RGB numpy array
    frame: int | None = None


class FolderSource:
    """Yield files that appear (or change) in `folder`, polling every `interval` seconds."""

    def __init__(self, folder: str | os.PathLike[str], *, interval: float = 1.0,
                 include_existing: bool = False, once: bool = False,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise ConfigError(f"{self.folder}: not a directory to watch")
        if interval <= 0:
            raise ConfigError(f"--interval must be positive, got {interval}")
        self.interval = interval
        self.once = once
        self._sleep = sleep
        self._done: dict[str, tuple[int, int]] = {}  # name -> (size, mtime_ns) already handled
        self._last: dict[str, tuple[int, int]] = {}  # name -> signature seen at the last poll
        if not include_existing and not once:
            self._done = self._scan()

    def _scan(self) -> dict[str, tuple[int, int]]:
        found = {}
        try:
            entries = list(os.scandir(self.folder))
        except OSError as exc:
            log.warning("cannot list %s: %s", self.folder, exc)
            return {}
        for entry in entries:
            name = entry.name
            if name.startswith((".", "~")) or name.endswith(_SKIP_SUFFIXES):
                continue
            try:
                if not entry.is_file(follow_symlinks=True):
                    continue
                st = entry.stat(follow_symlinks=True)
            except OSError:
                continue  # vanished between listing and stat
            found[name] = (st.st_size, st.st_mtime_ns)
        return found

    def __iter__(self) -> Iterator[Item]:
        if self.once:
            for name in sorted(self._scan()):
                yield Item(str(self.folder / name), self.folder / name)
            return
        while True:
            now = self._scan()
            for name in sorted(now):
                sig = now[name]
                if self._done.get(name) == sig:
                    continue
                if self._last.get(name) == sig:  # unchanged since the last poll: complete
                    self._done[name] = sig
                    yield Item(str(self.folder / name), self.folder / name)
            # forget files that were removed, so the bookkeeping stays as small as the folder
            self._done = {k: v for k, v in self._done.items() if k in now}
            self._last = now
            self._sleep(self.interval)


class CameraSource:
    """Frames from an OpenCV capture device (index) or a video file / stream URL."""

    def __init__(self, device: str, *, interval: float = 1.0,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        require("camera", "--camera")
        import cv2  # OpenCV is an optional extra, loaded only for a camera

        self._cv2 = cv2
        self.device = device
        self.interval = interval
        self._sleep = sleep
        target: int | str = int(device) if device.isdigit() else device
        self._cap = cv2.VideoCapture(target)
        if not self._cap.isOpened():
            raise EdgeError(f"cannot open camera {device!r} (no such device, or in use)")
        # a device index is a live camera; anything else (a file) ends
        self._live = isinstance(target, int)

    def __iter__(self) -> Iterator[Item]:
        frame_no = 0
        failures = 0
        try:
            while True:
                ok, frame = self._cap.read()
                if not ok or frame is None:
                    if not self._live:
                        return  # end of the video
                    failures += 1
                    if failures >= MAX_CAMERA_FAILURES:
                        raise EdgeError(f"camera {self.device!r} stopped delivering frames")
                    self._sleep(self.interval)
                    continue
                failures = 0
                rgb = self._cv2.cvtColor(frame, self._cv2.COLOR_BGR2RGB)
                yield Item(f"camera:{self.device}", rgb, frame_no)
                frame_no += 1
                if self._live:
                    self._sleep(self.interval)
                else:
                    # a file: skip ahead by `interval` seconds of video
                    fps = self._cap.get(self._cv2.CAP_PROP_FPS) or 1.0
                    for _ in range(max(0, int(round(fps * self.interval)) - 1)):
                        if not self._cap.grab():
                            return
        finally:
            self._cap.release()


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def answer_one(pipeline: Any, item: Item, question: str, options: list[str] | None,
               kwargs: dict[str, Any], max_pixels: int | None = None) -> dict[str, Any]:
    """One JSON-ready record for `item`: the result, or the error that stopped it."""
    record: dict[str, Any] = {"time": _now(), "source": item.source}
    if item.frame is not None:
        record["frame"] = item.frame
    try:
        image = load_image(item.image, **({"max_pixels": max_pixels} if max_pixels else {}))
        result = pipeline.answer(image, question, options, **kwargs)
    except EdgeError as exc:
        record.update(ok=False, error=str(exc), question=question)
        return record
    except Exception as exc:  # a bug; a kiosk loop must outlive it, the log keeps the traceback
        log.exception("answering %s failed", item.source)
        record.update(ok=False, error=f"internal error: {type(exc).__name__}: {exc}", question=question)
        return record
    record.update(ok=True, error=None, **result.to_dict())
    return record


def run_loop(pipeline: Any, source: Any, question: str, out: TextIO, *,
             options: list[str] | None = None, kwargs: dict[str, Any] | None = None,
             max_images: int | None = None, max_pixels: int | None = None) -> tuple[int, int]:
    """Answer `question` for every item of `source`; returns (answered, failed)."""
    answered = failed = 0
    for item in source:
        record = answer_one(pipeline, item, question, options, kwargs or {}, max_pixels)
        out.write(json.dumps(record, ensure_ascii=False) + "\n")
        out.flush()
        if record["ok"]:
            answered += 1
            log.info("%s: %s (%.2f s)", item.source, record.get("answer"), record.get("seconds", 0.0))
        else:
            failed += 1
            log.warning("%s", record["error"])
        if max_images is not None and answered + failed >= max_images:
            break
    return answered, failed
