"""What the pipeline knows about how fast its models run here (deadline mode's prior).

Per role, in order of trust: what this process measured; what an earlier process
measured for the same model on the same machine (`SpeedStore`, one JSON file under the
user's cache dir, written atomically); the prior the pipeline was given (a device
profile's numbers); a short probe of the model itself (`runtime.calibration`). Each
request's measurements replace the role's speed, and are remembered for the next process.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import time
from collections.abc import Mapping
from pathlib import Path

from runtime.atomic import atomic_write_text
from runtime.deadline import DEFAULT_PRIOR, Throughput
from runtime.generation import Generation

log = logging.getLogger(__name__)

MIN_MEASURED = 4  # fewer prompt or generated tokens than this say little about speed
STORE_VERSION = 1
MAX_ENTRIES = 256  # models x machines x thread counts: the oldest go first
RESAVE_CHANGE = 0.25  # rewrite a remembered speed when it moved by more than this share


def cache_dir() -> Path:
    """$XDG_CACHE_HOME/extract-think-edge, else ~/.cache/extract-think-edge."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "extract-think-edge"


def machine_id() -> str:
    """The machine speeds were measured on: host, architecture, CPU model and count."""
    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.lower().startswith(("model name", "hardware", "cpu model")):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{platform.node()}|{platform.machine()}|{cpu}|{os.cpu_count()}"


class SpeedStore:
    """Speeds per (machine, model) key, in one JSON file; unreadable content is ignored."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = Path(path) if path is not None else cache_dir() / "speeds.json"

    def _read(self) -> dict[str, dict]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            log.warning("ignoring the remembered speeds in %s (%s)", self.path, exc)
            return {}
        if not isinstance(data, dict) or data.get("version") != STORE_VERSION or not isinstance(data.get("speeds"), dict):
            return {}
        return data["speeds"]

    def get(self, key: str) -> Throughput | None:
        entry = self._read().get(key)
        try:
            return Throughput(float(entry["prefill_tps"]), float(entry["decode_tps"]), float(entry["vision_s"]))
        except (TypeError, KeyError, ValueError):  # absent, or not three positive numbers
            return None

    def put(self, speeds: Mapping[str, Throughput]) -> None:
        """Merge `speeds` into the file (a failure to write is logged, never raised)."""
        entries = self._read()
        now = time.time()
        for key, t in speeds.items():
            entries[key] = {"prefill_tps": t.prefill_tps, "decode_tps": t.decode_tps, "vision_s": t.vision_s,
                            "updated": now}
        if len(entries) > MAX_ENTRIES:
            newest = sorted(entries, key=lambda k: entries[k].get("updated", 0), reverse=True)[:MAX_ENTRIES]
            entries = {k: entries[k] for k in newest}
        try:
            atomic_write_text(self.path, json.dumps({"version": STORE_VERSION, "speeds": entries}, indent=1))
        except OSError as exc:
            log.warning("cannot remember speeds in %s (%s)", self.path, exc)


def _moved(a: Throughput, b: Throughput) -> bool:
    def far(x: float, y: float) -> bool:
        return abs(x - y) > RESAVE_CHANGE * max(abs(x), abs(y), 1e-9)

    return far(a.prefill_tps, b.prefill_tps) or far(a.decode_tps, b.decode_tps) or far(a.vision_s, b.vision_s)


class SpeedBook:
    """Per-role `Throughput`: measured, remembered, the prior, or a probe's estimate."""

    def __init__(self, prior: Mapping[str, Throughput] | None = None, *, store: SpeedStore | None = None,
                 keys: Mapping[str, str] | None = None) -> None:
        self._speed: dict[str, Throughput] = dict(prior or {})
        self._store = store
        self._keys = {role: f"{machine_id()}|{key}" for role, key in (keys or {}).items()}
        self._saved: dict[str, Throughput] = {}
        self._measured: set[str] = set()  # roles whose speed comes from a real stage
        if store is not None:
            for role, key in self._keys.items():
                remembered = store.get(key)
                if remembered is not None:
                    self._speed[role] = self._saved[role] = remembered

    def snapshot(self) -> dict[str, Throughput]:
        """The speeds to plan the next request with (roles never seen are absent)."""
        return dict(self._speed)

    def known(self, role: str) -> bool:
        return role in self._speed

    def estimate(self, role: str, speed: Throughput) -> None:
        """A probe's or the shapes' estimate, for a role with no better number."""
        if role not in self._speed:
            self._speed[role] = speed

    def remember(self, role: str, *, gen: Generation | None = None, vision_s: float | None = None) -> None:
        """Fold one stage's measurements into `role`'s speed."""
        old = self._speed.get(role) or DEFAULT_PRIOR.get(role) or DEFAULT_PRIOR["reasoner"]
        prefill, decode, vis = old.prefill_tps, old.decode_tps, old.vision_s
        if gen is not None:
            fed = gen.prompt_tokens - gen.reused_tokens
            if fed >= MIN_MEASURED and gen.prefill_s > 0:
                prefill = fed / gen.prefill_s
            if gen.generated >= MIN_MEASURED and gen.decode_s > 0:
                decode = gen.generated / gen.decode_s
        if vision_s is not None:
            vis = vision_s
        self._speed[role] = Throughput(prefill, decode, vis)
        self._measured.add(role)

    def update(self, speeds: Mapping[str, Throughput]) -> None:
        self._speed.update(speeds)

    def save(self) -> None:
        """Remember measured speeds that are new or moved (by more than `RESAVE_CHANGE`)."""
        if self._store is None:
            return
        changed = {}
        for role in self._measured & set(self._keys):
            now, before = self._speed[role], self._saved.get(role)
            if before is None or _moved(now, before):
                changed[role] = now
        if changed:
            self._store.put({self._keys[role]: t for role, t in changed.items()})
            self._saved.update(changed)
