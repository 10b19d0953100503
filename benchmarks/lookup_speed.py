"""Prompt-lookup decoding measured on a bundle: acceptance and the reasoning stage's speed-up.

One pipeline, loaded once; every round runs each item greedily with lookup off and on
(`stream(lookup=...)`), the order alternating per round so machine-load drifts hit both
alike. Reported:

- `acceptance`: accepted / drafted draft tokens over the reasoning stages (thinking and
  answer) of the measured rounds;
- `reasoning_speedup`: the median over rounds of the reasoning stages' decode seconds
  (thinking and answer, prefill left out: lookup does not touch it) with lookup off,
  divided by the same with lookup on (> 1: lookup is faster);
- `identical`: whether every greedy output (hint, extraction, thinking, answer) was the
  same with lookup on and off (it must be).

Only meaningful on trained weights: random weights almost never repeat their prompt, so
`edge bench --compare` adds it only for bundles whose models are not random
(`trained_weights`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from benchmarks.inputs import OPTIONS, QUESTIONS, TokenCounts, bench_image
from benchmarks.machine import load_average
from benchmarks.stats import ratio, summarize
from runtime.bundle import Bundle
from runtime.manifest import Manifest, example_options
from runtime.pipeline import ExtractThink
from runtime.progress import Progress, report

REASONING = ("thinking", "answer")


@dataclass(frozen=True)
class LookupBenchConfig:
    backend: str = "llamacpp"
    lookup: int = 4  # draft tokens per step when on
    repeat: int = 5
    warmup: int = 1
    threads: int = 1
    counts: TokenCounts | None = None  # stage budgets (None: the bundle's)
    # Measurement only: verify drafts even where batches are not invariant (int8 ONNX), to
    # see what lookup would gain there; `identical` then says whether outputs changed.
    force_batches: bool = False


def trained_weights(manifest: Manifest) -> bool:
    """False for the benchmark workloads' random-weight bundles (`benchmarks.workloads`
    names their sources "random ...")."""
    return not any((entry.source or "").startswith("random") for entry in manifest.models.values())


def bench_items(bundle: Bundle) -> list[tuple[Any, str, list[str] | None]]:
    """(image, question, options): the bundle's examples, else the benchmark's questions."""
    items = []
    for ex in bundle.manifest.examples:
        if "image" in ex and "question" in ex:
            items.append((str(bundle.path(ex["image"])), ex["question"], list(example_options(ex)) or None))
    if items:
        return items
    size = bundle.model("perception").image.size if "perception" in bundle.manifest.models else 96
    return [(bench_image(size, seed=7), q, list(OPTIONS)) for q in QUESTIONS[:3]]


def _reasoning(result) -> dict[str, float]:
    stages = [result.stages[s] for s in REASONING if s in result.stages]
    return {"decode_s": sum(s.seconds - s.prefill_s for s in stages),
            "stage_s": sum(s.seconds for s in stages),
            "tokens": sum(s.tokens for s in stages),
            "drafted": sum(s.drafted for s in stages), "accepted": sum(s.accepted for s in stages)}


def _outputs(result) -> tuple:
    return (result.hint, result.extraction, result.thinking, result.answer_text)


def measure_lookup(bundle: Bundle, cfg: LookupBenchConfig, progress: Progress | None = None) -> dict[str, Any]:
    """The `comparison.lookup` object: {"acceptance", "reasoning_speedup", "bundle", ...}."""
    items = bench_items(bundle)
    settings = (0, cfg.lookup)
    rounds: dict[int, list[dict[str, float]]] = {k: [] for k in settings}
    identical = True
    load_before = load_average()
    total = cfg.warmup + cfg.repeat
    budgets = {}
    if cfg.counts is not None:
        c = cfg.counts
        budgets = {"hint_budget": c.hint, "extraction_budget": c.extraction, "thinking_budget": c.thinking,
                   "answer_budget": c.answer}
    with ExtractThink.load(bundle, backend=cfg.backend, threads=cfg.threads, lookup=0,
                           residency="resident" if cfg.force_batches else "auto") as et:
        if cfg.force_batches:
            for role in et.roles:
                et._slot(role).lm.batch_invariant = True  # resident: these objects serve every request
        for r in range(total):
            report(progress, f"lookup {r + 1}/{total}", r / total)
            sums = {k: {"decode_s": 0.0, "stage_s": 0.0, "tokens": 0, "drafted": 0, "accepted": 0} for k in settings}
            for image, question, options in items:
                seen = {}
                for k in settings if r % 2 == 0 else settings[::-1]:
                    res = et.answer(image, question, options, sampling="greedy", lookup=k, **budgets)
                    seen[k] = _outputs(res)
                    for key, v in _reasoning(res).items():
                        sums[k][key] += v
                identical &= len(set(seen.values())) == 1
            if r >= cfg.warmup:
                for k in settings:
                    rounds[k].append(sums[k])
    report(progress, "lookup", 1.0)
    off, on = rounds[0], rounds[cfg.lookup]
    drafted = sum(x["drafted"] for x in on)
    accepted = sum(x["accepted"] for x in on)

    def med(rows: list[dict[str, float]], key: str) -> float | None:
        return summarize(x[key] for x in rows).get("median")

    return {
        "acceptance": accepted / drafted if drafted else None,
        "reasoning_speedup": ratio(med(off, "decode_s"), med(on, "decode_s")),
        "reasoning_stage_speedup": ratio(med(off, "stage_s"), med(on, "stage_s")),
        "bundle": bundle.manifest.name,
        "backend": cfg.backend,
        "lookup": cfg.lookup,
        "drafted": drafted,
        "accepted": accepted,
        "tokens": sum(x["tokens"] for x in on),
        "accepted_per_token": accepted / max(sum(x["tokens"] for x in on), 1),
        "decode_s": {"off": summarize(x["decode_s"] for x in off), "on": summarize(x["decode_s"] for x in on)},
        "identical": identical,
        "forced_batches": cfg.force_batches,
        "items": len(items),
        "repeat": cfg.repeat,
        "threads": cfg.threads,
        "load_average": {"before": load_before, "after": load_average()},
    }
