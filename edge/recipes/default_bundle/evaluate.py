"""Export the default bundle's models and measure them with the runtime's own pipeline.

Three systems are compared on the synthetic world's test splits, each exported to a
bundle and run by `runtime.pipeline.ExtractThink` (llama.cpp backend, greedy decoding,
the bundle's budgets, NoWait on) exactly as `edge run` runs them:

    Extract+Think   extraction-tuned perception + reasoner   mode "extract-think" (focus hint on)
    Caption+Think   caption-tuned perception + same reasoner mode "caption-think"
    end-to-end      instruction-tuned perception, answering  mode "end-to-end"

plus chance: 1/(number of options) for multiple choice, and for open questions the
accuracy of always giving the most frequent training answer of that question type.
"""

from __future__ import annotations

import json
import logging
import re
from collections import Counter, defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from edge.recipes.default_bundle.run import REASONER_STAGE
from runtime.atomic import atomic_write_text
from runtime.manifest import Budgets
from runtime.progress import Progress

log = logging.getLogger(__name__)


# Budgets sized for the default bundle's outputs (extractions <= ~160 tokens, traces
# <= ~130): the runtime's defaults target real models.
DEFAULT_BUDGETS = Budgets(hint=32, extraction=224, thinking=256, answer=24, non_thinking_answer=24)
SYSTEMS = {
    "extract-think": ("Extract+Think", "extract", True),
    "caption-think": ("Caption+Think", "caption", True),
    "end-to-end": ("end-to-end", "e2e", False),
}
SPLITS = ("test", "test_iid")
SPLIT_TITLES = {"test": "held-out compositions (test)", "test_iid": "in-distribution (test_iid)"}


# ---------------------------------------------------------------------------------------
# Export


def export_system(recipe: Any, perception_stage: str, reasoner_stage: str | None, out: Path, *,
                  formats: tuple[str, ...] = ("gguf",), quants: tuple[str, ...] = ("q8_0",),
                  examples: tuple[dict[str, str], ...] = (), example_files: tuple[Path, ...] = (),
                  name: str | None = None, verify: bool = True) -> Path:
    from export.bundle_writer import ExportRequest, export_bundle
    from training.model_init import final_dir

    req = ExportRequest(
        out=out, perception=final_dir(recipe, perception_stage),
        reasoner=final_dir(recipe, reasoner_stage) if reasoner_stage else None,
        formats=formats, quants=quants, name=name or out.name, budgets=DEFAULT_BUDGETS,
        examples=examples, example_files=example_files, overwrite=True, verify=verify,
    )
    return export_bundle(req)


def export_default(recipe: Any, work: Path, data_dir: Path) -> Path:
    """The Extract+Think bundle in both formats (examples are added at install time)."""
    out = work / "bundles" / "extract-think"
    if (out / "manifest.json").is_file():
        return out
    return export_system(recipe, "extract", REASONER_STAGE, out, formats=("gguf", "onnx"),
                         quants=("q8_0", "int8"), name="extract-think-default")


# ---------------------------------------------------------------------------------------
# Scoring


def _norm(text: str | None) -> str:
    return re.sub(r"[^\w]+", " ", (text or "").lower()).strip()


def is_correct(rec: dict, answer: str | None) -> bool:
    """Multiple choice: the option letter. Open: the answer or one of its aliases."""
    if rec.get("options"):
        return answer is not None and answer.strip().upper() == rec["answer"]
    want = {_norm(rec["answer"]), *(_norm(a) for a in rec.get("aliases") or [])}
    return _norm(answer) in want


def majority_answers(train_records: Iterable[dict]) -> dict[str, str]:
    """Most frequent open answer per question type (the open-question chance baseline)."""
    counts: dict[str, Counter] = defaultdict(Counter)
    for rec in train_records:
        if not rec.get("options"):
            counts[rec["qtype"]][_norm(rec["answer"])] += 1
    return {q: c.most_common(1)[0][0] for q, c in counts.items()}


def chance_of(rec: dict, majority: dict[str, str]) -> float:
    if rec.get("options"):
        return 1.0 / len(rec["options"])
    want = {_norm(rec["answer"]), *(_norm(a) for a in rec.get("aliases") or [])}
    return 1.0 if majority.get(rec["qtype"]) in want else 0.0


def summarize(rows: list[dict], key: str) -> dict[str, dict[str, float]]:
    """category -> {accuracy, n} (plus "overall") for one score column of `rows`."""
    by: dict[str, list[float]] = defaultdict(list)
    for r in rows:
        by[r["category"]].append(float(r[key]))
        by["overall"].append(float(r[key]))
    return {c: {"accuracy": 100.0 * sum(v) / len(v), "n": len(v)} for c, v in by.items()}


# ---------------------------------------------------------------------------------------
# Running the systems


