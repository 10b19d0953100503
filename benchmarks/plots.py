"""PNG plots for benchmark and evaluation reports (matplotlib, headless).

Each plot is drawn into a temporary file beside its target and renamed into place.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from benchmarks.inputs import PIPELINE_STAGES
from runtime.errors import ConfigError

STAGE_COLORS = {"vision": "#8c564b", "hint": "#9467bd", "extraction": "#1f77b4", "thinking": "#ff7f0e",
                "answer": "#2ca02c", "load": "#7f7f7f", "other": "#d9d9d9", "idle": "#ffffff"}


def _plt():
    # matplotlib is the optional bench extra, and slow to import: loaded when a plot is drawn
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ConfigError("plots need matplotlib, which is not installed (the project's bench extra)") from None
    return plt


def _save(fig: Any, path: Path) -> Path:
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=110, bbox_inches="tight")
    _plt().close(fig)
    os.replace(tmp, path)
    return path


def _med(d: dict | None, key: str) -> float:
    return float(((d or {}).get(key) or {}).get("median") or 0.0)


def stage_breakdown(report: dict, path: Path) -> Path | None:
    pipe = report.get("pipeline") or []
    if not pipe:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(9, 0.7 * len(pipe) + 1.6))
    labels = [p["label"] for p in pipe]
    for i, p in enumerate(pipe):
        st = p["summary"]["stages"]
        left = 0.0
        loads = 0.0
        for name in PIPELINE_STAGES:
            if name not in st:
                continue
            load = _med(st[name], "load_s")
            secs = _med(st[name], "seconds") - load
            loads += load
            ax.barh(i, secs, left=left, color=STAGE_COLORS[name], label=name if i == 0 else None)
            left += secs
        if loads > 0:
            ax.barh(i, loads, left=left, color=STAGE_COLORS["load"], hatch="//", label="model loads")
            left += loads
        total = float(p["summary"]["request_s"].get("median") or 0.0)
        if total > left:
            ax.barh(i, total - left, left=left, color=STAGE_COLORS["other"], label="other")
    ax.set_yticks(range(len(labels)), labels)
    ax.invert_yaxis()
    ax.set_xlabel("seconds per request (median)")
    t = report["settings"]["tokens"]
    ax.set_title(f"Extract+Think request by stage — {report['bundle'].get('workload') or report['bundle']['name']}\n"
                 f"hint {t['hint']}, extraction {t['extraction']}, thinking {t['thinking']}, answer {t['answer']} "
                 f"tokens, {report['settings']['threads']} threads", fontsize=9)
    handles, names = ax.get_legend_handles_labels()
    uniq = dict(zip(names, handles, strict=False))
    ax.legend(uniq.values(), uniq.keys(), fontsize=8, loc="lower right")
    return _save(fig, path)


def tokens_per_second(report: dict, path: Path) -> Path | None:
    rows = [r for r in report.get("loops") or [] if r["stage"] != "vision"]
    if not rows:
        return None
    plt = _plt()
    groups = list(dict.fromkeys((r["role"], r["stage"]) for r in rows))
    series = list(dict.fromkeys(
        "transformers (fp32)" if r["engine"] == "transformers" else f"{r['engine']} {r['backend']} {r['quant']}"
        for r in rows))
    fig, ax = plt.subplots(figsize=(max(7, 1.1 * len(groups) * max(1, len(series)) / 2), 4.2))
    width = 0.8 / max(1, len(series))
    cmap = plt.get_cmap("tab20")
    for si, name in enumerate(series):
        xs, ys, lo, hi = [], [], [], []
        for gi, (role, stage) in enumerate(groups):
            for r in rows:
                key = "transformers (fp32)" if r["engine"] == "transformers" else \
                    f"{r['engine']} {r['backend']} {r['quant']}"
                if key == name and (r["role"], r["stage"]) == (role, stage):
                    s = r["summary"].get("decode_tps", {})
                    if s.get("n"):
                        xs.append(gi + (si - (len(series) - 1) / 2) * width)
                        ys.append(s["median"])
                        lo.append(s["median"] - s["min"])
                        hi.append(s["max"] - s["median"])
                    break
        if xs:
            ax.bar(xs, ys, width=width, yerr=[lo, hi], capsize=2, label=name, color=cmap(si % 20))
    ax.set_xticks(range(len(groups)), [f"{r}\n{s}" for r, s in groups])
    ax.set_ylabel("decode tokens/s (median, min–max)")
    ax.set_title(f"Decode speed by quantization and engine — {report['bundle'].get('workload') or report['bundle']['name']}",
                 fontsize=9)
    ax.legend(fontsize=7, ncol=2)
    return _save(fig, path)


def memory_over_time(report: dict, path: Path) -> Path | None:
    pipe = [p for p in report.get("pipeline") or [] if p.get("memory_timeline")]
    if not pipe:
        return None
    plt = _plt()
    fig, axes = plt.subplots(len(pipe), 1, figsize=(9, 2.1 * len(pipe) + 0.6), squeeze=False)
    for ax, p in zip(axes[:, 0], pipe, strict=True):
        tl = p["memory_timeline"]
        ts = [x[0] for x in tl]
        ms = [x[1] for x in tl]
        ax.plot(ts, ms, color="black", lw=1)
        # colour the background by what was running
        start, label = ts[0], tl[0][2]
        for t, _, lab in tl[1:] + [[ts[-1], 0, None]]:
            if lab != label:
                color = STAGE_COLORS.get(label)
                if color and label not in ("idle", "closed"):
                    ax.axvspan(start, t, color=color, alpha=0.35, lw=0)
                start, label = t, lab
        ax.set_ylabel("RSS MiB")
        ax.set_title(p["label"], fontsize=8)
    axes[-1, 0].set_xlabel("seconds (load, warm-up and measured requests)")
    handles = [plt.Rectangle((0, 0), 1, 1, color=STAGE_COLORS[n], alpha=0.35) for n in ("load", *PIPELINE_STAGES)]
    axes[0, 0].legend(handles, ("load", *PIPELINE_STAGES), fontsize=7, ncol=6, loc="upper left")
    return _save(fig, path)


def bench_plots(report: dict, out: Path) -> dict[str, Path]:
    made = {}
    for name, fn in (("stage_breakdown", stage_breakdown), ("tokens_per_s", tokens_per_second),
                     ("memory", memory_over_time)):
        p = fn(report, out / f"{name}.png")
        if p is not None:
            made[name] = p
    return made


def sweep_plot(points: list[dict], path: Path, title: str = "") -> Path:
    """Accuracy (with its confidence interval) and latency against the thinking budget."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.5, 4))
    pts = sorted(points, key=lambda p: p["thinking_budget"] if p["thinking_budget"] is not None else -1)
    xs = [p["label"] for p in pts]
    acc = [p["accuracy"] for p in pts]
    lo = [p["accuracy"] - p["ci"][0] for p in pts]
    hi = [p["ci"][1] - p["accuracy"] for p in pts]
    ax.errorbar(range(len(xs)), acc, yerr=[lo, hi], marker="o", capsize=3, color="#1f77b4", label="accuracy (95% CI)")
    ax.set_xticks(range(len(xs)), xs)
    ax.set_xlabel("thinking budget (tokens)")
    ax.set_ylabel("accuracy", color="#1f77b4")
    ax.set_ylim(0, 1)
    ax2 = ax.twinx()
    ax2.plot(range(len(xs)), [p["latency_s"] for p in pts], marker="s", ls="--", color="#d62728",
             label="median latency")
    ax2.set_ylabel("median seconds per question", color="#d62728")
    ax.set_title(title or "Accuracy and latency vs thinking budget", fontsize=9)
    return _save(fig, path)


