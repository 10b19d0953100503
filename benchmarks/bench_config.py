"""What `edge bench` measures: its settings, and the bundle artifacts it runs.

`BenchConfig` holds the settings of one benchmark run; `select_artifacts` picks, per
model, the bundle's artifacts whose backend is wanted and installed and whose
quantization is wanted; `pipeline_pairs` matches perception and reasoner artifacts of one
backend for whole requests.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from benchmarks.inputs import TokenCounts
from runtime.backends import FORMAT_BACKEND, library_installed
from runtime.bundle import Bundle
from runtime.errors import ConfigError
from runtime.threads import check_threads, default_threads

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BenchConfig:
    threads: int | None = None  # None: the runtime's default (runtime.threads.default_threads)
    repeat: int = 3
    warmup: int = 1
    counts: TokenCounts = field(default_factory=TokenCounts)
    backends: tuple[str, ...] = ()  # () = every backend the bundle has and this machine runs
    quants: tuple[str, ...] = ()  # () = every quantization in the bundle
    baselines: tuple[str, ...] = ("raw", "transformers")
    loops: bool = True
    pipeline: bool = True
    residency: tuple[str, ...] = ("resident", "sequential")
    kv_cache_type: str = "f16"
    # the torch baseline is skipped when its fp32 weights exceed this share of free memory
    transformers_max_fraction: float = 0.45

    def __post_init__(self) -> None:
        if self.repeat < 1 or self.warmup < 0:
            raise ConfigError("repeat must be >= 1 and warmup >= 0")
        check_threads(self.threads)
        bad = set(self.baselines) - {"raw", "transformers"}
        if bad:
            raise ConfigError(f"unknown baseline(s) {', '.join(sorted(bad))} (raw, transformers)")
        bad = set(self.residency) - {"resident", "sequential"}
        if bad:
            raise ConfigError(f"unknown residency {', '.join(sorted(bad))} (resident, sequential)")

    @property
    def thread_count(self) -> int:
        """The threads each model gets: the given count, or the runtime's load-aware default."""
        return self.threads or default_threads()


@dataclass(frozen=True)
class ArtifactRef:
    role: str
    backend: str  # "llamacpp" | "onnx"
    format: str
    quant: str
    artifact: Any

    @property
    def label(self) -> str:
        return f"{self.backend} {self.quant}"


def select_artifacts(bundle: Bundle, cfg: BenchConfig) -> dict[str, list[ArtifactRef]]:
    """Per role, the artifacts to benchmark: allowed backends that are installed, wanted quants."""
    out: dict[str, list[ArtifactRef]] = {}
    for role in ("perception", "reasoner"):
        if role not in bundle.manifest.models:
            continue
        refs = []
        for art in bundle.model(role).artifacts:
            backend = FORMAT_BACKEND.get(art.format)
            if backend is None or (cfg.backends and backend not in cfg.backends):
                continue
            if cfg.quants and art.quant not in cfg.quants:
                continue
            if not library_installed(backend):
                log.warning("skipping %s %s/%s: the %s library is not installed", role, art.format, art.quant, backend)
                continue
            refs.append(ArtifactRef(role, backend, art.format, art.quant, art))
        out[role] = refs
    if not any(out.values()):
        raise ConfigError("nothing to benchmark: no artifact in the bundle matches the backends/quantizations "
                          "asked for, or their libraries are not installed")
    return out


def pipeline_pairs(arts: dict[str, list[ArtifactRef]]) -> list[tuple[ArtifactRef, ArtifactRef]]:
    """(perception, reasoner) artifact pairs of the same backend, matched by quantization."""
    pairs = []
    for p in arts.get("perception", []):
        same = [r for r in arts.get("reasoner", []) if r.backend == p.backend]
        if not same:
            continue
        match = next((r for r in same if r.quant == p.quant), same[0])
        pairs.append((p, match))
    return pairs
