"""The kernel's memory limits on this process: RLIMIT_AS and its own cgroup's limit.

Read, not guessed: `resource.getrlimit(RLIMIT_AS)` with the address space mapped now, and
the cgroup named in /proc/self/cgroup, found through /proc/self/mountinfo (cgroup v2
`memory.max` at every level up the tree, since a parent's limit binds its children; v1
`memory.limit_in_bytes` and `hierarchical_memory_limit`), with the cgroup's working set
(usage minus the inactive page cache the kernel reclaims first). The memory planner
(`runtime.memory`) turns these into what the models may use.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import psutil

try:
    import resource
except ImportError:  # Windows has no rlimits
    resource = None  # type: ignore[assignment]

CGROUP_UNLIMITED = 1 << 60  # cgroup v1 reports "no limit" as ~2^63 rounded to a page


@dataclass(frozen=True)
class ProcessLimit:
    kind: Literal["rlimit", "cgroup"]
    limit_bytes: int
    used_bytes: int  # what counts against it now: mapped address space, or the cgroup's working set
    where: str  # "RLIMIT_AS (ulimit -v)" or the cgroup file that sets the limit


def address_space_limit() -> ProcessLimit | None:
    """RLIMIT_AS (`ulimit -v`), if set, with the address space this process maps now."""
    if resource is None:
        return None
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft == resource.RLIM_INFINITY or soft <= 0:
        return None
    return ProcessLimit("rlimit", int(soft), int(psutil.Process().memory_info().vms), "RLIMIT_AS (ulimit -v)")


def cgroup_memory_limit(root: Path = Path("/")) -> ProcessLimit | None:
    """The tightest memory limit on this process's own cgroup; `root` is "/" except in tests."""
    text = _read_small(root / "proc/self/cgroup")
    if text is None:
        return None
    mounts = _cgroup_mounts(root)
    found = []
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        hier, controllers, path = parts
        if hier == "0" and controllers == "" and "v2" in mounts:
            found.append(_cgroup_v2(root, _cgroup_dir(root, mounts["v2"], path), mounts["v2"][1]))
        elif "memory" in controllers.split(",") and "v1" in mounts:
            found.append(_cgroup_v1(root, _cgroup_dir(root, mounts["v1"], path)))
    limits = [lim for lim in found if lim is not None]
    return min(limits, key=lambda lim: lim.limit_bytes - lim.used_bytes) if limits else None


def _read_small(path: Path) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return fh.read(1 << 20)
    except OSError:
        return None


def _read_int(path: Path) -> int | None:
    text = (_read_small(path) or "").strip()
    return int(text) if text.isdigit() else None  # "max" (v2) and missing files: no limit here


def _stat_value(path: Path, key: str) -> int:
    for line in (_read_small(path) or "").splitlines():
        name, _, value = line.partition(" ")
        if name == key and value.strip().isdigit():
            return int(value)
    return 0


def _cgroup_mounts(root: Path) -> dict[str, tuple[str, str]]:
    """{"v2": (cgroup root, mount point), "v1": (...) for the memory controller} from mountinfo."""
    mounts: dict[str, tuple[str, str]] = {}
    for line in (_read_small(root / "proc/self/mountinfo") or "").splitlines():
        left, sep, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if not sep or len(fields) < 5 or len(tail) < 3:
            continue
        if tail[0] == "cgroup2":
            mounts.setdefault("v2", (fields[3], fields[4]))
        elif tail[0] == "cgroup" and "memory" in tail[2].split(","):
            mounts.setdefault("v1", (fields[3], fields[4]))
    if not mounts:  # no mountinfo: the usual places
        if (root / "sys/fs/cgroup/cgroup.controllers").exists():
            mounts["v2"] = ("/", "/sys/fs/cgroup")
        elif (root / "sys/fs/cgroup/memory").is_dir():
            mounts["v1"] = ("/", "/sys/fs/cgroup/memory")
    return mounts


def _cgroup_dir(root: Path, mount: tuple[str, str], path: str) -> Path:
    """The directory of cgroup `path` under a mount of cgroup root `mount[0]` at `mount[1]`."""
    mroot, point = mount
    base = root / point.lstrip("/")
    rel = path[len(mroot):] if mroot != "/" and path.startswith(mroot) else path
    d = base / rel.lstrip("/")
    return d if d.is_dir() else base  # a namespaced container sees its own cgroup as the root


def _cgroup_v2(root: Path, d: Path, point: str) -> ProcessLimit | None:
    top = root / point.lstrip("/")
    best: tuple[int, Path] | None = None
    cur = d
    while True:  # a parent's memory.max binds its children too
        value = _read_int(cur / "memory.max")
        if value is not None and value < CGROUP_UNLIMITED and (best is None or value < best[0]):
            best = (value, cur / "memory.max")
        if cur == top or top not in cur.parents:
            break
        cur = cur.parent
    if best is None:
        return None
    used = max(0, (_read_int(d / "memory.current") or 0) - _stat_value(d / "memory.stat", "inactive_file"))
    return ProcessLimit("cgroup", best[0], used, str(Path("/") / best[1].relative_to(root)))


def _cgroup_v1(root: Path, d: Path) -> ProcessLimit | None:
    candidates = [(v, d / name) for name, v in (
        ("memory.limit_in_bytes", _read_int(d / "memory.limit_in_bytes")),
        ("memory.stat", _stat_value(d / "memory.stat", "hierarchical_memory_limit") or None),
    ) if v is not None and v < CGROUP_UNLIMITED]
    if not candidates:
        return None
    value, where = min(candidates)
    used = max(0, (_read_int(d / "memory.usage_in_bytes") or 0)
               - _stat_value(d / "memory.stat", "total_inactive_file"))
    return ProcessLimit("cgroup", value, used, str(Path("/") / where.relative_to(root)))
