"""Latency and memory of Extract+Think per stage, with baselines measured in the same run.

Two sections, both on the same files and threads:

- loops: each model artifact runs the stage shapes it serves (perception: vision,
  extraction; reasoner: hint, reasoning = thinking + answer) with a fixed number of new
  tokens through (a) the runtime's own path (backend + `Session` + the budget controller
  + sampler + streaming decoder, i.e. `runtime.generation.generate`), (b) the raw engine
  (`benchmarks.raw_llamacpp` / `benchmarks.raw_onnx`) and (c) HF transformers `generate`
  on the source checkpoint. Engines are interleaved inside every repetition (the order
  rotates), so a burst of load from another process hits all of them alike.
- pipeline: whole `ExtractThink` requests with the stage budgets set to the same token
  counts, per backend/quantization, with both models resident and loaded one after the
  other; per-stage time to first token, tokens/s, wall time, and RSS sampled by a thread.

EOS and `</think>` are banned in the loops so every engine generates exactly the same
number of tokens; the budget controller still forces the newline and `</think>` at the
thinking budget, as it does in a real request.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any

import numpy as np

from benchmarks.inputs import OPTIONS, QUESTIONS, TokenCounts, bench_image, stage_prompts
from benchmarks.machine import load_average, machine_info
from benchmarks.rss import RssSampler
from benchmarks.stats import ratio, summarize, summarize_reps
from runtime.bundle import Bundle
from runtime.errors import ConfigError, EdgeError

log = logging.getLogger(__name__)

SCHEMA = "edge-bench/1"
Progress = Callable[[str], None]
ROLE_STAGES = {"perception": ("vision", "extraction"), "reasoner": ("hint", "reasoning")}
PIPELINE_STAGES = ("vision", "hint", "extraction", "thinking", "answer")


@dataclass(frozen=True)
class BenchConfig:
    threads: int | None = None  # None: physical cores (the runtime's default)
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
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"threads must be >= 1, got {self.threads}")
        bad = set(self.baselines) - {"raw", "transformers"}
        if bad:
            raise ConfigError(f"unknown baseline(s) {', '.join(sorted(bad))} (raw, transformers)")
        bad = set(self.residency) - {"resident", "sequential"}
        if bad:
            raise ConfigError(f"unknown residency {', '.join(sorted(bad))} (resident, sequential)")


def default_threads() -> int:
    import os

    import psutil

    return max(1, psutil.cpu_count(logical=False) or os.cpu_count() or 1)


# ---- artifacts ------------------------------------------------------------------------


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
    from runtime.backends import FORMAT_BACKEND, library_installed

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


# ---- the runtime's path for one stage shape ----------------------------------------------


def fixed_length_control(tok: Any) -> Any:
    """The runtime's control tokens with EOS and `</think>` banned (never sampled), so a
    stage always runs to its budget; the controller still forces `</think>` on schedule."""
    from runtime.budget import control_tokens

    base = control_tokens(tok)
    never = set(base.never) | set(base.stop)
    if base.think_end is not None:
        never.add(base.think_end)
    return replace(base, stop=(), never=tuple(sorted(never)))


def stage_limits(stage: str, counts: TokenCounts):
    from runtime.budget import StageLimits

    if stage == "reasoning":
        return StageLimits("answer", counts.answer, thinking_budget=counts.thinking, nowait=True)
    return StageLimits(stage, {"hint": counts.hint, "extraction": counts.extraction}[stage])


def expected_new_tokens(stage: str, counts: TokenCounts) -> int:
    if stage == "reasoning":
        return counts.thinking + 1 + counts.answer  # + the forced </think>
    return {"hint": counts.hint, "extraction": counts.extraction}[stage]


class RuntimeStage:
    """`runtime.generation.generate` over a loaded backend model, exactly as the pipeline
    calls it (budget controller, NoWait ids, greedy sampler, streaming decoder)."""

    def __init__(self, lm: Any, tok: Any, role: str) -> None:
        from runtime.generation import Session
        from runtime.nowait import nowait_token_ids

        self.lm, self.tok, self.role = lm, tok, role
        self.session = Session(lm)
        self.control = fixed_length_control(tok)
        self.nowait = nowait_token_ids(tok)

    def run(self, prompt: Sequence[int | None], stage: str, counts: TokenCounts,
            image_embeds: np.ndarray | None) -> dict[str, float]:
        from runtime.budget import BudgetController
        from runtime.generation import generate, run_to_end
        from runtime.sampling import GREEDY, Sampler

        limits = stage_limits(stage, counts)
        self.session.reset()  # a cold prompt every repetition: no KV reuse between reps
        ctl = BudgetController(limits, self.control, self.tok, self.lm.n_vocab,
                               nowait_ids=self.nowait if limits.thinking_budget is not None else None)
        t0 = time.perf_counter()
        gen = run_to_end(generate(self.session, self.tok, prompt, ctl, Sampler(GREEDY, 0), role=self.role,
                                  image=image_embeds, image_key=None))
        total = time.perf_counter() - t0
        first = gen.stats[gen.stages[0]]
        return {"prefill_s": gen.prefill_s, "decode_s": gen.decode_s, "total_s": total,
                "ttft_s": first.ttft_s, "new_tokens": gen.generated}


def ban_ids(tok: Any) -> list[int]:
    """What the raw loops mask: the same ids the fixed-length runtime path never samples."""
    c = fixed_length_control(tok)
    return [i for i in c.never if i < tok.vocab_size]


def _timing(rep: dict[str, float], n_prompt: int, n_new: int) -> dict[str, float]:
    out = {k: float(rep[k]) for k in ("prefill_s", "decode_s", "total_s")}
    out["ttft_s"] = float(rep.get("ttft_s", rep["prefill_s"]))
    out["prefill_tps"] = n_prompt / out["prefill_s"] if out["prefill_s"] > 0 else 0.0
    out["decode_tps"] = n_new / out["decode_s"] if out["decode_s"] > 0 else 0.0
    return out


# ---- the loops section ---------------------------------------------------------------------


@dataclass
class HFSource:
    """How to get the transformers baseline for a role: a loader, or why there is none."""

    load: Callable[[str], Any] | None
    reason: str = ""
    approx_bytes: dict[str, int] = field(default_factory=dict)  # role -> fp32 weight bytes


def _rotate(items: list, k: int) -> list:
    k %= max(1, len(items))
    return items[k:] + items[:k]


def _hf_allowed(src: HFSource | None, role: str, cfg: BenchConfig) -> tuple[bool, str]:
    if "transformers" not in cfg.baselines:
        return False, "not requested"
    if src is None or src.load is None:
        return False, (src.reason if src else "no source checkpoint")
    need = src.approx_bytes.get(role)
    if need:
        import psutil

        free = psutil.virtual_memory().available
        if need > cfg.transformers_max_fraction * free:
            return False, (f"fp32 weights {need / 2**30:.1f} GiB exceed {cfg.transformers_max_fraction:.0%} "
                           f"of the {free / 2**30:.1f} GiB free")
    try:
        import torch  # noqa: F401
        import transformers  # noqa: F401
    except ImportError:
        return False, "torch/transformers not installed"
    return True, ""


def _load_raw(bundle: Bundle, ref: ArtifactRef, ctx: int, threads: int, kv: str):
    entry = bundle.model(ref.role)
    files = ref.artifact.files
    if ref.backend == "llamacpp":
        from benchmarks.raw_llamacpp import RawLlamaCpp

        mmproj = bundle.path(files["mmproj"]) if "mmproj" in files else None
        return RawLlamaCpp(bundle.path(files["model"]), n_ctx=ctx, threads=threads, kv_cache_type=kv, mmproj=mmproj)
    from benchmarks.raw_onnx import RawOnnx

    img = entry.image
    return RawOnnx(bundle.path(files["decoder"]), bundle.path(files["embed"]), threads=threads,
                   num_layers=entry.text.num_layers, num_kv_heads=entry.text.num_kv_heads,
                   head_dim=entry.text.head_dim,
                   vision=bundle.path(files["vision"]) if "vision" in files else None,
                   mean=img.mean if img else (0.5,) * 3, std=img.std if img else (0.5,) * 3)


def run_loops(bundle: Bundle, arts: dict[str, list[ArtifactRef]], cfg: BenchConfig, threads: int,
              hf: HFSource | None, progress: Progress) -> tuple[list[dict], dict[str, str]]:
    """Rows {role, stage, backend, quant, engine, prompt_tokens, new_tokens, reps, summary}."""
    from runtime.backends import load_model
    from runtime.backends.base import BackendOptions
    from runtime.image import load_image, preprocess
    from runtime.tokenizer import BundleTokenizer

    rows: list[dict] = []
    skipped: dict[str, str] = {}
    counts = cfg.counts
    for role, refs in arts.items():
        if not refs:
            continue
        entry = bundle.model(role)
        tok = BundleTokenizer(bundle.path(entry.tokenizer))
        tpi = entry.vision.tokens_per_image if entry.vision else 0
        prompts = stage_prompts(tok if role == "reasoner" else None, tok if role == "perception" else None,
                                tpi, counts)
        longest = max(len(p) for p in prompts.values()) + max(expected_new_tokens(s, counts)
                                                             for s in ROLE_STAGES[role] if s != "vision")
        ctx = min(entry.text.context_length, -(-(longest + 64) // 256) * 256)
        ban = ban_ids(tok)
        pixels = [preprocess(load_image(bench_image(entry.image.size, seed=r)), entry.image)
                  for r in range(cfg.warmup + cfg.repeat)] if entry.image else []

        hf_model = None
        ok, why = _hf_allowed(hf, role, cfg)
        if ok:
            progress(f"loading the transformers baseline for the {role}")
            from benchmarks.hf_baseline import set_threads

            set_threads(threads)
            hf_model = hf.load(role)
        elif "transformers" in cfg.baselines:
            skipped[f"transformers {role}"] = why
            log.info("transformers baseline for the %s skipped: %s", role, why)

        for ai, ref in enumerate(refs):
            progress(f"loops: {role} {ref.label}")
            opts = BackendOptions(threads=threads, context_length=ctx, kv_cache_type=cfg.kv_cache_type)
            lm, vision = load_model(bundle, role, ref.backend, ref.artifact, opts)
            runtime_stage = RuntimeStage(lm, tok, role)
            raw = _load_raw(bundle, ref, ctx, threads, cfg.kv_cache_type) if "raw" in cfg.baselines else None
            raw_name = "raw-llamacpp" if ref.backend == "llamacpp" else "raw-onnxruntime"
            use_hf = hf_model is not None and ai == 0  # the torch path does not depend on the quant
            try:
                embeds = None
                if vision is not None and "vision" in ROLE_STAGES[role]:
                    vrows, embeds = _vision_rows(role, ref, vision, raw, raw_name, hf_model if use_hf else None,
                                                 entry.image, pixels, tpi, cfg)
                    rows += vrows
                for stage in ROLE_STAGES[role]:
                    if stage == "vision":
                        continue
                    prompt = prompts[stage]
                    img_embeds = None
                    if any(t is None for t in prompt):  # the runtime's own image embeddings
                        img_embeds = embeds if embeds is not None else \
                            np.zeros((tpi, entry.text.hidden_size), dtype=np.float32)
                    engines = _stage_engines(runtime_stage, raw, raw_name, hf_model if use_hf else None, prompt,
                                             stage, counts, ban, img_embeds)
                    rows += _stage_rows(role, stage, ref, engines, prompt, expected_new_tokens(stage, counts), cfg)
            finally:
                if raw is not None:
                    raw.close()
                if vision is not None:
                    vision.close()
                lm.close()
        if hf_model is not None:
            hf_model.close()
            del hf_model
            _release_heap()
    return rows, skipped


def _release_heap() -> None:
    """Collect and hand freed heap back to the OS (glibc keeps it otherwise)."""
    import contextlib
    import ctypes
    import gc

    gc.collect()
    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to trim
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _vision_rows(role: str, ref: ArtifactRef, vision: Any, raw: Any, raw_name: str, hf_model: Any, image: Any,
                 pixels: list[np.ndarray], tpi: int, cfg: BenchConfig) -> tuple[list[dict], np.ndarray | None]:
    """Image encoding by each engine; also returns the runtime's embeddings, which every
    engine then feeds in the extraction stage."""
    engines: list[tuple[str, Callable]] = [("runtime", vision.encode)]
    if raw is not None:
        engines.append((raw_name, lambda px: raw.encode_image(px)[1]))
    if hf_model is not None:
        engines.append(("transformers", lambda px: hf_model.encode_image(px, image.mean, image.std)[1]))
    reps: dict[str, list] = {name: [] for name, _ in engines}
    embeds = None
    for r in range(cfg.warmup + cfg.repeat):
        for name, fn in _rotate(engines, r):
            t0 = time.perf_counter()
            out = fn(pixels[r])
            dt = time.perf_counter() - t0
            if name == "runtime":
                embeds = np.asarray(out, dtype=np.float32)
            if r >= cfg.warmup:
                reps[name].append({"total_s": dt})
    return [_row(role, "vision", ref, name, tpi, 0, rr) for name, rr in reps.items()], embeds


def _stage_engines(runtime_stage: RuntimeStage, raw: Any, raw_name: str, hf_model: Any, prompt: list,
                   stage: str, counts: TokenCounts, ban: list[int], img_embeds: np.ndarray | None) -> list:
    n_new = expected_new_tokens(stage, counts)
    engines: list[tuple[str, Callable]] = [("runtime", lambda: runtime_stage.run(prompt, stage, counts, img_embeds))]
    if raw is not None:
        engines.append((raw_name, lambda: raw.generate(prompt, n_new, ban=ban, image_embeds=img_embeds)))
    if hf_model is not None:
        import torch

        t_embeds = torch.from_numpy(img_embeds) if img_embeds is not None else None
        engines.append(("transformers", lambda: hf_model.generate(prompt, n_new, image_embeds=t_embeds)))
    return engines


def _stage_rows(role: str, stage: str, ref: ArtifactRef, engines: list, prompt: list, n_new: int,
                cfg: BenchConfig) -> list[dict]:
    """Repetitions with the engine order rotating, so load bursts hit every engine."""
    reps: dict[str, list] = {name: [] for name, _ in engines}
    for r in range(cfg.warmup + cfg.repeat):
        for name, fn in _rotate(engines, r):
            out = fn()
            got = out.get("new_tokens", len(out.get("ids", [])))
            if got != n_new:
                raise EdgeError(f"{name} generated {got} tokens in the {stage} loop, expected {n_new}")
            if r >= cfg.warmup:
                reps[name].append(_timing(out, len(prompt), n_new))
    return [_row(role, stage, ref, name, len(prompt), n_new, rr) for name, rr in reps.items()]


def _row(role: str, stage: str, ref: ArtifactRef, engine: str, n_prompt: int, n_new: int,
         reps: list[dict]) -> dict:
    return {
        "role": role, "stage": stage, "backend": ref.backend, "format": ref.format, "quant": ref.quant,
        "engine": engine, "prompt_tokens": n_prompt, "new_tokens": n_new,
        "reps": [{k: round(v, 6) for k, v in r.items()} for r in reps],
        "summary": summarize_reps(reps),
    }


def loop_ratios(rows: list[dict]) -> list[dict]:
    """Runtime vs each baseline on the same (role, stage, artifact): time ratios of medians.

    `overhead` = runtime / raw engine (1.02 means the runtime takes 2% longer);
    `speedup` = transformers / runtime (3.0 means the runtime is 3x faster).
    """
    out = []
    by_key: dict[tuple, dict[str, dict]] = {}
    for r in rows:
        by_key.setdefault((r["role"], r["stage"], r["backend"], r["quant"]), {})[r["engine"]] = r
    hf_by_stage = {(r["role"], r["stage"]): r for r in rows if r["engine"] == "transformers"}
    for (role, stage, backend, quant), engines in by_key.items():
        rt = engines.get("runtime")
        if rt is None:
            continue
        med = rt["summary"].get("total_s", {}).get("median")
        for name, row in engines.items():
            if name.startswith("raw-"):
                other = row["summary"].get("total_s", {}).get("median")
                out.append({"role": role, "stage": stage, "backend": backend, "quant": quant, "baseline": name,
                            "metric": "overhead", "value": ratio(med, other),
                            "decode_tps_ratio": ratio(rt["summary"].get("decode_tps", {}).get("median"),
                                                      row["summary"].get("decode_tps", {}).get("median"))})
        hf = hf_by_stage.get((role, stage))
        if hf is not None:
            other = hf["summary"].get("total_s", {}).get("median")
            out.append({"role": role, "stage": stage, "backend": backend, "quant": quant,
                        "baseline": "transformers", "metric": "speedup", "value": ratio(other, med),
                        "decode_tps_ratio": ratio(rt["summary"].get("decode_tps", {}).get("median"),
                                                  hf["summary"].get("decode_tps", {}).get("median"))})
    return out


# ---- the pipeline section ------------------------------------------------------------------


def run_pipeline(bundle: Bundle, pairs: list[tuple[ArtifactRef, ArtifactRef]], cfg: BenchConfig, threads: int,
                 progress: Progress) -> list[dict]:
    """Whole requests per (backend/quant pair, residency), with RSS sampled per stage."""
    from runtime.pipeline import ExtractThink
    from runtime.result import Done, StageFinished, StageStarted

    counts = cfg.counts
    size = bundle.model("perception").image.size
    out = []
    for p, r in pairs:
        for residency in cfg.residency:
            label = f"{p.backend} {p.quant}+{r.quant} {residency}"
            progress(f"pipeline: {label}")
            sampler = RssSampler().start()
            base_rss = sampler.peak()
            t0 = time.perf_counter()
            sampler.mark("load")
            et = ExtractThink.load(bundle, backend=p.backend, quant={"perception": p.quant, "reasoner": r.quant},
                                   threads=threads, residency=residency, kv_cache_type=cfg.kv_cache_type)
            load_s = time.perf_counter() - t0
            sampler.mark("idle")
            reps = []
            try:
                for i in range(cfg.warmup + cfg.repeat):
                    image = bench_image(size, seed=1000 + i)
                    question = QUESTIONS[i % len(QUESTIONS)]
                    rep_t0 = sampler.now()
                    starts: dict[str, float] = {}
                    stage_peak: dict[str, float] = {}
                    result = None
                    w0 = time.perf_counter()
                    for ev in et.stream(image, question, list(OPTIONS), mode="extract-think", thinking=True,
                                        hint=True, hint_budget=counts.hint, extraction_budget=counts.extraction,
                                        thinking_budget=counts.thinking, answer_budget=counts.answer,
                                        sampling="greedy", seed=i):
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
                    if i < cfg.warmup:
                        continue
                    stages = {}
                    for name, st in result.stages.items():
                        d = st.to_dict()
                        d["peak_rss_mb"] = round(stage_peak.get(name, 0.0), 1)
                        stages[name] = d
                    reps.append({"request_s": round(wall, 6), "peak_rss_mb": round(sampler.max_between(rep_t0), 1),
                                 "answer_found": result.answer_found, "stages": stages,
                                 "budget_events": len(result.budget_events)})
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
    return out


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


# ---- everything ----------------------------------------------------------------------------


def run_bench(bundle: Bundle, cfg: BenchConfig, *, workload: str | None = None, hf: HFSource | None = None,
              progress: Progress | None = None,
              on_section: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Run the configured sections on an opened bundle; returns the report as a dict.

    `on_section(report)` is called after each section with the report so far (long runs
    save partial results with it)."""
    progress = progress or (lambda msg: log.info("%s", msg))
    threads = cfg.threads or default_threads()
    arts = select_artifacts(bundle, cfg)
    report: dict[str, Any] = {
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
    # Whole requests first, in a process that has loaded nothing else yet: the memory they
    # show is the runtime's own (freed torch baselines would leave the heap inflated).
    if cfg.pipeline:
        pairs = pipeline_pairs(arts)
        if not pairs:
            report["skipped"]["pipeline"] = "the bundle needs a perception and a reasoner artifact of one backend"
        else:
            report["pipeline"] = run_pipeline(bundle, pairs, cfg, threads, progress)
            report["load_average"]["after_pipeline"] = load_average()
            if on_section is not None:
                on_section(report)
    if cfg.loops:
        rows, skipped = run_loops(bundle, arts, cfg, threads, hf, progress)
        report["loops"] = rows
        report["ratios"] = loop_ratios(rows)
        report["skipped"].update(skipped)
        report["load_average"]["after_loops"] = load_average()
        if report.get("pipeline"):
            report["pipeline_vs_baselines"] = pipeline_equivalents(report["loops"], report["pipeline"])
    report["seconds"] = round(time.perf_counter() - t0, 1)
    report["load_average"]["end"] = load_average()
    return report


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
