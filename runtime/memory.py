"""The memory planner: both modules resident, one after the other, or refuse up front.

A model's need is estimated from the bundle, before anything is loaded, for the full
context it will be given (a request that fills it touches all of it):

    weights  = file sizes x a factor: GGUF x1.05 (read into memory on CPU; 4-bit text
               models x1.1, llama.cpp's repacked layout); ONNX Runtime holds initializers
               plus its optimisation copies (x1.3)
    kv cache = 2 (K and V) x layers x kv heads x head_dim x context x bytes per value
    compute  = one 512-position batch of activations: llama.cpp reserves the output
               projection for the whole batch (512 x vocab x 4 bytes) plus the MLP; ONNX
               Runtime keeps attention buffers of a 512-position chunk against the whole
               context (3 x heads x 512 x context x 4 bytes), two more copies of the KV
               cache (the present values each call returns, and the grown cache) and the MLP
    overhead = a fixed 32 MiB per model

The constants were fitted to measured peaks (docs/runtime.md, "Memory planner"). The
process is charged what it holds when the plan is made (at least `BASE_PROCESS_BYTES`)
plus the backend library still to import. The memory available is the smallest of: the
cap (`--max-memory 2G`), 90% of what the OS reports free, RLIMIT_AS and the process's
cgroup limit (`runtime.limits`). The plan is "resident" when both models fit together,
"sequential" when each fits alone (load one stage's model, run it, free it, load the
next), and otherwise a `MemoryPlanError` naming the binding limit and what would fit: a
smaller quantization from the same bundle, or a shorter context.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal

import psutil

from runtime.errors import InputError, MemoryPlanError
from runtime.limits import ProcessLimit, address_space_limit, cgroup_memory_limit
from runtime.manifest import Artifact, TextShape
from runtime.procfs import status_field

try:
    import resource
except ImportError:  # Windows has no rlimits
    resource = None  # type: ignore[assignment]

MiB = 1 << 20
GiB = 1 << 30
# Python, numpy, Pillow, tokenizers and a backend library before any model: 43 MiB
# (llama_cpp) and 54 MiB (onnxruntime) measured; a large tokenizer adds more (the Qwen3
# one: 75 MiB once the parse is trimmed), which only `process_bytes` (the RSS at planning time) shows.
BASE_PROCESS_BYTES = 64 * MiB
MODEL_OVERHEAD_BYTES = 32 * MiB
# A suggested context leaves this much room: the next load plans again with what the process
# holds then, which has grown a little (a 2,560-token suggestion for 147 MiB was refused at
# 146 MiB on the second load of a test, needing 146 MiB and some bytes)
SUGGESTION_MARGIN_BYTES = 4 * MiB
FORMAT_WEIGHT_FACTOR = {"gguf": 1.05, "onnx": 1.3}
# 4-bit tensors go to llama.cpp's CPU_REPACK buffer. Mapped, the file stayed resident
# beside that copy (x1.65 measured); read into memory (the runtime's CPU load mode,
# runtime.backends.llamacpp.native_model) Qwen3-1.7B q4_k_m holds x1.06 of its file,
# context and compute buffers apart (1,234 MiB with a 1,024-token context for 1,057 MiB).
GGUF_REPACKED_QUANTS = ("q4_0", "q4_k_m", "q4_k_s", "iq4_nl")
GGUF_REPACK_FACTOR = 1.1
COMPUTE_BATCH = 512  # llama.cpp's n_batch/n_ubatch and the ONNX prefill chunk (runtime.backends)
COMPUTE_MLP_WIDTHS = 4  # MLP activations kept per position, in units of intermediate_size
ONNX_ATTENTION_COPIES = 3  # buffers of [heads, chunk, context] (scores, probabilities...): fitted
ONNX_KV_COPIES = 2  # the present key/values a call returns, and the copy while the cache grows
STOCK_COMPUTE_BYTES = 320 * MiB  # a stock GGUF of unknown shape: a Qwen-sized vocabulary's batch
MIN_CONTEXT = 512
# Importing the backend library, not yet done when the plan is made: +8 MiB (llama_cpp),
# +19 MiB (onnxruntime) measured. Charged where the current usage is already counted.
BACKEND_LIBRARY_BYTES = 24 * MiB
# RLIMIT_AS counts address space, not resident memory: llama.cpp and ONNX Runtime reserve
# far more than they touch. Measured on the default bundle (docs/runtime.md): the smallest
# RLIMIT_AS that ran was 120-480 MiB above the address space mapped at planning time,
# growing by up to ~70 MiB per thread (an 8 MiB stack plus a 64 MiB malloc arena).
ADDRESS_SPACE_RESERVE_BYTES = 224 * MiB
ADDRESS_SPACE_PER_THREAD_BYTES = 72 * MiB
Residency = Literal["resident", "sequential"]

_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b?)\s*$", re.IGNORECASE)


def parse_size(value: str | int) -> int:
    """'2G', '1.5GiB', '512M', '300MB', '1048576' -> bytes (binary multiples)."""
    if isinstance(value, int) and not isinstance(value, bool):
        if value <= 0:
            raise InputError(f"a memory size must be positive, got {value}")
        return value
    m = _SIZE_RE.match(str(value))
    if not m:
        raise InputError(f"not a memory size: {value!r} (examples: 2G, 512M, 1.5GiB)")
    number = float(m.group(1))
    scale = {"": 1, "k": 1 << 10, "m": MiB, "g": GiB, "t": 1 << 40}[m.group(2).lower()]
    size = int(number * scale)
    if size <= 0:
        raise InputError(f"a memory size must be positive, got {value!r}")
    return size


def format_size(n: int | float) -> str:
    if n >= GiB:
        return f"{n / GiB:.2f} GiB"
    return f"{n / MiB:.0f} MiB"


# bytes per cached key or value of each KV cache type (q8_0: blocks of 32 values in 34 bytes)
KV_VALUE_BYTES: dict[str, float] = {"f32": 4, "f16": 2, "q8_0": 34 / 32}


def kv_cache_bytes(shape: TextShape, context: int, bytes_per_value: float) -> int:
    return int(2 * shape.num_layers * shape.num_kv_heads * shape.head_dim * context * bytes_per_value)


@dataclass(frozen=True)
class ModelNeed:
    role: str
    format: str
    quant: str
    weights_bytes: int
    kv_bytes: int
    overhead_bytes: int
    context: int
    kv_bytes_per_token: int = 0
    overhead_bytes_per_token: int = 0  # the part of the overhead that grows with the context

    @property
    def total(self) -> int:
        return self.weights_bytes + self.kv_bytes + self.overhead_bytes

    def context_that_fits(self, available: int) -> int:
        """The longest context (a multiple of 256) whose need fits `available`; 0 if none."""
        per_token = self.kv_bytes_per_token + self.overhead_bytes_per_token
        fixed = self.weights_bytes + self.overhead_bytes - self.overhead_bytes_per_token * self.context
        if per_token <= 0 or available <= fixed:
            return 0
        return (available - fixed) // per_token // 256 * 256

    def describe(self) -> str:
        return (f"{self.role} {self.format}/{self.quant} needs {format_size(self.total)} "
                f"(weights {format_size(self.weights_bytes)} + KV cache {format_size(self.kv_bytes)} "
                f"at {self.context} context + {format_size(self.overhead_bytes)} compute and overhead)")


def model_need(
    role: str,
    artifact: Artifact,
    file_sizes: Mapping[str, int],
    shape: TextShape | None,
    context: int,
    kv_bytes_per_value: float,
) -> ModelNeed:
    """Estimate one model's memory. `shape` None (a stock GGUF) charges 20% for the KV cache."""
    raw = sum(file_sizes[rel] for rel in artifact.files.values())
    weights = sum(int(file_sizes[rel] * _weight_factor(artifact, part)) for part, rel in artifact.files.items())
    if shape is not None:
        per_token = kv_cache_bytes(shape, 1, kv_bytes_per_value)
        kv = per_token * context
        compute = compute_bytes(artifact.format, shape, context, kv)
        growth = compute_bytes(artifact.format, shape, context + 1, kv + per_token) - compute
    else:
        per_token, kv, compute, growth = 0, int(raw * 0.2), STOCK_COMPUTE_BYTES, 0
    return ModelNeed(role, artifact.format, artifact.quant, weights, kv, MODEL_OVERHEAD_BYTES + compute,
                     context, per_token, growth)


