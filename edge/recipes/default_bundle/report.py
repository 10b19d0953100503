"""The accuracy tables (markdown), their JSON and a bar chart per split: the training
world's test splits per category, then the held-out world per question type
(`heldout_report`)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from edge.recipes.default_bundle.config import RESULT_FILES, SPLIT_TITLES
from edge.recipes.default_bundle.heldout_report import heldout_markdown, plot_heldout
from runtime.atomic import atomic_write_text

log = logging.getLogger(__name__)

CATEGORY_ORDER = ("coarse_perception", "fine_grained_perception", "instance_reasoning",
                  "logical_reasoning", "math", "grounding", "overall")
COLUMNS = ("chance", "end-to-end", "caption-think", "extract-think")
TITLES = {"chance": "chance", "end-to-end": "end-to-end", "caption-think": "Caption+Think",
          "extract-think": "Extract+Think"}
COLORS = {"chance": "#bbbbbb", "end-to-end": "#8da0cb", "caption-think": "#fc8d62", "extract-think": "#66c2a5"}


def table_markdown(scores: dict) -> str:
    """One markdown table per split: category rows, a column per system and chance."""
    lines = []
    for split, sc in scores["splits"].items():
        lines.append(f"**{SPLIT_TITLES.get(split, split)}**, accuracy %\n")
        lines.append("| category | n | " + " | ".join(TITLES[c] for c in COLUMNS) + " |")
        lines.append("|---|---:|" + "---:|" * len(COLUMNS))
        cats = [c for c in CATEGORY_ORDER if c in sc.get("extract-think", sc["chance"])]
        for cat in cats:
            n = sc["chance"][cat]["n"]
            vals = []
            for c in COLUMNS:
                v = sc.get(c, {}).get(cat, {}).get("accuracy")
                vals.append("-" if v is None else f"{v:.1f}")
            name = cat.replace("_", " ")
            if cat == "overall":
                name, vals = "**overall**", [f"**{v}**" for v in vals]
            lines.append(f"| {name} | {n} | " + " | ".join(vals) + " |")
        lines.append("")
    return "\n".join(lines)


def plot_scores(scores: dict, out: Path) -> Path | None:
    """Accuracy per category and system as a PNG; None when matplotlib is missing."""
    try:  # deferred: matplotlib is an optional extra ([bench]) and slow to import
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log.info("matplotlib is not installed: no accuracy chart")
        return None
    splits = list(scores["splits"])
    forms = list(scores.get("heldout", {}))
    rows = len(forms) + len(splits)
    fig, axes = plt.subplots(rows, 1, figsize=(9, 3.2 * rows), dpi=100, squeeze=False)
    for ax, form in zip(axes[: len(forms), 0], forms, strict=True):
        plot_heldout(ax, scores["heldout"][form], SPLIT_TITLES.get(form, form), COLORS)
    for ax, split in zip(axes[len(forms):, 0], splits, strict=True):
        sc = scores["splits"][split]
        cats = [c for c in CATEGORY_ORDER if c in sc["chance"]]
        width = 0.8 / len(COLUMNS)
        for k, key in enumerate(COLUMNS):
            vals = [sc.get(key, {}).get(c, {}).get("accuracy", 0.0) for c in cats]
            ax.bar([i + (k - 1.5) * width for i in range(len(cats))], vals, width, label=TITLES[key],
                   color=COLORS[key])
        ax.set_xticks(range(len(cats)))
        ax.set_xticklabels([c.replace("_", "\n") for c in cats], fontsize=8)
        ax.set_ylabel("accuracy %")
        ax.set_ylim(0, 100)
        ax.set_title(SPLIT_TITLES.get(split, split), fontsize=10)
        ax.grid(axis="y", alpha=0.3)
        ax.legend(ncol=4, fontsize=7, loc="upper right")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    tmp.replace(out)
    return out


def write_results(scores: dict, stages: dict, results_dir: Path) -> str:
    """RESULT_FILES into `results_dir` (the table, scores + stage summaries, the chart)."""
    table_md, scores_json, chart_png = (results_dir / name for name in RESULT_FILES)
    table = heldout_markdown(scores) + table_markdown(scores)
    atomic_write_text(scores_json, json.dumps({"scores": scores, "stages": stages}, indent=1))
    atomic_write_text(table_md, table)
    plot_scores(scores, chart_png)
    return table
