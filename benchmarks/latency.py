"""Latency and memory of Extract+Think per stage, with baselines measured in the same run.

`run_bench` runs two sections on the same files and threads and returns one report:

- pipeline (`benchmarks.pipeline_bench`): whole `ExtractThink` requests per
  backend/quantization, both models resident and loaded one after the other; per-stage
  time to first token, tokens/s, wall time, and RSS sampled by a thread.
- loops (`benchmarks.loops`): each stage shape through the runtime's own path
  (`benchmarks.stage_runner`), the raw engine and HF transformers `generate`, interleaved
  inside every repetition so a burst of load from another process hits all of them alike.

EOS and `</think>` are banned in the loops so every engine generates exactly the same
number of tokens; the budget controller still forces the newline and `</think>` at the
thinking budget, as it does in a real request.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from benchmarks.bench_config import BenchConfig, pipeline_pairs, select_artifacts
from benchmarks.loops import HFSource, loop_ratios, run_loops
from benchmarks.machine import load_average, machine_info
from benchmarks.pipeline_bench import pipeline_equivalents, run_pipeline
from runtime.bundle import Bundle
from runtime.progress import Progress, report

SCHEMA = "edge-bench/1"


def part(progress: Progress | None, lo: float, hi: float) -> Progress | None:
    """`progress` for one part of a job: the part's fractions 0..1 become lo..hi of the job."""
    if progress is None:
        return None
    return lambda stage, fraction: report(progress, stage, lo + (hi - lo) * min(max(fraction, 0.0), 1.0))


def run_bench(bundle: Bundle, cfg: BenchConfig, *, workload: str | None = None, hf: HFSource | None = None,
              progress: Progress | None = None,
              on_section: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Run the configured sections on an opened bundle; returns the report as a dict.

    `progress(stage, fraction)` follows the whole run; `on_section(rep)` is called after
    each section with the report so far (long runs save partial results with it)."""
    threads = cfg.thread_count
    arts = select_artifacts(bundle, cfg)
    rep: dict[str, Any] = {
        "schema": SCHEMA,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "bundle": {"name": bundle.manifest.name, "path": str(bundle.root), "workload": workload,
                   "models": {role: _model_summary(bundle, role) for role in bundle.manifest.models},
                   "files_mb": round(sum(f.size for f in bundle.manifest.files.values()) / 2**20, 1)},
        "settings": {"threads": threads, "repeat": cfg.repeat, "warmup": cfg.warmup,
                     "tokens": cfg.counts.to_dict(), "kv_cache_type": cfg.kv_cache_type,
                     "baselines": list(cfg.baselines), "residency": list(cfg.residency),
                     "sampling": "greedy", "artifacts": {role: [a.label for a in refs] for role, refs in arts.items()}},
        "load_average": {"start": load_average()},
        "skipped": {},
    }
    t0 = time.perf_counter()
    pairs = pipeline_pairs(arts) if cfg.pipeline else []
    # each section's share of the run: its number of loaded configurations
    pipe_units = len(pairs) * len(cfg.residency)
    loop_units = sum(len(refs) for refs in arts.values()) if cfg.loops else 0
    split = pipe_units / ((pipe_units + loop_units) or 1)
    # Whole requests first, in a process that has loaded nothing else yet: the memory they
    # show is the runtime's own (freed torch baselines would leave the heap inflated).
    if cfg.pipeline:
        if not pairs:
            rep["skipped"]["pipeline"] = "the bundle needs a perception and a reasoner artifact of one backend"
        else:
            rep["pipeline"] = run_pipeline(bundle, pairs, cfg, threads, part(progress, 0.0, split))
            rep["load_average"]["after_pipeline"] = load_average()
            if on_section is not None:
                on_section(rep)
    if cfg.loops:
        rows, skipped = run_loops(bundle, arts, cfg, threads, hf, part(progress, split, 1.0))
        rep["loops"] = rows
        rep["ratios"] = loop_ratios(rows)
        rep["skipped"].update(skipped)
        rep["load_average"]["after_loops"] = load_average()
        if rep.get("pipeline"):
            rep["pipeline_vs_baselines"] = pipeline_equivalents(rep["loops"], rep["pipeline"])
    rep["seconds"] = round(time.perf_counter() - t0, 1)
    rep["load_average"]["end"] = load_average()
    return rep


def _model_summary(bundle: Bundle, role: str) -> dict:
    e = bundle.model(role)
    t = e.text
    params = t.vocab_size * t.hidden_size * (1 if t.tie_word_embeddings else 2) + t.num_layers * (
        t.hidden_size * t.head_dim * (t.num_heads * 2 + t.num_kv_heads * 2) + 3 * t.hidden_size * t.intermediate_size)
    out = {"hidden_size": t.hidden_size, "layers": t.num_layers, "vocab_size": t.vocab_size,
           "text_params_m": round(params / 1e6, 1),
           "artifacts": {f"{a.format}/{a.quant}": round(sum(bundle.size_of(f) for f in a.files.values()) / 2**20, 1)
                         for a in e.artifacts}}
    if e.vision is not None:
        v = e.vision
        out["vision"] = {"image_size": v.image_size, "patch_size": v.patch_size, "layers": v.num_layers,
                         "hidden_size": v.hidden_size, "tokens_per_image": v.tokens_per_image}
    return out