def _weight_factor(artifact: Artifact, part: str) -> float:
    if artifact.format == "gguf" and part == "model" and artifact.quant in GGUF_REPACKED_QUANTS:
        return GGUF_REPACK_FACTOR
    return FORMAT_WEIGHT_FACTOR.get(artifact.format, 1.3)


def compute_bytes(fmt: str, shape: TextShape, context: int, kv_bytes: int = 0) -> int:
    """Working memory of one model at a full context (see the module docstring).

    llama.cpp: its own reservation was 313 MiB for Qwen3-0.6B (this estimate: 325),
    305 MiB for 1.7B (349) and 10.5 MiB for the shipped tiny model (12.3). ONNX Runtime
    keeps each session's arena at its high-water mark: attention scores and
    probabilities of a chunk against the whole context, and the present key/values each
    call returns beside the cache (`kv_bytes`) plus the copy made while growing it;
    fitted to the tiny model's peak with a 3,846-token prompt.
    """
    batch = min(COMPUTE_BATCH, context)
    mlp = batch * COMPUTE_MLP_WIDTHS * shape.intermediate_size * 4
    if fmt == "gguf":
        return batch * shape.vocab_size * 4 + mlp
    attention = ONNX_ATTENTION_COPIES * batch * shape.num_heads * context * 4
    return attention + ONNX_KV_COPIES * kv_bytes + mlp + shape.vocab_size * 4


