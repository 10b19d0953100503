"""`edge bench --input-modes single,anyres`: what each image input mode costs, per image size.

For each mode (`runtime.image_layout`: one 384 px view, or LLaVA-OneVision's base view +
tiles with `image_newline`) and each image size (default a 384 x 384 image and a 4:3
photo, 640 x 480), one request runs the perception side for real: the vision encoder
once per view, then the extraction stage (its prefill holds the image tokens) to a fixed
number of tokens. Reported per mode and size: views, image tokens, `vision_s` (encoder
and merge), `prefill_s` (extraction prefill), `image_side_s` (their sum) and
`perception_s` (vision + the whole extraction stage), medians over repetitions, model
loads left out. The reasoner answers in one token without thinking (its time is not
reported). Modes are interleaved per repetition, each loaded afresh (sequential
residency, no caches: a new picture every repetition), so machine load drifts hit both
alike; ratios are anyres over single, of medians, per size.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

from benchmarks.compare import image_side_s
from benchmarks.inputs import FOCUS, OPTIONS, QUESTION, TokenCounts, bench_image
from benchmarks.machine import load_average
from benchmarks.stats import ratio, summarize
from runtime.bundle import Bundle
from runtime.errors import InputError
from runtime.image_layout import INPUT_MODES, plan_image
from runtime.pipeline import ExtractThink
from runtime.progress import Progress, report

DEFAULT_SIZES: tuple[tuple[int, int], ...] = ((384, 384), (640, 480))
MEASURES = ("vision_s", "prefill_s", "image_side_s", "perception_s")


def parse_modes(text: str) -> tuple[str, ...]:
    """'single,anyres' -> ('single', 'anyres'); each mode once, order kept."""
    modes = tuple(dict.fromkeys(m.strip() for m in text.split(",") if m.strip()))
    bad = [m for m in modes if m not in INPUT_MODES]
    if not modes or bad:
        raise InputError(f"--input-modes takes a comma-separated list of {', '.join(INPUT_MODES)}, got {text!r}")
    return modes


def parse_sizes(text: str) -> tuple[tuple[int, int], ...]:
    """'384x384,640x480' -> ((384, 384), (640, 480)) as (width, height)."""
    out = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        w, sep, h = part.lower().partition("x")
        if not sep or not w.isdigit() or not h.isdigit() or not (0 < int(w) <= 8192 and 0 < int(h) <= 8192):
            raise InputError(f"bad image size {part!r}: use WIDTHxHEIGHT, e.g. 640x480 (1..8192 px a side)")
        out.append((int(w), int(h)))
    if not out:
        raise InputError("--image-sizes is empty")
    return tuple(dict.fromkeys(out))


def photo(size: tuple[int, int], seed: int) -> np.ndarray:
    """A deterministic RGB picture of `size` (width, height), different per seed."""
    w, h = size
    return np.ascontiguousarray(bench_image(max(w, h), seed=seed)[:h, :w])


@dataclass(frozen=True)
class ModesConfig:
    threads: int
    counts: TokenCounts  # extraction: tokens the perception stage writes
    modes: tuple[str, ...] = INPUT_MODES
    sizes: tuple[tuple[int, int], ...] = DEFAULT_SIZES
    repeat: int = 3
    warmup: int = 1
    backend: str = "auto"
    quant: str | None = None
    max_image_tokens: int | None = None  # anyres's token cap (fewer tiles)


def _label(size: tuple[int, int]) -> str:
    return f"{size[0]}x{size[1]}"


def _request(et: ExtractThink, size: tuple[int, int], counts: TokenCounts, seed: int) -> dict[str, Any]:
    r = et.answer(photo(size, seed), QUESTION, list(OPTIONS), focus=FOCUS, thinking=False,
                  extraction_budget=counts.extraction, answer_budget=1, sampling="greedy", seed=seed)
    vision, extraction = r.stages["vision"], r.stages["extraction"]
    side = image_side_s(r.stages)
    assert et.image_layout is not None
    return {"views": plan_image(et.image_layout, size).views, "image_tokens": vision.tokens,
            "vision_s": side - extraction.prefill_s, "prefill_s": extraction.prefill_s, "image_side_s": side,
            "perception_s": side - extraction.prefill_s + max(extraction.seconds - extraction.load_s, 0.0),
            "extraction_prompt_tokens": extraction.prompt_tokens, "extraction_tokens": extraction.tokens,
            "cached": vision.cached}


def run_input_modes(bundle: Bundle, cfg: ModesConfig, progress: Progress | None = None) -> dict[str, Any]:
    """The `input_modes` object of `edge bench --input-modes` (see the module docstring)."""
    quant = {"perception": cfg.quant, "reasoner": cfg.quant} if cfg.quant else None
    runs: dict[str, dict[str, list[dict]]] = {m: {_label(s): [] for s in cfg.sizes} for m in cfg.modes}
    backends: dict[str, str] = {}
    total = cfg.warmup + cfg.repeat
    for i in range(total):
        for k, mode in enumerate(cfg.modes):
            report(progress, f"input modes: {mode} {i + 1}/{total}", (i + k / len(cfg.modes)) / total)
            et = ExtractThink.load(bundle, backend=cfg.backend, quant=quant, threads=cfg.threads,
                                   residency="sequential", prefix_cache_mb=0, speed_cache=False, input_mode=mode,
                                   max_image_tokens=cfg.max_image_tokens if mode == "anyres" else None)
            try:
                backends = et.backends()
                for j, size in enumerate(cfg.sizes):
                    row = _request(et, size, cfg.counts, seed=3000 + 100 * i + j)
                    if i >= cfg.warmup:
                        runs[mode][_label(size)].append(row)
            finally:
                et.close()
    report(progress, "input modes", 1.0)
    return _summarize(runs, cfg, backends, bundle.manifest.name)


def _summarize(runs: dict[str, dict[str, list[dict]]], cfg: ModesConfig, backends: dict[str, str],
               name: str) -> dict[str, Any]:
    rows = []
    for mode, by_size in runs.items():
        for label, reps in by_size.items():
            row: dict[str, Any] = {"mode": mode, "image": label, "views": reps[0]["views"],
                                   "image_tokens": reps[0]["image_tokens"],
                                   "extraction_tokens": summarize(r["extraction_tokens"] for r in reps)["median"]}
            row.update({k: summarize(r[k] for r in reps)["median"] for k in MEASURES})
            rows.append(row)
    ratios: dict[str, dict[str, float | None]] = {}
    if {"single", "anyres"} <= set(cfg.modes):
        by = {(r["mode"], r["image"]): r for r in rows}
        for size in cfg.sizes:
            s, a = by[("single", _label(size))], by[("anyres", _label(size))]
            ratios[_label(size)] = {k: ratio(a[k], s[k]) for k in ("image_tokens", *MEASURES)}
    settings = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in ("counts", "sizes")}
    settings.update(sizes=[_label(s) for s in cfg.sizes], tokens=cfg.counts.to_dict(), backends=backends,
                    residency="sequential", bundle=name)
    return {"rows": rows, "ratios_anyres_over_single": ratios, "settings": settings, "load_average": load_average(),
            "runs": runs}


def to_markdown(result: dict[str, Any]) -> str:
    def f(v: Any, digits: int = 3) -> str:
        return "-" if v is None else f"{v:.{digits}f}"

    lines = ["| mode | image | views | image tokens | vision s | prefill s | image side s | perception s |",
             "|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        lines.append(f"| {r['mode']} | {r['image']} | {r['views']} | {r['image_tokens']:,} | {f(r['vision_s'])} | "
                     f"{f(r['prefill_s'])} | {f(r['image_side_s'])} | {f(r['perception_s'])} |")
    for label, rat in result["ratios_anyres_over_single"].items():
        lines.append(f"\n{label}, anyres / single: " + ", ".join(f"{k} {f(v, 2)}" for k, v in rat.items()))
    s = result["settings"]
    lines.append(f"\n{s['bundle']}, backends {s['backends']}, {s['threads']} threads, {s['repeat']} repetitions "
                 f"(medians), extraction {s['tokens']['extraction']} tokens, load average {result['load_average']}")
    return "\n".join(lines)
