"""`edge bench --compare`: the plain pipeline against the fast one, interleaved in one run.

- plain: the bundle as exported (its mmproj: F16, or F32 beside F32 files), no
  image-prefix cache;
- fast: the same bundle with a Q8_0 mmproj (written from the F16 one,
  `export.gguf.mmproj_requant`), the image-prefix cache on, LLaVA-OneVision's 2x2 pooling
  of the image tokens (729 -> 196 at 27 x 27; training-free, its accuracy cost is in
  docs/runtime.md), contexts sized per model to the request instead of the 4,096-token
  default (each context's KV cache is allocated whole: 448 MiB at Qwen3-1.7B for 4,096),
  a q8_0 KV cache (half of F16's memory; llama.cpp runs it inside flash attention), the
  reasoner's prompt-start states kept on disk (`runtime.prompt_store`, beside the variant's
  folder like a user's cache: a later run, or the warm-up, finds them; the report says
  whether the timed runs did: `settings.fast.prompt_cache_primed`); the
  vision encoder on ONNX Runtime (`vision_backend="onnx"`) when the perception model has an
  ONNX vision graph: the bundle's own, or for a workload an int8 graph of the same shapes
  that `edge bench` builds once and adds as a vision-only artifact;
- fast, second question: another question about the same image through the fast
  pipeline (its extraction cache is cleared first, so the perception stage really runs:
  a new focus would miss it too);
- lookup (bundles with trained weights only, `benchmarks.lookup_speed`): prompt-lookup
  decoding's acceptance and reasoning speed-up, lookup on against off in one process. Not
  part of `fast`: it is off by default (it does not pay on the measured bundles).

Both pipelines run on llama.cpp with sequential residency (the models take turns), one
loaded at a time, interleaved per repetition so machine load drifts hit both alike; each
measured run is a fresh process, so a pipeline's peak RSS is its own.
`image_side_s` = vision seconds + extraction prefill seconds, model swaps left out (they
are reported as `load_s`). Ratios are fast (or second question) over plain, of medians.
"""

from __future__ import annotations

import dataclasses
import math
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.inputs import OPTIONS, QUESTIONS, TokenCounts, bench_image
from benchmarks.lookup_speed import LookupBenchConfig, measure_lookup, trained_weights
from benchmarks.machine import load_average
from benchmarks.rss import RssSampler
from benchmarks.stats import ratio, summarize
from benchmarks.variants import bundle_variant
from export.compose import place
from export.gguf.mmproj_parity import compare_mmproj
from export.gguf.mmproj_requant import file_quant, requantize_mmproj
from runtime.bundle import Bundle, open_bundle
from runtime.errors import BundleError
from runtime.image_pool import pooled_side
from runtime.manifest import Artifact, Budgets, Manifest
from runtime.model_slot import context_need
from runtime.pipeline import ExtractThink
from runtime.progress import Progress, report
from runtime.prompts import question_block
from runtime.tokenizer import BundleTokenizer

PLAIN = {"mmproj": "as exported", "prefix_cache_mb": 0}
FAST = {"mmproj": "q8_0", "prefix_cache_mb": 256, "pool": 2, "context": "sized to the request, per model",
        "prompt_cache": "on disk, kept across runs", "kv_cache_type": "q8_0"}
PROMPT_CACHE_SUFFIX = "-prompt-cache"  # beside the fast variant's folder: kept like a user's cache between runs


def pooled_tokens(tokens_per_image: int, stride: int) -> int:
    """Image tokens after LLaVA-OV's bilinear pooling of the square grid."""
    return pooled_side(math.isqrt(tokens_per_image), stride) ** 2


def question_tokens(bundle: Bundle, questions: tuple[str, ...] = QUESTIONS[:2]) -> int:
    """The most tokens any of the benchmark's questions takes with its options, in the
    reasoner's tokenizer."""
    tok = BundleTokenizer(bundle.path(bundle.model("reasoner").tokenizer))
    return max(len(tok.encode_plain(question_block(q, OPTIONS))) for q in questions)