@dataclass(frozen=True)
class MemoryPlan:
    residency: Residency
    available_bytes: int  # for the models (cap or system available, minus the process base)
    source: str  # "cap" | "system"
    needs: dict[str, ModelNeed]

    def describe(self) -> str:
        parts = "; ".join(n.describe() for n in self.needs.values())
        return f"{self.residency}: {format_size(self.available_bytes)} available ({self.source}); {parts}"


def system_available_bytes() -> int:
    return int(psutil.virtual_memory().available)


def available_for_models(max_memory: str | int | None, *, threads: int | None = None,
                         process_bytes: int | None = None) -> tuple[int, str]:
    """Bytes the models may use, and what bounds them.

    With a cap (a whole-process figure): the cap minus what the process holds before any
    model, i.e. `process_bytes` (its RSS when the plan is made: the pipeline passes it,
    after loading the tokenizers) plus the backend library still to import, and never
    less than `BASE_PROCESS_BYTES`. Without one: 90% of what the OS reports available
    minus the library. Then RLIMIT_AS and the cgroup limit, whichever leaves least;
    `threads` (default: all CPUs) sizes the address space RLIMIT_AS must leave for thread
    stacks and arenas. The source is "cap", "system" or a description of the binding
    kernel limit, which a refusal quotes.
    """
    if max_memory is not None:
        held = BASE_PROCESS_BYTES if process_bytes is None else process_bytes + BACKEND_LIBRARY_BYTES
        options = [(parse_size(max_memory) - max(BASE_PROCESS_BYTES, held), "cap")]
    else:
        options = [(int(system_available_bytes() * 0.9) - BACKEND_LIBRARY_BYTES, "system")]
    for lim in (address_space_limit(), cgroup_memory_limit()):
        if lim is not None:
            options.append((limit_available(lim, threads), describe_limit(lim, threads)))
    return min(options, key=lambda option: option[0])


def current_rss_bytes() -> int:
    return int(psutil.Process().memory_info().rss)


def _reserve(lim: ProcessLimit, threads: int | None) -> int:
    """What a kernel limit must leave beyond the models' resident memory."""
    if lim.kind == "rlimit":
        return ADDRESS_SPACE_RESERVE_BYTES + (threads or os.cpu_count() or 1) * ADDRESS_SPACE_PER_THREAD_BYTES
    return BACKEND_LIBRARY_BYTES  # the cgroup's usage already counts this process, less the library


def limit_available(lim: ProcessLimit, threads: int | None = None) -> int:
    """Bytes the models may use under `lim` (negative when nothing fits)."""
    return lim.limit_bytes - lim.used_bytes - _reserve(lim, threads)


