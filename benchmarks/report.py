"""A benchmark report (the dict `run_bench` returns) as markdown, and writing it out.

`write_outputs` writes `bench.json`, `bench.md` and the PNG plots into one folder, each
atomically, and returns their paths.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from benchmarks.inputs import PIPELINE_STAGES
from benchmarks.machine import describe
from benchmarks.plots import bench_plots
from runtime.atomic import atomic_write_text


def _f(x: float | None, digits: int = 2) -> str:
    """Readable numbers: whole above 100, `digits` decimals above 1, 3 significant below."""
    if x is None:
        return "–"
    if x == 0:
        return "0"
    if abs(x) >= 100:
        return f"{x:.0f}"
    if abs(x) >= 1 or digits == 0:
        return f"{x:.{digits}f}"
    return f"{x:.3g}"


def _med(summary: dict | None, key: str | None = None) -> float | None:
    s = summary.get(key, {}) if key else summary
    return (s or {}).get("median")


def _spread(summary: dict | None) -> str:
    if not summary or not summary.get("n"):
        return "–"
    if summary["n"] < 4:
        return f"{_f(summary['median'])} ({_f(summary['min'])}–{_f(summary['max'])})"
    return f"{_f(summary['median'])} [{_f(summary['q1'])}–{_f(summary['q3'])}]"


def busy_warning(report: dict) -> str | None:
    cores = report["machine"].get("physical_cores") or 1
    loads = [v[0] for v in report.get("load_average", {}).values() if v]
    if loads and max(loads) > 0.75 * cores:
        return (f"The machine was busy (1-minute load average up to {max(loads):.1f} on {cores} cores): "
                "absolute times are noisy; runtime and baselines were interleaved, so ratios are fairer.")
    return None


def to_markdown(report: dict[str, Any]) -> str:
    lines = _header(report)
    warn = busy_warning(report)
    if warn:
        lines += ["", f"> {warn}"]
    lines += _pipeline_tables(report.get("pipeline") or [])
    lines += _loop_table(report.get("loops") or [])
    lines += _equivalents_table(report.get("pipeline_vs_baselines") or [])
    if report.get("skipped"):
        lines += ["", "## Skipped", ""] + [f"- {k}: {v}" for k, v in report["skipped"].items()]
    return "\n".join(lines) + "\n"


def _header(report: dict[str, Any]) -> list[str]:
    s = report["settings"]
    b = report["bundle"]
    t = s["tokens"]
    title = b.get("workload") or b["name"]
    return [
        f"# Extract+Think benchmark: {title}",
        "",
        f"- Machine: {describe(report['machine'])}",
        f"- Threads: {s['threads']}; repetitions: {s['repeat']} (+{s['warmup']} warm-up); "
        f"KV cache {s['kv_cache_type']}; greedy decoding",
        f"- Tokens per stage: hint {t['hint']}, extraction {t['extraction']}, thinking {t['thinking']}, "
        f"answer {t['answer']}",
        f"- Bundle: `{b['name']}` ({b['files_mb']} MB): "
        + "; ".join(f"{role} {m['text_params_m']}M text params, "
                    + ", ".join(f"{k} {v} MB" for k, v in m["artifacts"].items())
                    for role, m in b["models"].items()),
        f"- Load average (1/5/15 min) at start {report['load_average'].get('start')}, "
        f"end {report['load_average'].get('end')}; created {report['created']}",
        "- Times are medians; [q1–q3] or (min–max) show the spread.",
    ]


def _pipeline_tables(pipe: list[dict]) -> list[str]:
    if not pipe:
        return []
    lines = ["", "## One request, per stage (seconds)", "",
             "| config | request | vision | hint | extraction | thinking | answer | model loads | peak RSS MB "
             "| above start MB |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for p in pipe:
        st = p["summary"]["stages"]
        loads = sum(_med(st.get(n, {}), "load_s") or 0.0 for n in PIPELINE_STAGES)
        cells = [_f(_med(st.get(n, {}), "seconds")) if n in st else "–" for n in PIPELINE_STAGES]
        peak = _med(p["summary"]["peak_rss_mb"])
        above = peak - p["base_rss_mb"] if peak is not None else None
        lines.append(f"| {p['label']} | {_spread(p['summary']['request_s'])} | " + " | ".join(cells)
                     + f" | {_f(loads)} | {_f(peak, 0)} | {_f(above, 0)} |")
    lines += ["", "## Stage detail (medians)", "",
              "| config | stage | prompt tokens | new tokens | TTFT s | decode tok/s | prefill tok/s "
              "| peak RSS MB |", "|---|---|---|---|---|---|---|---|"]
    for p in pipe:
        for n in PIPELINE_STAGES:
            st = p["summary"]["stages"].get(n)
            if not st:
                continue
            lines.append(
                f"| {p['label']} | {n} | {_f(_med(st, 'prompt_tokens'), 0)} | {_f(_med(st, 'tokens'), 0)} | "
                f"{_f(_med(st, 'ttft_s'), 3)} | {_f(_med(st, 'tokens_per_s'), 1)} | "
                f"{_f(_med(st, 'prefill_tokens_per_s'), 1)} | {_f(_med(st, 'peak_rss_mb'), 0)} |")
    return lines + ["", "Peak RSS is the whole process's (Python, libraries, both models' mapped weights and "
                    "KV caches); 'above start' subtracts the RSS before the models were loaded.",
                    "", "TTFT of a generation stage includes its prompt prefill (for extraction: the image "
                    "embeddings and the text); the vision row's seconds are the image encoder's. Under "
                    "sequential residency the model loads are part of the stage that needs the model."]


def _loop_table(loops: list[dict]) -> list[str]:
    if not loops:
        return []
    lines = ["", "## Runtime against baselines (same files, threads and token counts)", "",
             "| model | stage | artifact | prompt + new | runtime s | raw engine s | runtime/raw "
             "| transformers s | speed-up vs transformers | decode tok/s runtime / raw / transformers |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    hf = {(r["role"], r["stage"]): r for r in loops if r["engine"] == "transformers"}
    for r in loops:
        if r["engine"] != "runtime":
            continue
        raw = next((x for x in loops if x["engine"].startswith("raw-") and x["role"] == r["role"]
                    and x["stage"] == r["stage"] and x["backend"] == r["backend"] and x["quant"] == r["quant"]),
                   None)
        h = hf.get((r["role"], r["stage"]))
        rt_s = _med(r["summary"], "total_s")
        raw_s = _med(raw["summary"], "total_s") if raw else None
        h_s = _med(h["summary"], "total_s") if h else None
        tps = " / ".join(_f(_med(x["summary"], "decode_tps"), 1) if x else "–" for x in (r, raw, h))
        if r["stage"] == "vision":
            tps = "–"
        lines.append(
            f"| {r['role']} | {r['stage']} | {r['backend']} {r['quant']} | {r['prompt_tokens']} + "
            f"{r['new_tokens']} | {_spread(r['summary'].get('total_s'))} | "
            f"{_spread(raw['summary'].get('total_s')) if raw else '–'} | "
            f"{_f(rt_s / raw_s, 3) if rt_s and raw_s else '–'} | "
            f"{_spread(h['summary'].get('total_s')) if h else '–'} | "
            f"{_f(h_s / rt_s, 1) + 'x' if h_s and rt_s else '–'} | {tps} |")
    return lines + ["", "runtime/raw below 1 means the runtime was faster than the hand-written loop "
                    "(within noise, or a real gain such as the ONNX backend keeping the KV cache in OrtValues)."]


def _equivalents_table(eq: list[dict]) -> list[str]:
    if not eq:
        return []
    lines = ["", "## A request against the same stages run by the baselines", "",
             "| config | request s | raw engine, same stages s | request/raw | transformers, same stages s "
             "| speed-up |", "|---|---|---|---|---|---|"]
    for e in eq:
        raw = e.get("raw-llamacpp_sum_s", e.get("raw-onnxruntime_sum_s"))
        lines.append(f"| {e['label']} | {_f(e['request_s'])} | {_f(raw)} | {_f(e.get('overhead_vs_raw'), 3)} | "
                     f"{_f(e.get('transformers_sum_s'))} | "
                     f"{_f(e.get('speedup_vs_transformers'), 1) + 'x' if e.get('speedup_vs_transformers') else '–'} |")
    return lines + ["", "The baselines run the same stage shapes with fixed prompts; the request's own prompts "
                    "differ slightly (its hint and extraction texts feed the next stage), and a request also "
                    "pays tokenization, image preprocessing and, when sequential, model loads."]


def write_outputs(report: dict[str, Any], out_dir: str | Path, *, plots: bool = True) -> dict[str, Path]:
    """bench.json, bench.md and (with `plots`) the PNG plots; returns name -> path.

    Plots need matplotlib (the bench extra): `edge bench` checks for it before any work."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "bench.json", "markdown": out / "bench.md"}
    atomic_write_text(paths["json"], json.dumps(report, indent=1) + "\n")
    atomic_write_text(paths["markdown"], to_markdown(report))
    if plots:
        paths.update(bench_plots(report, out))
    return paths
