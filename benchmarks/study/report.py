"""The study's report: study.md (the verdicts, the numbers behind them, the rules), study.json
(everything, machine-readable) and the figures, written into one folder (each file atomically)."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks.study.figures import FIGURES, draw_all
from benchmarks.study.grid import SPLIT_TITLES, SYSTEM_TITLES
from benchmarks.study.presets import TRIED, Preset
from benchmarks.study.verdicts import Finding, fmt
from runtime.atomic import atomic_write_bytes, atomic_write_text

MD, JSON = "study.md", "study.json"


def _ci(e: dict) -> str:
    return f"{e['point']:.1f} ({e['low']:.1f}–{e['high']:.1f})"


def _diff(e: dict) -> str:
    return f"{e['point']:+.1f} ({e['low']:+.1f} to {e['high']:+.1f}; ±{e['half_width']:.1f})"


def _settings(preset: Preset) -> list[str]:
    m, d, s, r = preset.models, preset.data, preset.steps, preset.run
    b = preset.budgets
    return [
        "| setting | value |", "|---|---|",
        f"| tower | `{m.tower}`{' (pretrained)' if m.pretrained else ' (trained here: the vision stage)'} |",
        f"| perception LM S / M | `{m.perception['S']}` / `{m.perception['M']}` |",
        f"| reasoner S / M | `{m.reasoner['S']}` / `{m.reasoner['M']}` |",
        f"| training world | {d.train} images x {d.questions_per_image} questions at {d.image_size} px, seed {d.seed} |",
        f"| evaluation splits | ID {d.test_iid} images, HC {d.test} images, HW {d.heldout} items (multiple choice) "
        f"and {d.heldout_open} (open), held-out seed {d.heldout_seed} |",
        f"| steps | vision {s.vision}, align {s.align}, instruct {s.instruct}, e2e / caption / extract {s.finetune} "
        f"each, reasoner {s.reasoner}; micro batch {s.micro_batch} (vision {s.vision_batch}), lr x{s.lr_scale} |",
        f"| budgets | hint {b.hint}, extraction {b.extraction}, thinking {b.thinking}, answer {b.answer} |",
        f"| runtime | llama.cpp, GGUF {r.quant}, greedy, focus hint on, {r.workers} processes x {r.threads} thread(s) |",
        f"| statistics | paired bootstrap over images, {r.bootstrap} resamples; margin for a tie ±{preset.margin:g} points |",
    ]


def _runs(meta: dict, est: dict) -> list[str]:
    runs = meta.get("runs", [])
    lines = ["| run | commit | started | wall | load average (min / median / max) |", "|---|---|---|---:|---|"]
    for i, r in enumerate(runs, 1):
        load = r.get("load_average") or {}
        load_txt = f"{load.get('min')} / {load.get('median')} / {load.get('max')}" if load.get("samples") else "–"
        commit = f"`{str(r.get('commit'))[:10]}`" + (" (uncommitted changes)" if r.get("dirty") else "")
        wall = f"{r['wall_seconds'] / 60:.1f} min" if r.get("wall_seconds") is not None else "–"
        lines.append(f"| {i} | {commit} | {r.get('started')} | {wall} | {load_txt} |")
    total = sum(r.get("wall_seconds") or 0 for r in runs)
    lines += ["", f"Wall time over all runs: {total / 60:.1f} min on {runs[-1]['machine']['cpus'] if runs else '?'} "
              f"CPUs. Estimate before running: {est['wall_seconds'] / 60:.0f} min "
              f"({est['process_seconds'] / 60:.0f} process-minutes; "
              f"{'rates measured here' if est['measured'] else 'rates not measured for this preset'})."]
    kinds: dict[str, float] = {}
    for r in runs:
        for j in (r.get("jobs") or {}).values():
            kinds[j["kind"]] = kinds.get(j["kind"], 0.0) + j["seconds"]
    if kinds:
        lines.append("Process seconds per kind of job: " + ", ".join(f"{k} {v:.0f}" for k, v in sorted(kinds.items()))
                     + ".")
    return lines


def _method_md(preset: Preset) -> list[str]:
    return [
        "## How the study works", "",
        "**Grid.** One tower (trained here by the `vision` stage, or SigLIP-so400m in the gpu preset) is shared by "
        "every perception model. For each perception LM size P in {S, M}: `align-P` -> `instruct-P`, then `e2e-P` "
        "(direct answers), `caption-P` (captions) and `extract-P` (question-relevant extractions), each continuing "
        "`instruct-P` for the same steps and batch (equal training compute). For each reasoner size R in {S, M}: "
        "`reasoner-R` on thinking traces (half over captions, half over extractions; half with thinking, half "
        "answering directly under the non-thinking prompt, so one reasoner serves thinking on and off) and focus "
        "hints. Systems: end-to-end (S) and (M), Caption+Think (M, M), Extract+Think (P, R) for all four pairs.",
        "",
        "**Splits.** In-domain (ID): the training world's `test_iid`. Out of domain: held-out compositions (HC, the "
        "training world's `test`: every scene holds a colour-shape pair never seen in training, and its questions "
        "ask about it) and the held-out world (HW: another renderer and question wording, never trained on, "
        "docs/heldout.md), in multiple-choice form and, for finding (c), also open answers (HW-open).",
        "",
        "**Evaluation.** Every system is exported to a GGUF bundle and answered by the runtime "
        "(`runtime.ExtractThink`, llama.cpp, greedy, focus hint on), as `edge run` does; a cell is one system on "
        "the first N items of one split. Multiple choice is scored by the option letter; open answers by "
        "`benchmarks.open_answer` (normalised gold or a listed synonym).",
        "",
        "**Statistics.** Each effect is a difference of accuracies on the same items, with a 95% interval from a "
        "bootstrap that resamples images within each split (ID and HC ask three questions per image) and reweights "
        f"all systems together (paired), {preset.run.bootstrap} resamples. An interval is *above 0* when its low "
        f"end is above 0; a *tie* when it lies inside ±{preset.margin:g} points. A finding whose systems do not "
        "beat the in-domain baseline (a uniform pick among the options; the most common training answer of the "
        "question type for open questions) is inconclusive: nothing learned to compare.",
        "",
        "**What differs from the paper.** The models are micro Qwen3 decoders and a small SigLIP tower trained from "
        "scratch here, not 0.6B-8B checkpoints; the reasoners are trained on the world's traces instead of being "
        "stock Qwen3 in thinking mode; the world is synthetic, and every question needs the image, so its "
        "reasoning categories are not the paper's knowledge tasks. Verdicts are about this setting.",
        "",
    ]


def _finding_md(f: Finding, figure: str | None) -> list[str]:
    lines = [f"## ({f.key}) {f.title}", "", f"*Paper:* {f.claim}", "", f"*Measured:* {f.measure}; {f.items}.", ""]
    lines += ["| quantity | points (95% CI) |", "|---|---|"]
    lines += [f"| {name} | {fmt(e)} |" for name, e in f.effects.items()]
    lines += ["", f"**Verdict: {f.verdict}** — {f.reason}.", "", f"Rule: {f.rule}", ""]
    if figure:
        lines += [f"![({f.key})]({figure})", ""]
    lines += _details_md(f)
    return lines


def _details_md(f: Finding) -> list[str]:
    d = f.details
    lines: list[str] = []
    if f.key == "a":
        lines += ["| category (ID + HC) | drop M -> S, points (95% CI; ± half-width) |", "|---|---|"]
        lines += [f"| {c} | {_diff(e)} |" for c, e in d["per_category"].items()]
        if d.get("per_heldout_type"):
            lines += ["", "| held-out world type | drop M -> S |", "|---|---|"]
            lines += [f"| {c} | {_diff(e)} |" for c, e in d["per_heldout_type"].items()]
        need = d.get("image_need") or {}
        if need.get("spearman"):
            s = need["spearman"]
            lines += ["", f"Drop against image need across {s['types']} question types (ID + HC; image need = "
                      f"end-to-end (M) with the image minus with a blank grey one): Spearman {s['point']} "
                      f"(95% CI {s['low']} to {s['high']})."]
        lines += ["", "Caveat: every question of the synthetic world needs the image, so its reasoning categories "
                  "are not the paper's knowledge tasks."]
    elif f.key == "b":
        splits = list(d["grid"])
        lines += ["| system | " + " | ".join(SPLIT_TITLES[s] for s in splits) + " |",
                  "|---|" + "---|" * len(splits)]
        for system in ("et-SS", "et-SM", "et-MS", "et-MM"):
            lines.append(f"| {SYSTEM_TITLES[system]} | " + " | ".join(_ci(d["grid"][s][system]) for s in splits) + " |")
        lines += ["", "| split | ΔP | ΔR |", "|---|---|---|"]
        lines += [f"| {SPLIT_TITLES[s]} | {_diff(v['dP'])} | {_diff(v['dR'])} |" for s, v in d["per_split"].items()]
    elif f.key == "c":
        lines += ["| split | n | Extract+Think | Caption+Think | end-to-end | E+T − C+T (± half-width) | "
                  "C+T − e2e | E+T − e2e |", "|---|---:|---|---|---|---|---|---|"]
        for s, v in d["per_split"].items():
            lines.append(f"| {SPLIT_TITLES[s]} | {v['et-ct']['n']} | {_ci(v['et-MM'])} | {_ci(v['ct-MM'])} | "
                         f"{_ci(v['e2e-M'])} | {_diff(v['et-ct'])} | {_diff(v['ct-e2e'])} | {_diff(v['et-e2e'])} |")
        if "hw-open" in d["per_split"]:
            form = d["per_split"]["hw-open"]["form"]
            lines += ["", "Open answers in the form the question asks for (HW-open): " +
                      ", ".join(f"{SYSTEM_TITLES[k]} {v:.1f}%" for k, v in form.items()) + "."]
        lines += ["", "Intervals are paired (same items); the ± is the half-width of the difference's interval "
                  "(the precision this n gave)."]
    elif f.key == "d":
        lines += ["| split | thinking on | thinking off | gain |", "|---|---|---|---|"]
        lines += [f"| {SPLIT_TITLES[s]} | {_ci(v['think'])} | {_ci(v['direct'])} | {_diff(v['gain'])} |"
                  for s, v in d["per_split"].items()]
    return lines + [""]


def _cells_md(results: dict) -> list[str]:
    lines = ["## Every cell", "", "Accuracy % with its 95% interval (bootstrap over images) against the baseline of "
             "the same items (a uniform pick among the options; for open questions the most common answer of the "
             "question type). *Learned*: the interval is above the baseline.", "",
             "| cell | n | accuracy % (95% CI) | baseline % | above baseline |", "|---|---:|---|---:|---|"]
    for c in results["cells"]:
        form = f"; right form {c['form']:.1f}%" if "form" in c else ""
        lines.append(f"| `{c['cell']}` | {c['accuracy']['n']} | {_ci(c['accuracy'])}{form} | {c['baseline']:.1f} | "
                     f"{'yes' if c['above_baseline'] else 'no'} |")
    if results.get("missing_cells"):
        lines += ["", f"Not evaluated (the run did not finish them): {', '.join(results['missing_cells'])}."]
    return lines + [""]


def _training_md(meta: dict) -> list[str]:
    stages: dict[str, dict] = {}
    for r in meta.get("runs", []):
        for name, j in (r.get("jobs") or {}).items():
            if j["kind"] in ("train", "vision"):
                stages[name.split(":", 1)[1]] = j
    if not stages:
        return []
    lines = ["## Training", "", "| stage | steps | first loss | last loss | seconds (this machine) |",
             "|---|---:|---:|---:|---:|"]
    for name, j in stages.items():
        first, last = j.get("first_loss"), j.get("last_loss")
        lines.append(f"| {name} | {j.get('steps')} | {first if first is None else round(first, 3)} | "
                     f"{last if last is None else round(last, 3)} | {j.get('seconds')} |")
    return lines + [""]


def write_report(folder: Path, preset: Preset, meta: dict, results: dict, est: dict,
                 command: str | None = None) -> dict:
    """study.md, study.json and the figures into `folder`; returns study.json's content."""
    folder.mkdir(parents=True, exist_ok=True)
    findings: list[Finding] = results["findings"]
    figures = draw_all(findings, folder)
    cmd = command or f"edge study --preset {preset.name} --out OUT"
    lines = [f"# The downscaling study — preset `{preset.name}`", "",
             f"{preset.description}. Regenerate: `{cmd}` (add `--resume` to continue an interrupted run).", "",
             "| finding | measured effect | verdict |", "|---|---|---|"]
    for f in findings:
        main_name, main = next(iter(f.effects.items()))
        lines.append(f"| ({f.key}) {f.title} | {main_name}: {fmt(main)} | **{f.verdict}** |")
    lines += ["", "Verdicts follow the rules written under each finding; effects are differences of accuracy "
              "on the same items (points), with 95% intervals from a bootstrap that resamples images. A tie is an "
              f"interval inside ±{preset.margin:g} points.", "", "## Settings", "", *_settings(preset), "",
              "## Runs", "", *_runs(meta, est), "", *_method_md(preset)]
    for f in findings:
        lines += _finding_md(f, figures.get(f.key))
    if TRIED.get(preset.name):
        lines += ["## What was tried before this run", "", *(f"- {t}" for t in TRIED[preset.name]), ""]
    lines += _cells_md(results)
    lines += _training_md(meta)
    report = {"format": "edge-study-report", "version": 1, "preset": meta["preset"], "runs": meta["runs"],
              "estimate": est, "learned": results["learned"], "missing_cells": results["missing_cells"],
              "cells": results["cells"], "findings": [f.to_dict() for f in findings], "figures": figures}
    atomic_write_text(folder / JSON, json.dumps(report, indent=1))
    atomic_write_text(folder / MD, "\n".join(lines) + "\n")
    return report


def publish(report_dir: Path, doc: Path) -> Path:
    """The report as `doc` (e.g. docs/study.md), its figures and study.json in
    DOC_FOLDER/results/DOC_STEM/ (links rewritten); returns that folder."""
    doc = Path(doc)
    media = doc.parent / "results" / doc.stem
    media.mkdir(parents=True, exist_ok=True)
    text = (report_dir / MD).read_text(encoding="utf-8")
    rel = media.relative_to(doc.parent).as_posix()
    for name in [*(n for n, _ in FIGURES.values()), JSON]:
        src = report_dir / name
        if src.is_file():
            atomic_write_bytes(media / name, src.read_bytes())
        text = text.replace(f"]({name})", f"]({rel}/{name})")
    atomic_write_text(doc, text)
    return media
