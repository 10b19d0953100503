"""What a default-bundle regeneration does: its data, its run folder, the systems it compares."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import overload

from runtime.manifest import Budgets
from training.config import RECIPES

RECIPE = RECIPES / "default-bundle.yaml"
REASONER_STAGE = "reasoner"  # the reasoner every exported system ships
BUNDLE_STAGES = ("vision", "align", "instruct", "extract", REASONER_STAGE)
BASELINE_STAGES = ("caption", "e2e")
TOKENIZER_VOCAB = 3000  # BPE entries; + 26 Qwen3 specials = 3026 ids (embedding rows: 3072)
DEFAULT_RUN = Path("runs/default-bundle")

# Budgets sized for the default bundle's outputs (extractions <= ~160 tokens, traces
# <= ~130): the runtime's defaults target real models.
DEFAULT_BUDGETS = Budgets(hint=32, extraction=224, thinking=256, answer=24, non_thinking_answer=24)

# mode -> (title, perception stage, with the reasoner)
SYSTEMS = {
    "extract-think": ("Extract+Think", "extract", True),
    "caption-think": ("Caption+Think", "caption", True),
    "end-to-end": ("end-to-end", "e2e", False),
}
SPLITS = ("test", "test_iid")  # the training world's test splits
SPLIT_TITLES = {"test": "held-out compositions (test)", "test_iid": "in-distribution (test_iid)",
                "heldout-open": "held-out world, open answers", "heldout-mc": "held-out world, multiple choice"}
HELDOUT_FORMS = ("heldout-open", "heldout-mc")
RESULT_FILES = ("default-bundle-accuracy.md", "default-bundle-accuracy.json", "default-bundle-accuracy.png")


@dataclass(frozen=True)
class DataPlan:
    """The default bundle's synthetic data: the widened training world (everyday layouts,
    pictures drawn at 32-512 px that the model's preprocessing resizes to 96)."""

    seed: int = 0
    image_size: int = 96  # = siglip-edge-m: 2x2 patches of 16 px per grid cell
    min_size: int = 32  # each picture's own size, log-uniform in this range
    max_size: int = 512
    chart_prob: float = 0.1
    free_prob: float = 0.5  # share of the other pictures with an everyday layout
    train: int = 12000
    val: int = 200
    test: int = 300
    test_iid: int = 100
    questions_per_image: int = 3
    # Shapes turned further and drawn in varied proportions (SceneConfig.max_turn,
    # shape_variety; neither draws from the scene sampler, so the words of the data, the
    # tokenizer and the reasoner stay the same). Off in the shipped bundle: tried with 30
    # degrees and 1.0 (docs/training.md, "Perception experiments"), shapes were named no
    # better on the held-out world.
    max_turn: float = 0.0
    shape_variety: float = 0.0


@dataclass(frozen=True)
class HeldoutPlan:
    """The held-out world's test splits (docs/heldout.md): one question per picture, the
    same items asked open and as multiple choice. Seed 1 and n = 600 are the split the
    previous bundle's "before" numbers were measured on."""

    n: int = 600
    seed: int = 1


class _RunFolder:
    """A folder of the run: `out / name`, read like a property."""

    def __init__(self, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, run: None, owner: type) -> _RunFolder: ...
    @overload
    def __get__(self, run: DefaultBundleRun, owner: type | None = None) -> Path: ...

    def __get__(self, run: DefaultBundleRun | None, owner: type | None = None) -> Path | _RunFolder:
        return self if run is None else Path(run.out) / self.name


@dataclass(frozen=True)
class DefaultBundleRun:
    """One regeneration. Everything goes into the run folder `out`; the shipped bundle and
    the checkout's docs/results are replaced only when `install` is set."""

    out: Path = DEFAULT_RUN
    install: bool = False
    install_bundle_to: Path | None = None  # None: the shipped edge/assets/default_bundle
    install_results_to: Path | None = None  # None: the checkout's docs/results
    baselines: bool = True
    eval_limit: int | None = None
    overrides: tuple[str, ...] = ()
    fresh: bool = False
    data: DataPlan = field(default_factory=DataPlan)
    heldout: HeldoutPlan | None = field(default_factory=HeldoutPlan)  # None: no held-out world evaluation
    recipe: Path = RECIPE
    tokenizer_vocab: int = TOKENIZER_VOCAB
    workers: int = 2  # stages (and evaluations) run at a time, each its own one-thread process

    # The run folder's layout.
    data_dir = _RunFolder("data")
    tokenizer_dir = _RunFolder("tokenizer")
    heldout_dir = _RunFolder("heldout")
    logs_dir = _RunFolder("logs")
    bundles_dir = _RunFolder("bundles")
    eval_dir = _RunFolder("eval")
    results_dir = _RunFolder("results")
    # the finished bundle (with examples): what --install copies over the shipped one
    bundle_dir = _RunFolder("bundle")