def request_context(bundle: Bundle, image_tokens: int | None, counts: TokenCounts) -> dict[str, int]:
    """Per model, a context that holds one benchmark request with these token counts,
    rounded up to 256 (llama.cpp's KV cache granularity): the runtime's own need per role
    (`context_need`, the reasoner's with the benchmark's questions instead of its 768-token
    allowance) without the 4,096-token floor."""
    budgets = Budgets(hint=counts.hint, extraction=counts.extraction, thinking=counts.thinking, answer=counts.answer)
    qtok = question_tokens(bundle) if "reasoner" in bundle.manifest.models else None
    return {role: -(-context_need(role, bundle.model(role), budgets, image_tokens if role == "perception" else None,
                                  question_tokens=qtok) // 256) * 256
            for role in bundle.manifest.models}


@dataclass(frozen=True)
class CompareConfig:
    threads: int
    counts: TokenCounts
    repeat: int = 3
    warmup: int = 1
    quant: str | None = None  # the GGUF text quantization (None: the bundle's choice)


def _gguf_perception(bundle: Bundle):
    for art in bundle.manifest.models["perception"].artifacts if "perception" in bundle.manifest.models else ():
        if art.format == "gguf" and "mmproj" in art.files:
            return art
    raise BundleError("--compare needs a bundle with a GGUF perception model and its mmproj")


def has_onnx_vision(bundle: Bundle) -> bool:
    """Whether the perception model has an ONNX vision graph (the fast pipeline runs it)."""
    entry = bundle.manifest.models.get("perception")
    return entry is not None and any(a.format == "onnx" and "vision" in a.files for a in entry.artifacts)


def mmproj_variant(bundle: Bundle, quant: str, dst: Path, vision_graph: Path | None = None) -> Path:
    """A copy of `bundle` at `dst` (files hard-linked where possible) whose GGUF perception
    artifacts use an mmproj requantized to `quant`; reused when already there.
    `vision_graph`: an ONNX vision graph of the same shapes (int8), added as a vision-only
    ONNX artifact, so the vision encoder can run on ONNX Runtime beside llama.cpp."""

    def change(tmp: Path, m: Manifest) -> Manifest:
        entry = m.models["perception"]
        arts = []
        for art in entry.artifacts:
            if art.format == "gguf" and "mmproj" in art.files:
                new = f"perception-mmproj-{quant}.gguf"
                if not (tmp / new).is_file():
                    requantize_mmproj(bundle.path(art.files["mmproj"]), tmp / new, quant)
                art = dataclasses.replace(art, files={**art.files, "mmproj": new})
            arts.append(art)
        if vision_graph is not None:
            rel = "perception-vision-int8.onnx"
            if not (tmp / rel).is_file():
                place(vision_graph, tmp / rel)
            arts.append(Artifact(format="onnx", quant="int8", files={"vision": rel}, vision_quant="int8"))
        models = {**m.models, "perception": dataclasses.replace(entry, artifacts=tuple(arts))}
        used = {rel for e in models.values() for a in e.artifacts for rel in a.files.values()}
        for rel in m.files:  # the replaced mmproj, unless another artifact still uses it
            if rel.startswith("perception-mmproj-") and rel not in used:
                (tmp / rel).unlink()
        return dataclasses.replace(m, models=models, name=f"{m.name}-mmproj-{quant}")

    return bundle_variant(bundle, dst, change)


def image_side_s(stages: dict[str, Any]) -> float:
    vision = stages.get("vision")
    extraction = stages.get("extraction")
    side = 0.0
    if vision is not None:
        side += max(vision.seconds - vision.load_s, 0.0)
    if extraction is not None:
        side += extraction.prefill_s
    return side


def _request(et: ExtractThink, image, question: str, counts: TokenCounts, seed: int, sampler: RssSampler) -> dict:
    t0 = sampler.now()
    r = et.answer(image, question, list(OPTIONS), hint_budget=counts.hint, extraction_budget=counts.extraction,
                  thinking_budget=counts.thinking, answer_budget=counts.answer, sampling="greedy", seed=seed)
    sampler.sample()
    return {"request_s": r.seconds, "image_side_s": image_side_s(r.stages),
            "load_s": sum(s.load_s for s in r.stages.values()),
            "peak_rss_mb": sampler.max_between(t0), "prefix_hit": r.cache_hits.get("prefix"),
            "reasoner_prefix_hit": r.cache_hits.get("reasoner_prefix"),
            "vision_s": r.stages["vision"].seconds - r.stages["vision"].load_s if "vision" in r.stages else None}


def _measure(job: dict[str, Any]) -> tuple[dict, dict | None]:
    """One pipeline's request (and, for the fast one, a second question on the same image),
    loaded and measured in the process that calls it."""
    counts = TokenCounts(**job["counts"])
    img = bench_image(job["size"], seed=2000 + job["seed"])
    sampler = RssSampler().start()
    et = ExtractThink.load(job["root"], backend="llamacpp", residency="sequential", verify="size", **job["load"])
    try:
        first = _request(et, img, QUESTIONS[0], counts, job["seed"], sampler)
        second = None
        if job["second"]:
            et.extraction_cache.clear()  # another focus would miss it: measure the prefix path
            second = _request(et, img, QUESTIONS[1], counts, job["seed"], sampler)
    finally:
        et.close()
        sampler.stop()
    return first, second


def _in_own_process(job: dict[str, Any]) -> tuple[dict, dict | None]:
    """`_measure` in a fresh process: a pipeline's peak RSS is its own, not what the other
    pipeline left in a shared process (~50 MiB of heap and library state at paper scale)."""
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(_measure, job).result()


def run_compare(bundle: Bundle, variant_dir: Path, cfg: CompareConfig, progress: Progress | None = None,
                vision_graph: Path | None = None) -> dict:
    """The `comparison` object of `edge bench --compare` (see the module docstring);
    `vision_graph`: an ONNX vision graph for the fast pipeline when the bundle has none."""
    art = _gguf_perception(bundle)
    report(progress, "compare: writing the q8_0 mmproj", 0.0)
    fast_root = mmproj_variant(bundle, FAST["mmproj"], variant_dir, vision_graph)
    fast_bundle = open_bundle(fast_root, verify="size")
    size = bundle.model("perception").image.size
    plain_mm = bundle.path(art.files["mmproj"])
    fast_mm = fast_bundle.path(_gguf_perception(fast_bundle).files["mmproj"])
    parity = compare_mmproj(bundle.path(art.files["model"]), plain_mm, fast_mm, bench_image(size, seed=7))
    quant = {"perception": cfg.quant, "reasoner": cfg.quant} if cfg.quant else None
    runs: dict[str, list[dict]] = {"plain": [], "fast": [], "fast_second_question": []}
    total = cfg.warmup + cfg.repeat
    vision = bundle.model("perception").vision
    fast_tokens = pooled_tokens(vision.tokens_per_image, FAST["pool"]) if vision is not None else None
    prompt_cache = variant_dir.with_name(variant_dir.name + PROMPT_CACHE_SUFFIX)
    primed = any(prompt_cache.glob("*.npz"))
    fast_load = {"prefix_cache_mb": FAST["prefix_cache_mb"], "image_tokens": fast_tokens,
                 "context_length": request_context(bundle, fast_tokens, cfg.counts),
                 "vision_backend": "onnx" if has_onnx_vision(fast_bundle) else None, "prompt_cache": prompt_cache,
                 "kv_cache_type": FAST["kv_cache_type"]}
    for i in range(total):
        for name, b, load_kw in (("plain", bundle, {"prefix_cache_mb": PLAIN["prefix_cache_mb"]}),
                                 ("fast", fast_bundle, fast_load)):
            report(progress, f"compare: {name} {i + 1}/{total}", (i + (name == "fast") / 2) / total)
            job = {"root": str(b.root), "load": {**load_kw, "quant": quant, "threads": cfg.threads}, "size": size,
                   "seed": i, "counts": dataclasses.asdict(cfg.counts), "second": name == "fast"}
            first, second = _in_own_process(job)
            if i >= cfg.warmup:
                runs[name].append(first)
                if second is not None:
                    runs["fast_second_question"].append(second)
    out = _summarize(runs, parity, plain_mm, fast_mm, cfg, bundle.manifest.name)
    if trained_weights(bundle.manifest):  # random weights never copy their prompt: nothing to measure
        out["lookup"] = measure_lookup(bundle, LookupBenchConfig(
            backend="llamacpp", threads=cfg.threads, repeat=cfg.repeat, warmup=cfg.warmup, counts=cfg.counts),
            progress)
    report(progress, "compare", 1.0)
    out["settings"]["fast"].update(image_tokens=fast_tokens, context_length=fast_load["context_length"],
                                   prompt_cache_primed=primed or cfg.warmup > 0,
                                   vision=("onnx graph (onnxruntime)" if fast_load["vision_backend"]
                                           else "mmproj (llama.cpp clip)"))
    out["settings"]["plain"].update(image_tokens=vision.tokens_per_image if vision is not None else None)
    return out


def _median(rows: list[dict], key: str) -> float | None:
    return summarize(r[key] for r in rows if r.get(key) is not None).get("median")


def _summarize(runs: dict[str, list[dict]], parity: dict, plain_mm: Path, fast_mm: Path, cfg: CompareConfig,
               name: str) -> dict:
    out: dict[str, Any] = {}
    for key in ("plain", "fast"):
        out[key] = {"request_s": _median(runs[key], "request_s"), "image_side_s": _median(runs[key], "image_side_s"),
                    "sequential_peak_rss_mb": _median(runs[key], "peak_rss_mb"),
                    "vision_s": _median(runs[key], "vision_s"), "load_s": _median(runs[key], "load_s")}
    second = runs["fast_second_question"]
    out["fast_second_question"] = {"request_s": _median(second, "request_s"),
                                   "image_side_s": _median(second, "image_side_s"),
                                   "prefix_hits": sum(1 for r in second if r["prefix_hit"]), "n": len(second)}
    plain, fast = out["plain"], out["fast"]
    out["ratios"] = {
        "request": ratio(fast["request_s"], plain["request_s"]),
        "image_side": ratio(fast["image_side_s"], plain["image_side_s"]),
        "second_question_request": ratio(out["fast_second_question"]["request_s"], plain["request_s"]),
        "second_question_image_side": ratio(out["fast_second_question"]["image_side_s"], plain["image_side_s"]),
        "sequential_peak_rss": ratio(fast["sequential_peak_rss_mb"], plain["sequential_peak_rss_mb"]),
    }
    out["mmproj"] = {"plain": file_quant(plain_mm), "fast": file_quant(fast_mm),
                     "file_mb": {"plain": plain_mm.stat().st_size / 2**20, "fast": fast_mm.stat().st_size / 2**20},
                     "parity_vs_plain": parity}
    out["settings"] = {"plain": {**PLAIN, "mmproj": file_quant(plain_mm)}, "fast": dict(FAST), "backend": "llamacpp", "residency": "sequential",
                       "threads": cfg.threads, "repeat": cfg.repeat, "warmup": cfg.warmup,
                       "tokens": dataclasses.asdict(cfg.counts), "bundle": name}
    out["load_average"] = load_average()
    out["runs"] = runs
    return out


def to_markdown(comparison: dict) -> str:
    c = comparison

    def f(v: Any, digits: int = 3) -> str:
        return "-" if v is None else f"{v:.{digits}f}"

    rows = ["| | request s | image side s | sequential peak RSS MiB |", "|---|---|---|---|"]
    for key in ("plain", "fast"):
        rows.append(f"| {key} | {f(c[key]['request_s'])} | {f(c[key]['image_side_s'], 4)} | "
                    f"{f(c[key]['sequential_peak_rss_mb'], 0)} |")
    s = c["fast_second_question"]
    rows.append(f"| fast, second question | {f(s['request_s'])} | {f(s['image_side_s'], 4)} | |")
    r = c["ratios"]
    rows.append("")
    rows.append("ratios (fast / plain): " + ", ".join(f"{k} {f(v)}" for k, v in r.items()))
    mm = c["mmproj"]
    rows.append(f"mmproj {mm['plain']} {mm['file_mb']['plain']:.2f} MiB -> {mm['fast']} {mm['file_mb']['fast']:.2f} "
                f"MiB; vs {mm['plain']}: " + ", ".join(f"{k} {v:.4g}" for k, v in mm["parity_vs_plain"].items()))
    lk = c.get("lookup")
    if lk is not None:
        rows.append(f"prompt lookup (k={lk['lookup']}, {lk['backend']}, bundle {lk['bundle']}): acceptance "
                    f"{f(lk['acceptance'])}, reasoning speed-up {f(lk['reasoning_speedup'])}, "
                    f"greedy outputs identical: {lk['identical']}")
    return "\n".join(rows)
