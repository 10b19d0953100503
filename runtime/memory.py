"""The memory planner: both modules resident, one after the other, or refuse up front.

A model's need is estimated from the bundle, before anything is loaded:

    weights  = artifact file sizes x format factor (GGUF is mmapped: ~1.05; ONNX Runtime
               holds initializers plus optimisation copies: ~1.3)
    kv cache = 2 (K and V) x layers x kv heads x head_dim x context x bytes per value
    overhead = a fixed 48 MiB per model (compute buffers, logits) + 5% of the weights

and the process itself is charged a fixed base. With the memory available (a cap such as
`--max-memory 2G`, or what the OS reports as available) the plan is "resident" when both
models fit together, "sequential" when each fits alone (load one stage's model, run it,
free it, load the next), and otherwise a `MemoryPlanError` that says what would fit:
a smaller quantization from the same bundle, or a shorter context.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from runtime.errors import InputError, MemoryPlanError
from runtime.manifest import Artifact, TextShape

MiB = 1 << 20
GiB = 1 << 30
BASE_PROCESS_BYTES = 160 * MiB  # Python, numpy, tokenizers, a backend library
MODEL_OVERHEAD_BYTES = 48 * MiB
FORMAT_WEIGHT_FACTOR = {"gguf": 1.05, "onnx": 1.3}
MIN_CONTEXT = 512
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


def kv_cache_bytes(shape: TextShape, context: int, bytes_per_value: int) -> int:
    return 2 * shape.num_layers * shape.num_kv_heads * shape.head_dim * context * bytes_per_value


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

    @property
    def total(self) -> int:
        return self.weights_bytes + self.kv_bytes + self.overhead_bytes

    def describe(self) -> str:
        return (f"{self.role} {self.format}/{self.quant} needs {format_size(self.total)} "
                f"(weights {format_size(self.weights_bytes)} + KV cache {format_size(self.kv_bytes)} "
                f"at {self.context} context + {format_size(self.overhead_bytes)} overhead)")


def model_need(
    role: str,
    artifact: Artifact,
    file_sizes: Mapping[str, int],
    shape: TextShape | None,
    context: int,
    kv_bytes_per_value: int,
) -> ModelNeed:
    """Estimate one model's memory. `shape` None (a stock GGUF) charges 20% for the KV cache."""
    raw = sum(file_sizes[rel] for rel in artifact.files.values())
    weights = int(raw * FORMAT_WEIGHT_FACTOR.get(artifact.format, 1.3))
    if shape is not None:
        per_token = kv_cache_bytes(shape, 1, kv_bytes_per_value)
        kv = per_token * context
    else:
        per_token, kv = 0, int(raw * 0.2)
    overhead = MODEL_OVERHEAD_BYTES + int(0.05 * raw)
    return ModelNeed(role, artifact.format, artifact.quant, weights, kv, overhead, context, per_token)


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
    import psutil

    return int(psutil.virtual_memory().available)


def available_for_models(max_memory: str | int | None) -> tuple[int, str]:
    """Bytes the models may use: the cap minus the process base, or the OS's available."""
    if max_memory is not None:
        cap = parse_size(max_memory)
        return cap - BASE_PROCESS_BYTES, "cap"
    return int(system_available_bytes() * 0.9), "system"


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
            f"both models resident need {format_size(together)}, only {format_size(available)} "
            f"is available; let the planner load them one after the other (residency 'auto')"
        )
    if together <= available and residency != "sequential":
        return MemoryPlan("resident", available, source, needs)
    if largest <= available:
        return MemoryPlan("sequential", available, source, needs)
    raise MemoryPlanError(_refusal(needs, available, source, alternatives or {}))


def _refusal(needs: dict[str, ModelNeed], available: int, source: str,
             alternatives: Mapping[str, list[ModelNeed]]) -> str:
    where = "under the memory cap" if source == "cap" else "in the memory this machine has free"
    msgs = []
    for role, need in needs.items():
        if need.total <= available:
            continue
        tips = []
        fitting = sorted((a for a in alternatives.get(role, []) if a.total <= available), key=lambda a: -a.total)
        if fitting:
            best = fitting[0]
            tips.append(f"quantization {best.quant} ({format_size(best.total)})")
        if need.kv_bytes_per_token:
            room = available - need.weights_bytes - need.overhead_bytes
            ctx = (room // need.kv_bytes_per_token) // 256 * 256 if room > 0 else 0
            if ctx >= MIN_CONTEXT:
                tips.append(f"a context of {min(ctx, need.context - 256)} tokens")
        hint = f"; try {' or '.join(tips)}" if tips else "; no smaller option in this bundle fits"
        msgs.append(f"{need.describe()}{hint}")
    needed = max(n.total for n in needs.values()) + BASE_PROCESS_BYTES
    return (f"cannot run even one stage {where} ({format_size(available)} for the models): "
            + " | ".join(msgs) + f" (at least {format_size(needed)} of memory in total)")


def current_rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / MiB


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MiB."""
    try:
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak / MiB if sys.platform == "darwin" else peak / 1024.0
    except (ImportError, AttributeError):  # Windows
        import psutil

        info = psutil.Process().memory_info()
        return getattr(info, "peak_wset", info.rss) / MiB
