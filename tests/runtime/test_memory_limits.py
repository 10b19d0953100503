"""The planner reads the kernel's limits (RLIMIT_AS, cgroup v1/v2) and refuses up front.

Before, a small `ulimit -v` or cgroup limit ended in a MemoryError traceback, a native
GGML abort (SIGABRT), "libgomp: Thread creation failed" or an ONNX load error blaming the
bundle, depending on where the allocation failed.
"""

from __future__ import annotations

import resource
import subprocess
import sys
from pathlib import Path

import pytest

from runtime.errors import MemoryPlanError
from runtime.limits import ProcessLimit, cgroup_memory_limit
from runtime.memory import (
    ADDRESS_SPACE_PER_THREAD_BYTES,
    ADDRESS_SPACE_RESERVE_BYTES,
    BACKEND_LIBRARY_BYTES,
    BASE_PROCESS_BYTES,
    MiB,
    describe_limit,
    limit_available,
    plan_memory,
)
from tests.runtime.test_memory import _need

ROOT = Path(__file__).resolve().parents[2]
SMALL_AS = 256 * MiB  # enough to import everything up to the plan, far too little to load


def _under_rlimit_as(limit: int):
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # a native abort must not leave a core file

    return apply


_LOAD = """
import sys
from runtime.errors import EdgeError
from runtime.pipeline import ExtractThink
try:
    ExtractThink.load(None, backend=sys.argv[1], verify="size")
except EdgeError as exc:
    print(type(exc).__name__, "|", exc)
    sys.exit(exc.exit_code)
print("loaded")
"""


@pytest.mark.parametrize("backend", ["llamacpp", "onnx"])
def test_small_rlimit_as_is_refused_before_loading(backend):
    out = subprocess.run([sys.executable, "-c", _LOAD, backend], cwd=ROOT, capture_output=True, text=True,
                         timeout=120, preexec_fn=_under_rlimit_as(SMALL_AS), check=False)
    assert out.returncode == MemoryPlanError.exit_code, (out.returncode, out.stdout, out.stderr[-1500:])
    kind, _, message = out.stdout.strip().partition(" | ")
    assert kind == "MemoryPlanError"
    assert "RLIMIT_AS (ulimit -v) of 256 MiB" in message and "the limit would need about" in message