def describe_limit(lim: ProcessLimit, threads: int | None = None) -> str:
    if lim.kind == "rlimit":
        return (f"the address-space limit {lim.where} of {format_size(lim.limit_bytes)} "
                f"({format_size(lim.used_bytes)} mapped already, {format_size(_reserve(lim, threads))} "
                "kept for thread stacks, allocator arenas and the backend's buffers)")
    return f"the cgroup memory limit of {format_size(lim.limit_bytes)} ({lim.where}; {format_size(lim.used_bytes)} in use)"


def plan_memory(
    needs: Mapping[str, ModelNeed],
    available: int,
    *,
    source: str = "cap",
    residency: Literal["auto", "resident", "sequential"] = "auto",
    alternatives: Mapping[str, list[ModelNeed]] | None = None,
) -> MemoryPlan:
    """Decide residency, or raise `MemoryPlanError` with suggestions that would fit."""
    needs = dict(needs)
    together = sum(n.total for n in needs.values())
    largest = max((n.total for n in needs.values()), default=0)
    if residency == "resident" and together > available:
        raise MemoryPlanError(
            f"both models resident need {format_size(together)}, only {format_size(max(available, 0))} "
            f"is available {_where(source)}; let the planner load them one after the other (residency 'auto')"
        )
    if together <= available and residency != "sequential":
        return MemoryPlan("resident", available, source, needs)
    if largest <= available:
        return MemoryPlan("sequential", available, source, needs)
    raise MemoryPlanError(_refusal(needs, available, source, alternatives or {}))


def _where(source: str) -> str:
    return {"cap": "under the memory cap", "system": "in the memory this machine has free"}.get(
        source, f"under {source}")


def _refusal(needs: dict[str, ModelNeed], available: int, source: str,
             alternatives: Mapping[str, list[ModelNeed]]) -> str:
    where = _where(source)
    msgs = []
    for role, need in needs.items():
        if need.total <= available:
            continue
        tips = []
        fitting = sorted((a for a in alternatives.get(role, []) if a.total <= available), key=lambda a: -a.total)
        if fitting:
            best = fitting[0]
            tips.append(f"quantization {best.quant} ({format_size(best.total)})")
        ctx = min(need.context_that_fits(available - SUGGESTION_MARGIN_BYTES), need.context - 256)
        if ctx >= MIN_CONTEXT:
            tips.append(f"a context of {ctx} tokens")
        hint = f"; try {' or '.join(tips)}" if tips else "; no smaller option in this bundle fits"
        msgs.append(f"{need.describe()}{hint}")
    largest = max(n.total for n in needs.values())
    if source in ("cap", "system"):
        total = f"at least {format_size(largest + BASE_PROCESS_BYTES)} of memory in total"
    else:
        total = f"the limit would need about {format_size(largest - available)} more"
    return (f"cannot run even one stage {where} ({format_size(max(available, 0))} for the models): "
            + " | ".join(msgs) + f" ({total})")


def current_rss_mb() -> float:
    return current_rss_bytes() / MiB


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c") if sys.platform.startswith("linux") else None
    try:
        return getattr(ctypes.CDLL(name), "malloc_trim", None) if name else None
    except OSError:
        return None


def release_free_heap() -> bool:
    """Give the C heap's free pages back to the OS (glibc `malloc_trim`); True if it ran.

    Unloading a model frees its buffers, but glibc keeps much of what small allocations
    used (the tokenizer, llama.cpp's bookkeeping) for reuse: ~160 MiB after a Qwen3-sized
    load. Under sequential residency the next model is loaded on top of it, so the process
    peak is lower when it is returned first. A no-op where there is no glibc."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MiB."""
    # Linux: VmHWM is the peak of this program's own memory. ru_maxrss is not: it survives
    # fork + exec, so a small `edge` run started by a big parent reported the parent's peak.
    hwm = status_field("VmHWM")  # kB
    if hwm is not None and hwm.isdigit():
        return int(hwm) / 1024.0
    if resource is not None:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak / MiB if sys.platform == "darwin" else peak / 1024.0
    info = psutil.Process().memory_info()  # Windows
    return getattr(info, "peak_wset", info.rss) / MiB
