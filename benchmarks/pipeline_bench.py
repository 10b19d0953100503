"""The pipeline section of `edge bench`: whole `ExtractThink` requests, stage by stage.

Requests run with the stage budgets set to the benchmark's token counts, per backend and
quantization pair, with both models resident and loaded one after the other; each gives
per-stage time to first token, tokens/s and wall time, and the process RSS sampled by a
thread (`benchmarks.rss`) with a mark at every stage boundary.
"""

from __future__ import annotations

import time
from typing import Any

from benchmarks.bench_config import ArtifactRef, BenchConfig
from benchmarks.inputs import OPTIONS, PIPELINE_STAGES, QUESTIONS, bench_image
from benchmarks.machine import load_average
from benchmarks.rss import RssSampler
from benchmarks.stats import ratio, summarize
from runtime.bundle import Bundle
from runtime.pipeline import ExtractThink
from runtime.progress import Progress, report
from runtime.result import Done, StageFinished, StageStarted


def run_pipeline(bundle: Bundle, pairs: list[tuple[ArtifactRef, ArtifactRef]], cfg: BenchConfig, threads: int,
                 progress: Progress | None = None) -> list[dict]:
    """Whole requests per (backend/quant pair, residency), with RSS sampled per stage."""
    configs = [(p, r, residency) for p, r in pairs for residency in cfg.residency]
    out = []
    for n, (p, r, residency) in enumerate(configs):
        label = f"{p.backend} {p.quant}+{r.quant} {residency}"
        report(progress, f"pipeline: {label}", n / len(configs))
        sampler = RssSampler().start()
        base_rss = sampler.peak()
        t0 = time.perf_counter()
        sampler.mark("load")
        et = ExtractThink.load(bundle, backend=p.backend, quant={"perception": p.quant, "reasoner": r.quant},
                               threads=threads, residency=residency, kv_cache_type=cfg.kv_cache_type)
        load_s = time.perf_counter() - t0
        sampler.mark("idle")
        try:
            reps = [_request(et, sampler, i, bundle.model("perception").image.size, cfg)
                    for i in range(cfg.warmup + cfg.repeat)][cfg.warmup:]
        finally:
            et.close()
            sampler.mark("closed")
            sampler.stop()
        out.append({
            "label": label, "backend": p.backend, "quant": {"perception": p.quant, "reasoner": r.quant},
            "residency": residency, "load_s": round(load_s, 4), "base_rss_mb": round(base_rss, 1),
            "reps": reps, "summary": _pipeline_summary(reps),
            "memory_timeline": sampler.timeline(),
            "load_average": load_average(),
        })
    report(progress, "pipeline", 1.0)
    return out


def _request(et: ExtractThink, sampler: RssSampler, i: int, image_size: int, cfg: BenchConfig) -> dict:
    """One streamed request (repetition `i`): wall time, peak RSS overall and per stage."""
    counts = cfg.counts
    rep_t0 = sampler.now()
    starts: dict[str, float] = {}
    stage_peak: dict[str, float] = {}
    result = None
    w0 = time.perf_counter()
    for ev in et.stream(bench_image(image_size, seed=1000 + i), QUESTIONS[i % len(QUESTIONS)], list(OPTIONS),
                        mode="extract-think", thinking=True, hint=True, hint_budget=counts.hint,
                        extraction_budget=counts.extraction, thinking_budget=counts.thinking,
                        answer_budget=counts.answer, sampling="greedy", seed=i):
        if isinstance(ev, StageStarted):
            starts[ev.stage] = sampler.now()
            sampler.mark(ev.stage)
        elif isinstance(ev, StageFinished):
            sampler.sample()
            stage_peak[ev.stage] = sampler.max_between(starts.get(ev.stage, rep_t0))
            sampler.mark("idle")
        elif isinstance(ev, Done):
            result = ev.result
    wall = time.perf_counter() - w0
    stages = {}
    for name, st in result.stages.items():
        d = st.to_dict()
        d["peak_rss_mb"] = round(stage_peak.get(name, 0.0), 1)
        stages[name] = d
    return {"request_s": round(wall, 6), "peak_rss_mb": round(sampler.max_between(rep_t0), 1),
            "answer_found": result.answer_found, "stages": stages, "budget_events": len(result.budget_events)}


def _pipeline_summary(reps: list[dict]) -> dict:
    out: dict[str, Any] = {"request_s": summarize(r["request_s"] for r in reps),
                           "peak_rss_mb": summarize(r["peak_rss_mb"] for r in reps), "stages": {}}
    names = [s for s in PIPELINE_STAGES if any(s in r["stages"] for r in reps)]
    for name in names:
        rows = [r["stages"][name] for r in reps if name in r["stages"]]
        out["stages"][name] = {k: summarize(row[k] for row in rows)
                               for k in ("prompt_tokens", "tokens", "ttft_s", "tokens_per_s", "prefill_tokens_per_s",
                                         "seconds", "load_s", "peak_rss_mb")}
    return out


def pipeline_equivalents(loops: list[dict], pipeline: list[dict]) -> list[dict]:
    """Each pipeline config's median request time against the sum of the same stage shapes
    run by the raw engine (and by transformers) in the loops section."""
    med = {}
    for r in loops:
        med[(r["role"], r["stage"], r["backend"], r["quant"], r["engine"])] = \
            r["summary"].get("total_s", {}).get("median")
    hf = {(r["role"], r["stage"]): r["summary"].get("total_s", {}).get("median")
          for r in loops if r["engine"] == "transformers"}
    out = []
    for cfg in pipeline:
        b, qp, qr = cfg["backend"], cfg["quant"]["perception"], cfg["quant"]["reasoner"]
        parts = [("perception", "vision", qp), ("reasoner", "hint", qr), ("perception", "extraction", qp),
                 ("reasoner", "reasoning", qr)]
        total = cfg["summary"]["request_s"].get("median")
        row = {"label": cfg["label"], "request_s": total}
        for engine in ("runtime", "raw-llamacpp" if b == "llamacpp" else "raw-onnxruntime"):
            vals = [med.get((role, stage, b, q, engine)) for role, stage, q in parts]
            if all(v is not None for v in vals):
                row[f"{engine}_sum_s"] = sum(vals)
        raw_key = "raw-llamacpp_sum_s" if b == "llamacpp" else "raw-onnxruntime_sum_s"
        row["overhead_vs_raw"] = ratio(total, row.get(raw_key))
        hf_vals = [hf.get((role, stage)) for role, stage, _ in parts]
        if all(v is not None for v in hf_vals):
            row["transformers_sum_s"] = sum(hf_vals)
            row["speedup_vs_transformers"] = ratio(row["transformers_sum_s"], total)
        out.append(row)
    return out