def test_small_rlimit_as_gives_one_line_from_the_cli():
    out = subprocess.run([sys.executable, "-m", "edge", "run", "--backend", "llamacpp"], cwd=ROOT,
                         capture_output=True, text=True, timeout=120,
                         preexec_fn=_under_rlimit_as(SMALL_AS), check=False)
    assert out.returncode == MemoryPlanError.exit_code, (out.returncode, out.stderr[-1500:])
    lines = [ln for ln in out.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("edge run: error: cannot run even one stage under "
                                                   "the address-space limit RLIMIT_AS"), out.stderr[-1500:]
    assert "Traceback" not in out.stderr


_READ_RLIMIT = """
from runtime.limits import address_space_limit
from runtime.memory import available_for_models, limit_available
lim = address_space_limit()
print(lim and (lim.limit_bytes, lim.used_bytes > 0, lim.limit_bytes - lim.used_bytes - limit_available(lim, 3)))
print(available_for_models("2000G", threads=3))
"""


def test_address_space_limit_reads_the_rlimit():
    unlimited = subprocess.run([sys.executable, "-c", _READ_RLIMIT], cwd=ROOT, capture_output=True, text=True,
                               timeout=60, preexec_fn=_under_rlimit_as(resource.RLIM_INFINITY), check=True)
    assert unlimited.stdout.splitlines() == ["None", f"({2000 * 1024 * MiB - BASE_PROCESS_BYTES}, 'cap')"]
    limited = subprocess.run([sys.executable, "-c", _READ_RLIMIT], cwd=ROOT, capture_output=True, text=True,
                             timeout=60, preexec_fn=_under_rlimit_as(1 << 40), check=True)
    first, second = limited.stdout.splitlines()
    assert first == f"({1 << 40}, True, {ADDRESS_SPACE_RESERVE_BYTES + 3 * ADDRESS_SPACE_PER_THREAD_BYTES})"
    assert "the address-space limit RLIMIT_AS (ulimit -v) of 1024.00 GiB" in second  # tighter than the cap


def _write(root: Path, rel: str, text: str) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _v2(root: Path, *, leaf_max: str, parent_max: str, nested: bool = True) -> None:
    _write(root, "proc/self/cgroup", "0::/app.slice/edge.service\n")
    _write(root, "proc/self/mountinfo",
           "30 25 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n"
           "31 25 0:27 / /proc rw - proc proc rw\n")
    base = "sys/fs/cgroup/app.slice" if nested else "sys/fs/cgroup"
    _write(root, f"{base}/memory.max", parent_max + "\n")
    leaf = f"{base}/edge.service" if nested else base
    _write(root, f"{leaf}/memory.max", leaf_max + "\n")
    _write(root, f"{leaf}/memory.current", str(300 * MiB) + "\n")
    _write(root, f"{leaf}/memory.stat", f"anon {200 * MiB}\ninactive_file {100 * MiB}\nactive_file 0\n")


def test_cgroup_v2_limit_of_the_process_cgroup_and_its_parents(tmp_path):
    _v2(tmp_path, leaf_max="max", parent_max=str(512 * MiB))
    lim = cgroup_memory_limit(tmp_path)
    assert lim is not None and lim.kind == "cgroup"
    assert lim.limit_bytes == 512 * MiB and lim.where == "/sys/fs/cgroup/app.slice/memory.max"
    assert lim.used_bytes == 200 * MiB  # memory.current minus the reclaimable inactive page cache
    other = tmp_path / "b"
    _v2(other, leaf_max=str(256 * MiB), parent_max=str(512 * MiB))
    assert cgroup_memory_limit(other).limit_bytes == 256 * MiB
    unlimited = tmp_path / "c"
    _v2(unlimited, leaf_max="max", parent_max="max")
    assert cgroup_memory_limit(unlimited) is None


def test_cgroup_v2_inside_a_namespaced_container(tmp_path):
    # The process sees a path that does not exist under its own mount: its cgroup is the root.
    _write(tmp_path, "proc/self/cgroup", "0::/../../docker/abc\n")
    _write(tmp_path, "proc/self/mountinfo", "30 25 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n")
    _write(tmp_path, "sys/fs/cgroup/memory.max", str(1 << 30))
    _write(tmp_path, "sys/fs/cgroup/memory.current", str(100 * MiB))
    lim = cgroup_memory_limit(tmp_path)
    assert lim.limit_bytes == 1 << 30 and lim.used_bytes == 100 * MiB


def test_cgroup_v1_memory_controller(tmp_path):
    _write(tmp_path, "proc/self/cgroup", "5:cpu,cpuacct:/x\n4:memory:/process_api/job7\n0::/\n")
    _write(tmp_path, "proc/self/mountinfo",
           "35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n"
           "41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n")
    d = "sys/fs/cgroup/memory/process_api/job7"
    _write(tmp_path, f"{d}/memory.limit_in_bytes", "9223372036854771712\n")  # "unlimited" here...
    _write(tmp_path, f"{d}/memory.stat", f"hierarchical_memory_limit {768 * MiB}\ntotal_inactive_file {50 * MiB}\n")
    _write(tmp_path, f"{d}/memory.usage_in_bytes", str(150 * MiB))
    lim = cgroup_memory_limit(tmp_path)  # ...but a parent limits it; v2 has no memory.max here
    assert lim.limit_bytes == 768 * MiB and lim.used_bytes == 100 * MiB
    assert lim.where == "/sys/fs/cgroup/memory/process_api/job7/memory.stat"


def test_no_cgroup_files_means_no_limit(tmp_path):
    assert cgroup_memory_limit(tmp_path) is None
    _write(tmp_path, "proc/self/cgroup", "garbage\n0::\n")
    assert cgroup_memory_limit(tmp_path) is None


def test_refusal_names_the_kernel_limit():
    lim = ProcessLimit("cgroup", 200 * MiB, 150 * MiB, "/sys/fs/cgroup/memory.max")
    assert limit_available(lim) == 50 * MiB - BACKEND_LIBRARY_BYTES
    needs = {"reasoner": _need("reasoner", "gguf", "q8_0", 600)}
    with pytest.raises(MemoryPlanError) as err:
        plan_memory(needs, limit_available(lim), source=describe_limit(lim))
    msg = str(err.value)
    assert msg.startswith("cannot run even one stage under the cgroup memory limit of 200 MiB "
                          "(/sys/fs/cgroup/memory.max; 150 MiB in use) (26 MiB for the models)")
    assert "the limit would need about" in msg and "\n" not in msg
