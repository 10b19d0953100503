"""Regenerate the shipped default bundle from scratch: `edge train default-bundle`.

    1. data        the synthetic world (training.data.synth): train / val / held-out test /
                   in-distribution test splits, 128 px images
    2. tokenizer   a ~2k byte-level BPE trained on the training split's text (Qwen3 specials)
    3. stages      training/recipes/default-bundle.yaml: align -> instruct -> extract, and
                   the reasoner; with baselines also caption and e2e (same compute as extract)
    4. export      GGUF (q8_0) + ONNX (int8) bundle with example images and questions
    5. evaluate    the runtime's pipeline on the test splits: Extract+Think, Caption+Think,
                   the end-to-end baseline and chance, per category -> docs/results/
    6. install     the bundle replaces edge/assets/default_bundle (atomically)

Every step is skipped when its output exists (stages resume from checkpoints), so an
interrupted regeneration continues where it stopped; `fresh` starts over.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from runtime.atomic import atomic_write_text
from runtime.errors import ConfigError
from runtime.progress import Progress
from training.config import RECIPES
from training.corpus import tokenizer_corpus

log = logging.getLogger(__name__)


RECIPE = RECIPES / "default-bundle.yaml"
REASONER_STAGE = "reasoner-value"  # the reasoner every exported system ships
BUNDLE_STAGES = ("vision", "align", "instruct", "extract", "reasoner", REASONER_STAGE)
BASELINE_STAGES = ("caption", "e2e")
TOKENIZER_VOCAB = 2000  # BPE entries; + 26 Qwen3 specials = 2026 ids (embedding rows: 2048)


@dataclass(frozen=True)
class DataPlan:
    """The default bundle's synthetic data (sizes chosen for a ~1-2 h CPU regeneration)."""

    seed: int = 0
    image_size: int = 96  # = siglip-edge-s: one 32 px patch per grid cell
    train: int = 8000
    val: int = 100
    test: int = 300
    test_iid: int = 100
    questions_per_image: int = 3


@dataclass(frozen=True)
class DefaultBundleRun:
    work: Path = Path("runs/default-bundle")
    out: Path | None = None  # None: the shipped location
    results: Path = Path("docs/results")
    baselines: bool = True
    eval_limit: int | None = None
    overrides: tuple[str, ...] = ()
    fresh: bool = False
    data: DataPlan = field(default_factory=DataPlan)
    recipe: Path = RECIPE
    tokenizer_vocab: int = TOKENIZER_VOCAB


def make_data(work: Path, plan: DataPlan) -> Path:
    from training.data.scene import SceneConfig
    from training.data.synth import SynthConfig, SynthDataset, write_dataset

    out = work / "data"
    config = SynthConfig(seed=plan.seed, scene=SceneConfig(image_size=plan.image_size), train=plan.train,
                         val=plan.val, test=plan.test, test_iid=plan.test_iid,
                         questions_per_image=plan.questions_per_image)
    if (out / "dataset.json").is_file():
        if SynthDataset(out).config == config:
            return out
        raise ConfigError(f"{out} holds a dataset with other settings: remove it or use --fresh")
    write_dataset(out, config)
    return out


def make_tokenizer(work: Path, data_dir: Path, vocab_size: int = TOKENIZER_VOCAB) -> Path:
    from training.tokenizer_build import save_tokenizer, train_bpe_tokenizer

    out = work / "tokenizer"
    if (out / "tokenizer.json").is_file():
        return out
    tok = train_bpe_tokenizer(tokenizer_corpus(data_dir), vocab_size=vocab_size)
    save_tokenizer(tok, out)
    return out


def load_default_recipe(run: DefaultBundleRun):
    from training.config import apply_overrides, read_recipe_data, recipe_from_data

    data = read_recipe_data(run.recipe)
    data = apply_overrides(data, [f"vars.work={run.work}", *run.overrides])
    recipe = recipe_from_data(data, where=run.recipe.name)
    missing = [s for s in (*BUNDLE_STAGES, *BASELINE_STAGES) if s not in recipe.stages]
    if missing:
        raise ConfigError(f"{run.recipe}: the default-bundle recipe needs stages {missing}")
    return recipe


def _timed(timings: dict[str, float], name: str, fn, *a, **kw):
    t0 = time.perf_counter()
    out = fn(*a, **kw)
    timings[name] = round(timings.get(name, 0.0) + time.perf_counter() - t0, 1)
    return out


def regenerate(run: DefaultBundleRun, progress: Progress | None = None) -> dict:
    """Run every step (skipping finished ones); returns a report with timings and results."""
    from training.loop import train_stage

    progress = progress or (lambda msg, frac: None)
    work = Path(run.work)
    if run.fresh and work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    t_start = time.perf_counter()
    progress("data", 0.0)
    data_dir = _timed(timings, "data", make_data, work, run.data)
    progress("tokenizer", 0.02)
    _timed(timings, "tokenizer", make_tokenizer, work, data_dir, run.tokenizer_vocab)
    recipe = load_default_recipe(run)
    stages = [*BUNDLE_STAGES, *(BASELINE_STAGES if run.baselines else ())]
    results = {}
    for i, name in enumerate(stages):
        def sub(msg: str, frac: float, _i=i) -> None:
            progress(msg, 0.03 + 0.77 * (_i + frac) / len(stages))

        res = _timed(timings, f"stage {name}", train_stage, recipe, name, progress=sub)
        results[name] = {"steps": res.steps, "first_loss": res.first_loss, "last_loss": res.last_loss,
                         "train_seconds": res.seconds, "tokens": res.tokens, "examples": res.examples}
    from edge.recipes.default_bundle.evaluate import (
        evaluate_all,
        export_default,
        install_bundle,
        write_results,
    )

    progress("export", 0.8)
    bundle = _timed(timings, "export", export_default, recipe, work, data_dir)
    report: dict = {"bundle": str(bundle), "stages": results, "timings_s": timings}
    progress("evaluate", 0.85)
    modes = ("extract-think", "caption-think", "end-to-end") if run.baselines else ("extract-think",)
    scores = _timed(timings, "evaluate", evaluate_all, recipe, work, data_dir, bundle, modes=modes,
                    limit=run.eval_limit, progress=lambda m, f: progress(m, 0.85 + 0.13 * f))
    report["accuracy"] = scores
    if run.baselines:
        report["table"] = write_results(scores, results, Path(run.results))
    progress("install", 0.98)
    out = _timed(timings, "install", install_bundle, bundle, run.out, recipe=recipe, work=work,
                 data_dir=data_dir)
    report["bundle"] = str(out)
    report["seconds"] = round(time.perf_counter() - t_start, 1)
    atomic_write_text(work / "report.json", json.dumps(report, indent=1))
    return report
