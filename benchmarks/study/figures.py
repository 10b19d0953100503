"""The paper's figure types as PNGs, drawn from the findings' details (matplotlib, headless).

    a-llm-shrink.png               per-category accuracy drop when the end-to-end LLM shrinks (M -> S),
                                   and the drop against how much each question type needs the image
    b-perception-vs-reasoning.png  Extract+Think accuracy over perception size x reasoner size, per split
    c-systems.png                  Extract+Think vs Caption+Think vs end-to-end, per split
    d-thinking.png                 the gain from thinking, in domain vs out of domain

Every bar or point carries its 95% interval. Each file is drawn beside its target and renamed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmarks.plots import _plt, _save
from benchmarks.study.grid import SPLIT_TITLES
from benchmarks.study.verdicts import Finding

VERDICT_COLORS = {"reproduced": "#2ca02c", "not reproduced": "#d62728", "inconclusive": "#7f7f7f"}


def _err(entry: dict) -> tuple[float, list[float]]:
    p = entry["point"]
    return p, [p - entry["low"], entry["high"] - p]


def _bars(ax: Any, labels: list[str], entries: list[dict], colors: list[str] | str, x0: float = 0.0,
          width: float = 0.8, label: str | None = None) -> None:
    xs = [x0 + i for i in range(len(entries))]
    pts = [e["point"] for e in entries]
    errs = [[e["point"] - e["low"] for e in entries], [e["high"] - e["point"] for e in entries]]
    ax.bar(xs, pts, width=width, color=colors, yerr=errs, capsize=3, label=label)


def _title(ax: Any, f: Finding) -> None:
    ax.set_title(f"({f.key}) {f.title}\nverdict: {f.verdict}", fontsize=10, color=VERDICT_COLORS[f.verdict])


def figure_a(f: Finding, path: Path) -> Path:
    plt = _plt()
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2), gridspec_kw={"width_ratios": [6, 8, 5]})
    per = f.details["per_category"]
    cats = list(per)
    colors = ["#1f77b4" if c in ("coarse_perception", "fine_grained_perception", "grounding") else "#ff7f0e"
              for c in cats]
    _bars(axes[0], cats, [per[c] for c in cats], colors)
    axes[0].set_xticks(range(len(cats)), [c.replace("_", "\n") for c in cats], fontsize=7)
    axes[0].axhline(0, color="black", lw=0.6)
    axes[0].set_ylabel("accuracy drop M -> S (points)")
    axes[0].set_xlabel("blue: vision-centric, orange: reasoning (ID + HC)", fontsize=8)
    _title(axes[0], f)
    hw = f.details.get("per_heldout_type") or {}
    if hw:
        types = list(hw)
        _bars(axes[1], types, [hw[t] for t in types], "#9467bd")
        axes[1].set_xticks(range(len(types)), types, fontsize=7, rotation=30)
        axes[1].axhline(0, color="black", lw=0.6)
        axes[1].set_title("held-out world, per question type", fontsize=9)
    need = (f.details.get("image_need") or {}).get("types") or {}
    if need:
        xs = [v["need"] for v in need.values()]
        ys = [v["drop"] for v in need.values()]
        axes[2].scatter(xs, ys, s=18)
        for name, v in need.items():
            axes[2].annotate(name, (v["need"], v["drop"]), fontsize=6)
        rho = f.details["image_need"].get("spearman") or {}
        axes[2].set_title(f"drop vs image need per question type\nSpearman {rho.get('point')} "
                          f"(95% CI {rho.get('low')} to {rho.get('high')})", fontsize=9)
        axes[2].set_xlabel("image need: M with image - M with blank image (points)", fontsize=8)
        axes[2].set_ylabel("drop M -> S (points)", fontsize=8)
        axes[2].axhline(0, color="black", lw=0.4)
    return _save(fig, path)


def figure_b(f: Finding, path: Path) -> Path:
    plt = _plt()
    grid = f.details["grid"]
    fig, axes = plt.subplots(1, len(grid), figsize=(4.2 * len(grid), 3.8), sharey=True)
    axes = list(axes) if len(grid) > 1 else [axes]
    for ax, (split, acc) in zip(axes, grid.items(), strict=True):
        for p, color in (("S", "#ff7f0e"), ("M", "#1f77b4")):
            entries = [acc[f"et-{p}{r}"] for r in ("S", "M")]
            ax.errorbar([0, 1], [e["point"] for e in entries],
                        yerr=[[e["point"] - e["low"] for e in entries], [e["high"] - e["point"] for e in entries]],
                        marker="o", capsize=3, color=color, label=f"perception {p}")
        ax.set_xticks([0, 1], ["reasoner S", "reasoner M"])
        ax.set_title(SPLIT_TITLES[split], fontsize=9)
        ax.set_xlim(-0.4, 1.4)
    axes[0].set_ylabel("Extract+Think accuracy %")
    axes[0].legend(fontsize=8)
    fig.suptitle(f"(b) {f.title} — verdict: {f.verdict}", fontsize=10, color=VERDICT_COLORS[f.verdict])
    return _save(fig, path)


def figure_c(f: Finding, path: Path) -> Path:
    plt = _plt()
    per = f.details["per_split"]
    fig, ax = plt.subplots(figsize=(2.4 * len(per) + 2, 4))
    systems = (("et-MM", "Extract+Think", "#1f77b4"), ("ct-MM", "Caption+Think", "#ff7f0e"),
               ("e2e-M", "end-to-end", "#7f7f7f"))
    for k, (key, name, color) in enumerate(systems):
        entries = [per[s][key] for s in per]
        _bars(ax, list(per), entries, color, x0=-0.27 + 0.27 * k, width=0.26, label=name)
    ax.set_xticks(range(len(per)), [SPLIT_TITLES[s].replace(" (", "\n(") for s in per], fontsize=8)
    ax.set_ylabel("accuracy %")
    ax.legend(fontsize=8)
    _title(ax, f)
    return _save(fig, path)


def figure_d(f: Finding, path: Path) -> Path:
    plt = _plt()
    per = f.details["per_split"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    splits = list(per)
    for k, (key, name, color) in enumerate((("direct", "thinking off", "#7f7f7f"), ("think", "thinking on", "#1f77b4"))):
        _bars(axes[0], splits, [per[s][key] for s in splits], color, x0=-0.2 + 0.4 * k, width=0.38, label=name)
    axes[0].set_xticks(range(len(splits)), [SPLIT_TITLES[s].replace(" (", "\n(") for s in splits], fontsize=8)
    axes[0].set_ylabel("Extract+Think (M, M) accuracy %")
    axes[0].legend(fontsize=8)
    e = f.effects
    entries = [e["gain_in"].to_dict(), e["gain_out"].to_dict()]
    _bars(axes[1], ["in domain", "out of domain"], entries, ["#2ca02c", "#9467bd"])
    axes[1].set_xticks([0, 1], ["in domain (ID)", "out of domain (HC + HW)"], fontsize=8)
    axes[1].axhline(0, color="black", lw=0.6)
    axes[1].set_ylabel("gain from thinking (points)")
    _title(axes[1], f)
    return _save(fig, path)


FIGURES = {"a": ("a-llm-shrink.png", figure_a), "b": ("b-perception-vs-reasoning.png", figure_b),
           "c": ("c-systems.png", figure_c), "d": ("d-thinking.png", figure_d)}


def draw_all(findings: list[Finding], folder: Path) -> dict[str, str]:
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for f in findings:
        name, fn = FIGURES[f.key]
        fn(f, folder / name)
        out[f.key] = name
    return out
