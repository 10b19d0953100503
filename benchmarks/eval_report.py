"""Readable outputs of `edge eval`: the summary as markdown, and thinking-budget sweeps."""

from __future__ import annotations

from runtime.errors import ConfigError


def summary_markdown(summary: dict, title: str = "") -> str:
    def pct(x: float) -> str:
        return f"{100 * x:.1f}"

    lat = summary.get("latency_s") or {}
    lines = [f"## {title}" if title else "## Evaluation", "",
             f"Accuracy {pct(summary['accuracy'])}% ({summary['correct']}/{summary['n']}, 95% CI "
             f"{pct(summary['ci95'][0])}–{pct(summary['ci95'][1])}); answered {pct(summary['answered'])}%, "
             f"forced answers {summary['forced_answers']}, errors {summary['errors']}; "
             f"median latency {lat.get('median', 0):.2f} s per item.", "",
             "| category | n | accuracy % | 95% CI |", "|---|---|---|---|"]
    for name, c in summary["categories"].items():
        lines.append(f"| {name} | {c['n']} | {pct(c['accuracy'])} | {pct(c['ci95'][0])}–{pct(c['ci95'][1])} |")
    used = summary.get("tokens_used") or {}
    if used:
        lines += ["", "| stage | mean tokens used | median | max |", "|---|---|---|---|"]
        for stage, s in used.items():
            if s.get("n"):
                lines.append(f"| {stage} | {s['mean']:.1f} | {s['median']:.0f} | {s['max']:.0f} |")
    return "\n".join(lines) + "\n"


def parse_sweep(text: str) -> list[int | None]:
    """'off,0,64,256' -> [None, 0, 64, 256] (None: thinking off)."""
    out: list[int | None] = []
    for part in filter(None, (p.strip().lower() for p in text.split(","))):
        if part in ("off", "none", "no"):
            out.append(None)
        elif part.isdigit():
            out.append(int(part))
        else:
            raise ConfigError(f"bad thinking budget {part!r} in the sweep (use e.g. off,0,64,256,1024)")
    if not out:
        raise ConfigError("the sweep needs at least one thinking budget")
    return list(dict.fromkeys(out))


def sweep_point(summary: dict, budget: int | None) -> dict:
    used = (summary.get("tokens_used") or {}).get("thinking") or {}
    return {"thinking_budget": budget, "label": "off" if budget is None else str(budget),
            "accuracy": summary["accuracy"], "ci": summary["ci95"], "n": summary["n"],
            "latency_s": (summary.get("latency_s") or {}).get("median", 0.0),
            "thinking_tokens_mean": used.get("mean", 0.0),
            "categories": {k: v["accuracy"] for k, v in summary["categories"].items()}}


def sweep_markdown(points: list[dict]) -> str:
    lines = ["| thinking budget | accuracy % | 95% CI | median s/item | mean thinking tokens |",
             "|---|---|---|---|---|"]
    for p in points:
        lines.append(f"| {p['label']} | {100 * p['accuracy']:.1f} | {100 * p['ci'][0]:.1f}–{100 * p['ci'][1]:.1f} | "
                     f"{p['latency_s']:.2f} | {p['thinking_tokens_mean']:.0f} |")
    return "\n".join(lines) + "\n"