def run_system(bundle: Path, mode: str, records: list[dict], data_dir: Path, *, hint: bool = True,
               sampling: str = "greedy", threads: int = 1, progress: Progress | None = None) -> list[dict]:
    from runtime.pipeline import ExtractThink

    progress = progress or (lambda m, f: None)
    out = []
    with ExtractThink.load(bundle, backend="llamacpp", threads=threads, verify="size") as et:
        for i, rec in enumerate(records):
            res = et.answer(str(data_dir / rec["image"]), rec["question"], rec.get("options"), mode=mode,
                            hint=hint, sampling=sampling)
            out.append({"id": rec["id"], "category": rec["category"], "qtype": rec["qtype"],
                        "answer": res.answer, "correct": is_correct(rec, res.answer),
                        "hint": res.hint, "extraction": res.extraction, "thinking": res.thinking,
                        "answer_text": res.answer_text,
                        "tokens": {k: s.tokens for k, s in res.stages.items()}})
            if i % 10 == 0 or i + 1 == len(records):
                progress(f"{mode}: {i + 1}/{len(records)}", (i + 1) / len(records))
    return out


def evaluate_all(recipe: Any, work: Path, data_dir: Path, bundle: Path, *, limit: int | None = None,
                 modes: tuple[str, ...] = tuple(SYSTEMS), progress: Progress | None = None) -> dict:
    """Accuracy per split, system and category (+ chance); raw rows go to work/eval/."""
    from training.data.synth import SynthDataset

    progress = progress or (lambda m, f: None)
    ds = SynthDataset(data_dir)
    majority = majority_answers(ds.records("train"))
    bundles = {"extract-think": bundle}
    for mode in [m for m in modes if m != "extract-think"]:
        _, stage, with_reasoner = SYSTEMS[mode]
        out = work / "bundles" / mode
        if not (out / "manifest.json").is_file():
            export_system(recipe, stage, REASONER_STAGE if with_reasoner else None, out)
        bundles[mode] = out
    scores: dict = {"splits": {}, "systems": {m: SYSTEMS[m][0] for m in modes}, "n_multiple_choice": {}}
    jobs = [(s, m) for s in SPLITS if s in ds.splits for m in modes]
    for j, (split, mode) in enumerate(jobs):
        records = list(ds.records(split))[:limit] if limit else list(ds.records(split))
        raw = work / "eval" / f"{split}-{mode}.jsonl"
        if raw.is_file() and len(raw.read_text().splitlines()) == len(records):
            rows = [json.loads(x) for x in raw.read_text().splitlines()]
        else:
            rows = run_system(bundles[mode], mode, records, data_dir,
                              progress=lambda m, f, _j=j, _s=split: progress(f"{_s} {m}", (_j + f) / len(jobs)))
            atomic_write_text(raw, "".join(json.dumps(r) + "\n" for r in rows))
        split_scores = scores["splits"].setdefault(split, {})
        split_scores[mode] = summarize(rows, "correct")
        if "chance" not in split_scores:
            chance_rows = [{"category": r["category"], "chance": chance_of(r, majority)} for r in records]
            split_scores["chance"] = summarize(chance_rows, "chance")
            scores["n_multiple_choice"][split] = sum(1 for r in records if r.get("options"))
    return scores


# ---------------------------------------------------------------------------------------
# Reporting


CATEGORY_ORDER = ("coarse_perception", "fine_grained_perception", "instance_reasoning",
                  "logical_reasoning", "math", "grounding", "overall")


def table_markdown(scores: dict, stages: dict | None = None) -> str:
    cols = ["chance", "end-to-end", "caption-think", "extract-think"]
    titles = {"chance": "chance", "end-to-end": "end-to-end", "caption-think": "Caption+Think",
              "extract-think": "Extract+Think"}
    lines = []
    for split, sc in scores["splits"].items():
        lines.append(f"**{SPLIT_TITLES.get(split, split)}**, accuracy %\n")
        lines.append("| category | n | " + " | ".join(titles[c] for c in cols) + " |")
        lines.append("|---|---:|" + "---:|" * len(cols))
        cats = [c for c in CATEGORY_ORDER if c in sc.get("extract-think", sc["chance"])]
        for cat in cats:
            n = sc["chance"][cat]["n"]
            vals = []
            for c in cols:
                v = sc.get(c, {}).get(cat, {}).get("accuracy")
                vals.append("-" if v is None else f"{v:.1f}")
            name = cat.replace("_", " ")
            if cat == "overall":
                name, vals = "**overall**", [f"**{v}**" for v in vals]
            lines.append(f"| {name} | {n} | " + " | ".join(vals) + " |")
        lines.append("")
    return "\n".join(lines)


