"""The loops section of `edge bench`: each stage shape through the runtime and its baselines.

Each model artifact runs the stage shapes it serves (perception: vision, extraction;
reasoner: hint, reasoning = thinking + answer) with a fixed number of new tokens through
(a) the runtime's own path (`benchmarks.stage_runner.RuntimeStage`), (b) the raw engine
(`benchmarks.raw_llamacpp` / `benchmarks.raw_onnx`) and (c) HF transformers `generate` on
the source checkpoint. Engines are interleaved inside every repetition (the order
rotates), so a burst of load from another process hits all of them alike.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import importlib.util
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import psutil

from benchmarks.bench_config import ArtifactRef, BenchConfig
from benchmarks.hf_baseline import set_threads
from benchmarks.inputs import TokenCounts, bench_image, stage_prompts
from benchmarks.raw_llamacpp import RawLlamaCpp
from benchmarks.raw_onnx import RawOnnx
from benchmarks.stage_runner import RuntimeStage, ban_ids, expected_new_tokens, timing
from benchmarks.stats import ratio, summarize_reps
from runtime.backends import load_model
from runtime.backends.base import BackendOptions, TokenizerLike
from runtime.bundle import Bundle
from runtime.errors import EdgeError
from runtime.image import load_image, preprocess
from runtime.manifest import ModelEntry
from runtime.model_slot import bundle_tokenizer
from runtime.progress import Progress, report

log = logging.getLogger(__name__)

ROLE_STAGES = {"perception": ("vision", "extraction"), "reasoner": ("hint", "reasoning")}


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
        free = psutil.virtual_memory().available
        if need > cfg.transformers_max_fraction * free:
            return False, (f"fp32 weights {need / 2**30:.1f} GiB exceed {cfg.transformers_max_fraction:.0%} "
                           f"of the {free / 2**30:.1f} GiB free")
    if any(importlib.util.find_spec(m) is None for m in ("torch", "transformers")):
        return False, "torch/transformers not installed"
    return True, ""


def load_raw(bundle: Bundle, ref: ArtifactRef, ctx: int, threads: int, kv: str) -> RawLlamaCpp | RawOnnx:
    """The hand-written engine loop over `ref`'s files (llama-cpp-python or onnxruntime)."""
    entry = bundle.model(ref.role)
    files = ref.artifact.files
    if ref.backend == "llamacpp":
        mmproj = bundle.path(files["mmproj"]) if "mmproj" in files else None
        return RawLlamaCpp(bundle.path(files["model"]), n_ctx=ctx, threads=threads, kv_cache_type=kv, mmproj=mmproj)
    img = entry.image
    return RawOnnx(bundle.path(files["decoder"]), bundle.path(files["embed"]), threads=threads,
                   num_layers=entry.text.num_layers, num_kv_heads=entry.text.num_kv_heads,
                   head_dim=entry.text.head_dim,
                   vision=bundle.path(files["vision"]) if "vision" in files else None,
                   mean=img.mean if img else (0.5,) * 3, std=img.std if img else (0.5,) * 3)


@dataclass
class _RoleInputs:
    """What every artifact of one role runs: the same prompts, images, context and bans."""

    entry: ModelEntry
    tok: TokenizerLike
    tokens_per_image: int
    prompts: dict[str, list]
    context: int
    ban: list[int]
    pixels: list[np.ndarray]


