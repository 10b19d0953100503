"""The regeneration's steps in order, each skipped when its output is in the run folder."""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from edge.recipes.default_bundle.bundles import export_default
from edge.recipes.default_bundle.config import (
    BASELINE_STAGES,
    BUNDLE_STAGES,
    HELDOUT_FORMS,
    DataPlan,
    DefaultBundleRun,
)
from edge.recipes.default_bundle.evaluate import evaluate_all
from edge.recipes.default_bundle.install import install, install_targets, make_bundle
from edge.recipes.default_bundle.report import write_results
from edge.recipes.default_bundle.stages import train_stages
from runtime.atomic import atomic_write_text, ensure_writable_dir
from runtime.errors import ConfigError
from runtime.progress import Progress
from training.config import Recipe, apply_overrides, read_recipe_data, recipe_from_data
from training.corpus import tokenizer_corpus
from training.data.heldout import HeldoutConfig, write_split
from training.data.scene import SceneConfig
from training.data.synth import SynthConfig, SynthDataset, write_dataset
from training.tokenizer_build import save_tokenizer, train_bpe_tokenizer

log = logging.getLogger(__name__)

T = TypeVar("T")


def make_data(out: Path, plan: DataPlan) -> tuple[Path, bool]:
    """The synthetic dataset in `out`; (path, skipped). Other settings already there: an error."""
    scene = SceneConfig(image_size=plan.image_size, min_size=plan.min_size, max_size=plan.max_size,
                        chart_prob=plan.chart_prob, free_prob=plan.free_prob, max_turn=plan.max_turn,
                        shape_variety=plan.shape_variety)
    config = SynthConfig(seed=plan.seed, scene=scene, train=plan.train, val=plan.val, test=plan.test,
                         test_iid=plan.test_iid, questions_per_image=plan.questions_per_image)
    if (out / "dataset.json").is_file():
        if SynthDataset(out).config == config:
            return out, True
        raise ConfigError(f"{out} holds a dataset with other settings: remove it or use --fresh")
    write_dataset(out, config)
    return out, False


def make_tokenizer(out: Path, data_dir: Path, vocab_size: int) -> tuple[Path, bool]:
    """A byte-level BPE trained on the dataset's text, in `out`; (path, skipped)."""
    if (out / "tokenizer.json").is_file():
        return out, True
    save_tokenizer(train_bpe_tokenizer(tokenizer_corpus(data_dir), vocab_size=vocab_size), out)
    return out, False


def load_default_recipe(run: DefaultBundleRun) -> Recipe:
    data = read_recipe_data(run.recipe)
    data = apply_overrides(data, [f"vars.work={run.out}", *run.overrides])
    recipe = recipe_from_data(data, where=run.recipe.name)
    missing = [s for s in (*BUNDLE_STAGES, *BASELINE_STAGES) if s not in recipe.stages]
    if missing:
        raise ConfigError(f"{run.recipe}: the default-bundle recipe needs stages {missing}")
    return recipe


class _Steps:
    """Times each step and remembers which ones found their output in place."""

    def __init__(self) -> None:
        self.timings: dict[str, float] = {}
        self.skipped: list[str] = []

    def __call__(self, name: str, fn: Callable[..., tuple[T, bool]], *a: Any, **kw: Any) -> T:
        t0 = time.perf_counter()
        out, skipped = fn(*a, **kw)
        self.timings[name] = round(self.timings.get(name, 0.0) + time.perf_counter() - t0, 1)
        if skipped:
            self.skipped.append(name)
        return out


def make_heldout(run: DefaultBundleRun) -> tuple[dict[str, Path], bool]:
    """The held-out world's open and multiple-choice splits (same seed: the same items);
    (form -> folder, skipped). Never trained on: only the evaluation reads them."""
    plan = run.heldout
    out: dict[str, Path] = {}
    skipped = True
    if plan is None:
        return out, skipped
    for form in HELDOUT_FORMS:
        folder = run.heldout_dir / form
        if not (folder / "split.json").is_file():
            skipped = False
            write_split(folder, HeldoutConfig(n=plan.n, seed=plan.seed, multiple_choice=form.endswith("mc")),
                        overwrite=True)
        out[form] = folder
    return out, skipped


def regenerate(run: DefaultBundleRun, progress: Progress | None = None) -> dict:
    """Run every step (skipping finished ones); returns a report with timings and results."""
    progress = progress or (lambda msg, frac: None)
    out = Path(run.out)
    if run.install:  # a target that cannot be written fails now, not after hours of training
        ensure_writable_dir(install_targets(run)[0].parent)
    if run.fresh and out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    step = _Steps()
    t_start = time.perf_counter()
    progress("data", 0.0)
    step("data", make_data, run.data_dir, run.data)
    heldout = step("heldout data", make_heldout, run)
    progress("tokenizer", 0.02)
    step("tokenizer", make_tokenizer, run.tokenizer_dir, run.data_dir, run.tokenizer_vocab)
    recipe = load_default_recipe(run)
    names = [*BUNDLE_STAGES, *(BASELINE_STAGES if run.baselines else ())]
    t0 = time.perf_counter()
    results = train_stages(recipe, run.recipe, [f"vars.work={run.out}", *run.overrides], names, run.logs_dir,
                           workers=run.workers, progress=lambda m, f: progress(m, 0.03 + 0.77 * f))
    step.timings["stages"] = round(time.perf_counter() - t0, 1)
    for name, res in results.items():
        step.timings[f"stage {name}"] = res["wall_seconds"]
        if res["skipped"]:
            step.skipped.append(f"stage {name}")
    progress("export", 0.8)
    evaluated = step("export", export_default, recipe, run.bundles_dir)
    report: dict = {"run": str(out), "stages": results}
    progress("evaluate", 0.85)
    modes = ("extract-think", "caption-think", "end-to-end") if run.baselines else ("extract-think",)
    scores = step("evaluate", evaluate_all, recipe, run, evaluated, heldout, modes=modes,
                  progress=lambda m, f: progress(m, 0.85 + 0.12 * f))
    report["accuracy"] = scores
    if run.baselines:
        report["table"] = write_results(scores, results, run.results_dir)
        report["results"] = str(run.results_dir)
    progress("bundle", 0.97)
    report["bundle"] = str(step("bundle", make_bundle, recipe, run, evaluated))
    if run.install:
        progress("install", 0.99)
        report["installed"] = step("install", lambda: (install(run, run.bundle_dir), False))
    report["timings_s"] = step.timings
    report["skipped"] = step.skipped
    report["seconds"] = round(time.perf_counter() - t_start, 1)
    atomic_write_text(out / "report.json", json.dumps(report, indent=1))
    return report