def plot_scores(scores: dict, out: Path) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    splits = list(scores["splits"])
    cols = [("chance", "chance", "#bbbbbb"), ("end-to-end", "end-to-end", "#8da0cb"),
            ("caption-think", "Caption+Think", "#fc8d62"), ("extract-think", "Extract+Think", "#66c2a5")]
    fig, axes = plt.subplots(len(splits), 1, figsize=(9, 3.2 * len(splits)), dpi=100, squeeze=False)
    for ax, split in zip(axes[:, 0], splits, strict=True):
        sc = scores["splits"][split]
        cats = [c for c in CATEGORY_ORDER if c in sc["chance"]]
        width = 0.8 / len(cols)
        for k, (key, label, color) in enumerate(cols):
            vals = [sc.get(key, {}).get(c, {}).get("accuracy", 0.0) for c in cats]
            ax.bar([i + (k - 1.5) * width for i in range(len(cats))], vals, width, label=label, color=color)
        ax.set_xticks(range(len(cats)))
        ax.set_xticklabels([c.replace("_", "\n") for c in cats], fontsize=8)
        ax.set_ylabel("accuracy %")
        ax.set_ylim(0, 100)
        ax.set_title(SPLIT_TITLES.get(split, split), fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    axes[0, 0].legend(ncol=4, fontsize=8, loc="upper right")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    tmp.replace(out)
    return out


def write_results(scores: dict, stages: dict, results_dir: Path) -> str:
    results_dir.mkdir(parents=True, exist_ok=True)
    table = table_markdown(scores, stages)
    atomic_write_text(results_dir / "default-bundle-accuracy.json",
                      json.dumps({"scores": scores, "stages": stages}, indent=1))
    atomic_write_text(results_dir / "default-bundle-accuracy.md", table)
    plot_scores(scores, results_dir / "default-bundle-accuracy.png")
    return table


# ---------------------------------------------------------------------------------------
# Examples and install


def _answers_everywhere(bundle: Path, data_dir: Path, recs: list[dict]) -> bool:
    """Does the bundle answer every record right on both backends, greedy and with the
    default ("paper") sampling `edge run` uses, with one thread and the default threads?"""
    from runtime.pipeline import ExtractThink

    for backend, threads in (("llamacpp", None), ("llamacpp", 1), ("onnx", None), ("onnx", 1)):
        with ExtractThink.load(bundle, backend=backend, threads=threads, verify="size") as et:
            for rec in recs:
                for sampling in ("greedy", "paper"):
                    res = et.answer(str(data_dir / rec["image"]), rec["question"], rec.get("options"),
                                    sampling=sampling, seed=0)
                    if not is_correct(rec, res.answer):
                        return False
    return True


def pick_examples(work: Path, data_dir: Path, bundle: Path, k: int = 3, tries: int = 20) -> list[dict]:
    """Test questions of one image that Extract+Think answers correctly on every backend
    and sampling setting `edge run` may use: multiple choice first, varied categories."""
    from training.data.synth import SynthDataset

    raw = work / "eval" / "test-extract-think.jsonl"
    rows = {json.loads(x)["id"]: json.loads(x) for x in raw.read_text().splitlines()} if raw.is_file() else {}
    by_image: dict[str, list[dict]] = defaultdict(list)
    for rec in SynthDataset(data_dir).records("test"):
        by_image[rec["image"]].append(rec)
    candidates = []
    for image, recs in by_image.items():
        if len(recs) >= 2 and all(rows.get(r["id"], {}).get("correct") for r in recs):
            score = (sum(1 for r in recs if r.get("options")), len({r["category"] for r in recs}))
            candidates.append((score, image, recs))
    candidates.sort(key=lambda c: c[0], reverse=True)
    for _, image, recs in candidates[:tries]:
        recs = sorted(recs, key=lambda r: r.get("options") is None)[:k]
        if _answers_everywhere(bundle, data_dir, recs):
            return [{"image": f"examples/{Path(image).name}", "question": r["question"],
                     "options": "\n".join(r["options"] or []), "answer": r["answer"],
                     "answer_text": r["answer_text"], "category": r["category"], "source": image}
                    for r in recs]
    log.warning("no test image whose questions the bundle answers right everywhere: no examples")
    return []


def install_bundle(bundle: Path, out: Path | None, *, recipe: Any = None, work: Path | None = None,
                   data_dir: Path | None = None) -> Path:
    """Re-export the Extract+Think bundle with its examples into `out` (default: shipped)."""
    if out is None:
        from runtime.defaults import default_bundle_path

        out = default_bundle_path(must_exist=False)
    if recipe is None or work is None or data_dir is None:
        raise ValueError("install_bundle needs the recipe, work and data folders")
    examples = pick_examples(work, data_dir, bundle)
    files = tuple(dict.fromkeys(data_dir / e["source"] for e in examples))
    manifest_examples = tuple({k: v for k, v in e.items() if k != "source"} for e in examples)
    return export_system(recipe, "extract", REASONER_STAGE, Path(out), formats=("gguf", "onnx"),
                         quants=("q8_0", "int8"), examples=manifest_examples, example_files=files,
                         name="extract-think-default")