def _role_inputs(bundle: Bundle, role: str, cfg: BenchConfig) -> _RoleInputs:
    counts = cfg.counts
    entry = bundle.model(role)
    tok = bundle_tokenizer(bundle, entry)  # a tokenizer.json, or a composed model's GGUF vocabulary
    tpi = entry.vision.tokens_per_image if entry.vision else 0
    prompts = stage_prompts(tok if role == "reasoner" else None, tok if role == "perception" else None,
                            tpi, counts)
    longest = max(len(p) for p in prompts.values()) + max(expected_new_tokens(s, counts)
                                                         for s in ROLE_STAGES[role] if s != "vision")
    ctx = min(entry.text.context_length, -(-(longest + 64) // 256) * 256)
    pixels = [preprocess(load_image(bench_image(entry.image.size, seed=r)), entry.image)
              for r in range(cfg.warmup + cfg.repeat)] if entry.image else []
    return _RoleInputs(entry, tok, tpi, prompts, ctx, ban_ids(tok), pixels)


def run_loops(bundle: Bundle, arts: dict[str, list[ArtifactRef]], cfg: BenchConfig, threads: int,
              hf: HFSource | None, progress: Progress | None = None) -> tuple[list[dict], dict[str, str]]:
    """Rows {role, stage, backend, quant, engine, prompt_tokens, new_tokens, reps, summary},
    and the baselines skipped (with why)."""
    rows: list[dict] = []
    skipped: dict[str, str] = {}
    total = sum(len(refs) for refs in arts.values()) or 1
    done = 0
    for role, refs in arts.items():
        if not refs:
            continue
        inputs = _role_inputs(bundle, role, cfg)
        hf_model = None
        ok, why = _hf_allowed(hf, role, cfg)
        if ok:
            report(progress, f"loading the transformers baseline for the {role}", done / total)
            set_threads(threads)
            hf_model = hf.load(role)
        elif "transformers" in cfg.baselines:
            skipped[f"transformers {role}"] = why
            log.info("transformers baseline for the %s skipped: %s", role, why)
        for ai, ref in enumerate(refs):
            report(progress, f"loops: {role} {ref.label}", done / total)
            # the torch path does not depend on the quantization: measured with the first one
            rows += _artifact_rows(bundle, ref, inputs, cfg, threads, hf_model if ai == 0 else None)
            done += 1
        if hf_model is not None:
            hf_model.close()
            del hf_model
            _release_heap()
    report(progress, "loops", 1.0)
    return rows, skipped


def _artifact_rows(bundle: Bundle, ref: ArtifactRef, inputs: _RoleInputs, cfg: BenchConfig, threads: int,
                   hf_model: Any) -> list[dict]:
    """Every stage shape of one artifact, through the runtime and each baseline."""
    role, counts = ref.role, cfg.counts
    opts = BackendOptions(threads=threads, context_length=inputs.context, kv_cache_type=cfg.kv_cache_type)
    lm, vision = load_model(bundle, role, ref.backend, ref.artifact, opts)
    runtime_stage = RuntimeStage(lm, inputs.tok, role)
    raw = load_raw(bundle, ref, inputs.context, threads, cfg.kv_cache_type) if "raw" in cfg.baselines else None
    raw_name = "raw-llamacpp" if ref.backend == "llamacpp" else "raw-onnxruntime"
    rows: list[dict] = []
    try:
        embeds = None
        if vision is not None and "vision" in ROLE_STAGES[role]:
            vrows, embeds = _vision_rows(role, ref, vision, raw, raw_name, hf_model, inputs.entry.image,
                                         inputs.pixels, inputs.tokens_per_image, cfg)
            rows += vrows
        for stage in ROLE_STAGES[role]:
            if stage == "vision":
                continue
            prompt = inputs.prompts[stage]
            img_embeds = None
            if any(t is None for t in prompt):  # the runtime's own image embeddings
                img_embeds = embeds if embeds is not None else \
                    np.zeros((inputs.tokens_per_image, inputs.entry.text.hidden_size), dtype=np.float32)
            engines = _stage_engines(runtime_stage, raw, raw_name, hf_model, prompt, stage, counts, inputs.ban,
                                     img_embeds)
            rows += _stage_rows(role, stage, ref, engines, prompt, expected_new_tokens(stage, counts), cfg)
    finally:
        if raw is not None:
            raw.close()
        if vision is not None:
            vision.close()
        lm.close()
    return rows


def _release_heap() -> None:
    """Collect and hand freed heap back to the OS (glibc keeps it otherwise)."""
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
        import torch  # only when the transformers baseline runs: torch is an optional extra

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
                reps[name].append(timing(out, len(prompt), n_new))
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
