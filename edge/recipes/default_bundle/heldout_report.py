"""The held-out world's tables (markdown) and chart panels: accuracy per question type with
Wilson 95% intervals against the per-type majority baseline, the right-form rate, and
Extract+Think minus each other system on the same items (paired bootstrap)."""

from __future__ import annotations

from edge.recipes.default_bundle.config import SPLIT_TITLES

SYSTEM_ORDER = ("extract-think", "caption-think", "end-to-end")
TITLES = {"extract-think": "Extract+Think", "caption-think": "Caption+Think", "end-to-end": "end-to-end"}
TYPE_ORDER = ("exists", "negation", "verify", "color", "shape", "count", "position", "text")
YES_NO_TYPES = ("exists", "negation", "verify")


def _pct(r: dict) -> str:
    return f"{100 * r['accuracy']:.1f} ({100 * r['ci95'][0]:.0f}–{100 * r['ci95'][1]:.0f})"


def _types(h: dict) -> list[str]:
    present = next(iter(h["systems"].values()))["categories"]
    return [t for t in TYPE_ORDER if t in present] + sorted(t for t in present if t not in TYPE_ORDER)


def heldout_markdown(scores: dict) -> str:
    """One block per held-out form: accuracy, right form, yes/no form rate, paired differences."""
    lines: list[str] = []
    for form, h in scores.get("heldout", {}).items():
        modes = [m for m in SYSTEM_ORDER if m in h["systems"]]
        mc = next(iter(h["systems"].values()))["overall"].get("chance") is not None
        n = next(iter(h["systems"].values()))["overall"]["n"]
        lines.append(f"**{SPLIT_TITLES.get(form, form)}** (n = {n}), accuracy % (95% CI)\n")
        lines.append("| question type | n | " + " | ".join(TITLES[m] for m in modes)
                     + " | majority baseline (answer) |" + (" chance |" if mc else ""))
        lines.append("|---|---:|" + "---|" * (len(modes) + 1) + ("---:|" if mc else ""))
        base = h["baseline"]
        for t in [*_types(h), "overall"]:
            rows = [h["systems"][m]["categories"][t] if t != "overall" else h["systems"][m]["overall"]
                    for m in modes]
            b = base["categories"][t] if t != "overall" else base["overall"]
            btxt = _pct(b) + (f" ({b['answer']})" if "answer" in b else "")
            vals = [_pct(r) for r in rows]
            name = t
            if t == "overall":
                name, vals, btxt = "**overall**", [f"**{v}**" for v in vals], f"**{btxt}**"
            tail = f" {100 * rows[0]['chance']:.1f} |" if mc and rows[0].get("chance") is not None else ""
            lines.append(f"| {name} | {rows[0]['n']} | " + " | ".join(vals) + f" | {btxt} |{tail}")
        lines.append("")
        lines.append("Answers in the right form, % (95% CI)\n")
        lines.append("| question type | " + " | ".join(TITLES[m] for m in modes) + " |")
        lines.append("|---|" + "---|" * len(modes))
        for t in [*_types(h), "overall"]:
            rows = [(h["systems"][m]["categories"][t] if t != "overall" else h["systems"][m]["overall"])["form"]
                    for m in modes]
            lines.append(f"| {t} | " + " | ".join(_pct(r) for r in rows) + " |")
        lines.append("")
        yn = ", ".join(f"{TITLES[m]} {h['yesno_form'][m]['rate']:.1f}%" for m in modes)
        lines.append(f"Yes/no questions ({', '.join(YES_NO_TYPES)}; n = {h['yesno_form'][modes[0]]['n']}) "
                     f"answered `yes` or `no`: {yn}.")
        if h.get("wording"):
            w = h["wording"]
            parts = "; ".join(f"{TITLES[m]} {w[m]['seen']['accuracy']:.1f} / {w[m]['unseen']['accuracy']:.1f}"
                              for m in modes if m in w)
            lines.append(f"Items worded as some training question (colour, shape and number words masked; "
                         f"n = {w[modes[0]]['seen']['n']}) / the rest (n = {w[modes[0]]['unseen']['n']}), "
                         f"accuracy %: {parts}.")
        for m, d in h.get("paired", {}).items():
            lines.append(f"Extract+Think minus {TITLES[m]}, paired on the same items: {d['diff']:+.1f} points "
                         f"(95% CI {d['ci95'][0]:+.1f} to {d['ci95'][1]:+.1f}; {d['discordant']} of {d['n']} "
                         "items answered differently).")
        lines.append("")
    return "\n".join(lines)


def plot_heldout(ax, h: dict, title: str, colors: dict) -> None:
    """Accuracy per question type and system with 95% intervals, the baseline as black marks."""
    modes = [m for m in SYSTEM_ORDER if m in h["systems"]]
    types = [*_types(h), "overall"]
    width = 0.8 / len(modes)

    def pick(m: str, t: str) -> dict:
        return h["systems"][m]["categories"][t] if t != "overall" else h["systems"][m]["overall"]

    for k, m in enumerate(modes):
        xs = [i + (k - (len(modes) - 1) / 2) * width for i in range(len(types))]
        vals = [100 * pick(m, t)["accuracy"] for t in types]
        errs = [[v - 100 * pick(m, t)["ci95"][0] for v, t in zip(vals, types, strict=True)],
                [100 * pick(m, t)["ci95"][1] - v for v, t in zip(vals, types, strict=True)]]
        ax.bar(xs, vals, width, yerr=errs, capsize=2, label=TITLES[m], color=colors[m])
    base = [100 * (h["baseline"]["categories"][t] if t != "overall" else h["baseline"]["overall"])["accuracy"]
            for t in types]
    ax.scatter(range(len(types)), base, marker="_", s=400, color="black", zorder=3, label="majority baseline")
    ax.set_xticks(range(len(types)))
    ax.set_xticklabels(types, fontsize=8)
    ax.set_ylabel("accuracy %")
    ax.set_ylim(0, 100)
    ax.set_title(title, fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(ncol=4, fontsize=7, loc="upper right")