def compare_plot(comparison: dict, path: Path) -> Path:
    """`edge bench --compare`: request and image-side seconds, and the sequential peak RSS,
    of the plain pipeline, the fast one and a second question on the same image (medians)."""
    plt = _plt()
    rows = [("plain", comparison.get("plain") or {}), ("fast", comparison.get("fast") or {}),
            ("fast, 2nd question", comparison.get("fast_second_question") or {})]
    colors = ["#7f7f7f", "#1f77b4", "#2ca02c"]
    panels = [("request_s", "request (s)"), ("image_side_s", "image side: vision + image prefill (s)"),
              ("sequential_peak_rss_mb", "sequential peak RSS (MiB)")]
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6))
    for ax, (key, title) in zip(axes, panels, strict=True):
        shown = [(name, d.get(key)) for name, d in rows if d.get(key) is not None]
        bars = ax.bar([n for n, _ in shown], [v for _, v in shown], color=colors[:len(shown)])
        for bar, (_, v) in zip(bars, shown, strict=True):
            ax.annotate(f"{v:,.0f}" if v >= 100 else f"{v:.2f}", (bar.get_x() + bar.get_width() / 2, v),
                        ha="center", va="bottom", fontsize=8)
        ax.set_title(title, fontsize=9)
        ax.tick_params(axis="x", labelsize=8)
    s = comparison.get("settings") or {}
    fig.suptitle(f"{s.get('bundle', '')}: plain vs fast, {s.get('threads', '?')} threads, "
                 f"medians of {s.get('repeat', '?')}", fontsize=10)
    fig.tight_layout()
    return _save(fig, path)
