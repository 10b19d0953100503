"""The reasoner's prompt-start states on disk, so a new process skips their prefill.

The prefix cache (`runtime.prefix_cache`) keeps, beside image prefixes, the reasoner's KV
state after the fixed start of its prompts (the user header and the role or instruction
line). In memory those help only the second request of a process; `edge run` starts a
new process per question, and so does every benchmark repetition. With a prompt cache
folder (`ExtractThink.load(prompt_cache=DIR)`, `--prompt-cache DIR`) these text states
are also written there, one file each, and a later process restores them instead of
prefilling: llama.cpp's `--prompt-cache` idea, for the pipeline's own fixed starts. At
paper scale (Qwen3-1.7B, 2 threads) that is 47 + 32 positions, about 0.7 s per request
(hint prefill 0.81 -> 0.38 s, reasoning 1.86 -> ~1.6 s), in files of 5.1 + 3.5 MiB with an
F16 KV cache (2.7 + 1.9 MiB with q8_0).

Only text starts go to disk (an image prefix is per image and large). A file is
`<sha256 of the key>.npz`, read with `allow_pickle=False`: the state's arrays and one
JSON record (format, the full key, owner, positions, sizes, SHA-256 of the arrays). A file
whose record does not match what is asked for, or whose arrays do not hash to the
record's, is removed and treated as absent. The folder is bounded by bytes, the least
recently used files go first. It holds native KV blobs that llama.cpp parses: keep it
where only you write, like the bundle.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import json
import logging
import os
import time
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from runtime.atomic import atomic_write_bytes
from runtime.backends.base import PrefixState

log = logging.getLogger(__name__)

STORE_FORMAT = 1
DEFAULT_MAX_BYTES = 64 << 20  # dozens of starts of a 1.7B model; a state is a few MiB


def key_record(key: Any) -> dict[str, Any]:
    """A `PrefixKey` as plain JSON values (the token ids as a list; None: an image position)."""
    return {**dataclasses.asdict(key), "prefix": list(key.prefix)}


def _digest(record: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()


def _arrays_sha256(arrays: list[np.ndarray]) -> str:
    h = hashlib.sha256()
    for a in arrays:
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(np.ascontiguousarray(a).data)
    return h.hexdigest()


class PromptStore:
    """Prefix states by key in a folder (module docstring); failures to read or write are
    logged and treated as a miss, never raised: the cache only saves time."""

    def __init__(self, folder: str | os.PathLike[str], max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        if max_bytes < 0:
            raise ValueError("max_bytes must be >= 0")
        self.folder = Path(folder)
        self.max_bytes = max_bytes

    def _path(self, record: dict[str, Any]) -> Path:
        return self.folder / f"{_digest(record)}.npz"

    def get(self, key: Any) -> PrefixState | None:
        record = key_record(key)
        path = self._path(record)
        try:
            with np.load(path, allow_pickle=False) as npz:
                files = {name: npz[name] for name in npz.files}
        except FileNotFoundError:
            return None
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
            self._discard(path, f"unreadable ({exc})")
            return None
        state = self._state(files, record)
        if state is None:
            self._discard(path, "its record does not match its content or key")
            return None
        now = time.time_ns()  # not the kernel's coarse clock: two uses a millisecond apart stay ordered
        with contextlib.suppress(OSError):
            os.utime(path, ns=(now, now))  # least recently used goes first
        return state

    @staticmethod
    def _state(files: dict[str, np.ndarray], record: dict[str, Any]) -> PrefixState | None:
        try:
            meta = json.loads(files.pop("meta").tobytes().decode("utf-8"))
            arrays = [files[f"a{i}"] for i in range(int(meta["arrays"]))]
            ok = (meta["format"] == STORE_FORMAT and meta["key"] == record and len(files) == len(arrays)
                  and meta["nbytes"] == sum(a.nbytes for a in arrays) and meta["sha256"] == _arrays_sha256(arrays)
                  and meta["kind"] in ("blob", "arrays") and int(meta["n_past"]) > 0
                  and (meta["kind"] == "arrays" or (len(arrays) == 1 and arrays[0].dtype == np.uint8)))
        except (KeyError, TypeError, ValueError, UnicodeDecodeError):
            return None
        if not ok:
            return None
        for a in arrays:
            a.setflags(write=False)
        data: Any = arrays[0] if meta["kind"] == "blob" else tuple(arrays)
        return PrefixState(n_past=int(meta["n_past"]), nbytes=int(meta["nbytes"]), owner=str(meta["owner"]),
                           data=data)

    def put(self, key: Any, state: PrefixState) -> None:
        if state.nbytes > self.max_bytes:
            return
        record = key_record(key)
        path = self._path(record)
        if path.is_file():
            return
        blob = isinstance(state.data, np.ndarray)
        arrays = [state.data] if blob else list(state.data)
        meta = {"format": STORE_FORMAT, "key": record, "owner": state.owner, "n_past": state.n_past,
                "nbytes": sum(a.nbytes for a in arrays), "arrays": len(arrays), "kind": "blob" if blob else "arrays",
                "sha256": _arrays_sha256(arrays)}
        buf = io.BytesIO()
        np.savez(buf, meta=np.frombuffer(json.dumps(meta).encode("utf-8"), dtype=np.uint8),
                 **{f"a{i}": a for i, a in enumerate(arrays)})
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(path, buf.getvalue())
        except OSError as exc:
            log.warning("cannot keep a prompt state in %s (%s)", self.folder, exc)
            return
        self._evict()

    def drop(self, key: Any) -> None:
        """Forget `key` (a state that could not be restored)."""
        self._path(key_record(key)).unlink(missing_ok=True)

    def _discard(self, path: Path, why: str) -> None:
        log.warning("ignoring the prompt state %s: %s", path, why)
        with contextlib.suppress(OSError):
            path.unlink(missing_ok=True)

    def _evict(self) -> None:
        try:
            files = [(st.st_mtime_ns, st.st_size, p) for p in self.folder.glob("*.npz") for st in (p.stat(),)]
        except OSError:
            return
        total = sum(size for _, size, _ in files)
        for _, size, path in sorted(files, key=lambda f: f[0]):
            if total <= self.max_bytes:
                break
            path.unlink(missing_ok=True)
            total -= size
