"""The study's grid: which stages train, which systems are exported, which cells are evaluated.

Stages (one recipe per decoder size, all writing into OUT/stages; the tower is shared):

    vision                     the tower learns the world's grid cells (laptop / smoke only;
                               the gpu preset loads SigLIP-so400m), saved as OUT/tower
    align-P -> instruct-P      perception P in {S, M}, from OUT/tower + a decoder of size P
    instruct-P -> e2e-P        direct answers      } the same steps and batch from the same
    instruct-P -> caption-P    captions            } checkpoint: equal training compute
    instruct-P -> extract-P    extractions         }
    reasoner-R                 R in {S, M}: traces (half over captions, half over extractions;
                               half with thinking, half answering directly) + focus hints

Systems (bundles): e2e-S, e2e-M (end-to-end), ct-MM (Caption+Think), et-PR for P, R in {S, M}
(Extract+Think). A cell is one system answering the first N items of one split, with thinking
on or off and, for the image-need measurement of finding (a), a blank image instead of the real one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from benchmarks.study.presets import SIZES, Preset
from training.models.sizes import HUB_IDS

PERCEPTION_STAGES = ("align", "instruct", "e2e", "caption", "extract")

# system -> (runtime mode, perception stage, reasoner stage or None)
SYSTEMS: dict[str, tuple[str, str, str | None]] = {
    "e2e-S": ("end-to-end", "e2e-S", None),
    "e2e-M": ("end-to-end", "e2e-M", None),
    "ct-MM": ("caption-think", "caption-M", "reasoner-M"),
    **{f"et-{p}{r}": ("extract-think", f"extract-{p}", f"reasoner-{r}") for p in SIZES for r in SIZES},
}
SYSTEM_TITLES = {"e2e-S": "end-to-end (S)", "e2e-M": "end-to-end (M)", "ct-MM": "Caption+Think (M, M)",
                 **{f"et-{p}{r}": f"Extract+Think ({p}, {r})" for p in SIZES for r in SIZES}}
SPLIT_TITLES = {"id": "in-domain (ID)", "hc": "held-out compositions (HC)", "hw": "held-out world (HW)",
                "hw-open": "held-out world, open answers (HW-open)"}


@dataclass(frozen=True)
class Cell:
    """One evaluation: a system on the first `n` items of a split."""

    system: str
    split: str
    n: int
    thinking: bool = True
    blank: bool = False  # the image replaced by a blank grey one (how much an item needs the image)

    @property
    def name(self) -> str:
        tags = ("" if self.thinking or SYSTEMS[self.system][0] == "end-to-end" else ".nothink") + \
               (".blank" if self.blank else "")
        return f"{self.system}{tags}.{self.split}"

    @property
    def mode(self) -> str:
        return SYSTEMS[self.system][0]


def cells(preset: Preset) -> list[Cell]:
    """Every cell the findings need, each once at the largest N any finding asks for."""
    want: dict[tuple[str, str, bool, bool], int] = {}

    def need(system: str, counts: dict[str, int], *, thinking: bool = True, blank: bool = False) -> None:
        for split, n in counts.items():
            key = (system, split, thinking, blank)
            want[key] = max(want.get(key, 0), n)

    items = preset.items
    for size in SIZES:
        need(f"e2e-{size}", {k: v for k, v in items.a.items() if k != "hw-open"})
    need("e2e-M", items.a_blank, blank=True)
    for system in ("et-MM", "et-SM", "et-MS", "et-SS"):
        need(system, items.b)
    for system in ("et-MM", "ct-MM", "e2e-M"):
        need(system, items.c)
    need("et-MM", items.d)
    need("et-MM", items.d, thinking=False)
    return [Cell(s, split, n, thinking, blank) for (s, split, thinking, blank), n in sorted(want.items())]


class _StageMaker:
    """Stage configs (as recipe data) of one preset: the default bundle's optimiser settings,
    learning rates scaled by the preset's `lr_scale`, the preset's steps and batch."""

    def __init__(self, preset: Preset, work: str) -> None:
        self.preset, self.st, self.data = preset, preset.steps, f"{work}/data"

    def src(self, style: str, **extra: object) -> dict:
        return {"kind": "synthetic", "path": self.data, "style": style, **extra}

    def stage(self, kind: str, steps: int, sources: list[dict], base_lr: float, *, init: str | None = None,
              trainable: list[str] | None = None, vision_lr: float | None = None, batch: int | None = None,
              scale: float | None = None) -> dict:
        optim: dict[str, object] = {"lr": base_lr * (self.st.lr_scale if scale is None else scale),
                                    "warmup_steps": max(1, steps // 10), "min_lr_ratio": 0.1, "weight_decay": 0.01}
        if vision_lr is not None:
            optim["part_lr_scale"] = {"vision": vision_lr}
        out = {"kind": kind, "data": sources, "steps": steps, "micro_batch_size": batch or self.st.micro_batch,
               "max_length": self.st.max_length, "save_every": self.st.save_every, "optim": optim,
               "precision": self.preset.run.precision, "keep_checkpoints": 1}
        if init:
            out["init"] = init
        if trainable:
            out["trainable"] = trainable
        return out

    def vision(self) -> dict:
        return self.stage("vision", self.st.vision, [self.src("cells")], 1e-3, batch=self.st.vision_batch, scale=1.0)

    def of_size(self, size: str) -> dict[str, dict]:
        """align -> instruct -> {e2e, caption, extract} (equal steps and batch), and the reasoner."""
        st, src, stage = self.st, self.src, self.stage
        pretrained = self.preset.models.pretrained
        everything = ["vision", "projector", "language"]
        after = {"init": f"stage:instruct-{size}", "trainable": everything, "vision_lr": 0.2}
        align_data = [src("caption")] if pretrained else [src("grid"), src("caption"), src("direct", weight=0.5)]
        return {
            f"align-{size}": stage("align", st.align, align_data, 1e-3, init="recipe",
                                   trainable=["projector"] if pretrained else ["projector", "language"]),
            f"instruct-{size}": stage("instruct", st.instruct, [src("direct")], 5e-4, init=f"stage:align-{size}",
                                      trainable=everything, vision_lr=0.2),
            f"e2e-{size}": stage("instruct", st.finetune, [src("direct")], 3e-4, **after),
            f"caption-{size}": stage("caption", st.finetune, [src("caption")], 3e-4, **after),
            f"extract-{size}": stage("extract", st.finetune, [src("extraction")], 3e-4, **after),
            f"reasoner-{size}": stage("reasoner", st.reasoner,
                                      [src("trace", caption_share=0.5, thinking_share=0.5, answer="value"),
                                       src("hint", weight=0.25)], 1e-3),
        }


def stage_recipes(preset: Preset, out: Path) -> dict[str, dict]:
    """The recipes (as data for `training.config.recipe_from_data`): "vision" (if the tower is
    trained here), "S" and "M" (one per decoder size)."""
    work = str(out)
    make = _StageMaker(preset, work)
    common = {"seed": 0, "threads": preset.run.threads, "output_dir": f"{work}/stages",
              "tokenizer": {"source": f"{work}/tokenizer"}}
    models = preset.models
    recipes: dict[str, dict] = {}
    if not models.pretrained:
        recipes["vision"] = {"name": "study-vision", **common, "stages": {"vision": make.vision()},
                             "perception": {"vision": models.tower, "text": models.perception["S"]}}
    tower_init = HUB_IDS.get(models.tower) if models.pretrained else f"{work}/tower"
    for size in SIZES:
        ptext, rtext = models.perception[size], models.reasoner[size]
        perception = {"vision": models.tower, "text": ptext, "vision_init": tower_init}
        reasoner: dict[str, object] = {"text": rtext}
        if models.pretrained:
            perception["text_init"] = HUB_IDS[ptext]
            reasoner["init"] = HUB_IDS[rtext]
        recipes[size] = {"name": f"study-{size}", **common, "perception": perception, "reasoner": reasoner,
                         "stages": make.of_size(size)}
    return recipes


def stage_order(preset: Preset) -> list[tuple[str, str, tuple[str, ...]]]:
    """(recipe key, stage name, stages it needs) in a valid training order."""
    order: list[tuple[str, str, tuple[str, ...]]] = []
    first = () if preset.models.pretrained else ("vision",)
    if not preset.models.pretrained:
        order.append(("vision", "vision", ()))
    for size in SIZES:
        order.append((size, f"align-{size}", first))
        order.append((size, f"instruct-{size}", (f"align-{size}",)))
        for kind in ("e2e", "caption", "extract"):
            order.append((size, f"{kind}-{size}", (f"instruct-{size}",)))
        order.append((size, f"reasoner-{size}", ()))
    return order


def needed_stages(cell_list: list[Cell]) -> set[str]:
    out: set[str] = set()
    for c in cell_list:
        _, perception, reasoner = SYSTEMS[c.system]
        out.add(perception)
        if reasoner:
            out.add(reasoner)
    return out
