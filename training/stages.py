"""The training stages: what each trains, from what, on which targets.

Perception (LLaVA-style VLM), in the paper's order:

    vision     (synthetic world only) the tower learns each grid cell's attributes from
               the scene graph: the stand-in for SigLIP's pretraining when nothing is
               pretrained (training/cells.py).
    align      projector alignment: only the projector learns, on image captions, so the
               LLM starts to read the vision tower's features.
    instruct   visual instruction tuning: projector + LLM learn to answer questions about
               images directly (the end-to-end baseline stops here).
    caption    captioning post-training: the instruction-tuned model learns to write full
               descriptions (Caption+Think's perception module).
    extract    visual extraction post-training: it learns to write question-relevant
               descriptions from the extraction instruction + focus (Extract+Think).

Reasoning (text-only Qwen3):

    reasoner   supervised fine-tuning on thinking traces (Qwen3 thinking format: the
               `<think>` text, `</think>`, then `Answer: X`), loss on assistant tokens
               only; plus focus-phrase examples for the hint stage (non-thinking).
"""

from __future__ import annotations

from dataclasses import dataclass

from training.config import StageConfig


@dataclass(frozen=True)
class StageKindInfo:
    module: str  # "perception" | "reasoner"
    trainable: tuple[str, ...]  # the paper's default
    init: str  # default `init`
    styles: tuple[str, ...]  # data styles that make sense here
    summary: str  # one line for --help


STAGE_KINDS: dict[str, StageKindInfo] = {
    "vision": StageKindInfo(
        "perception", ("vision",), "recipe", ("cells",),
        "vision pretraining (synthetic world, from scratch only): trains the tower with linear "
        "heads predicting each grid cell's scene-graph attributes; stands in for SigLIP's "
        "pretraining; starts from the recipe's (random) tower"),
    "align": StageKindInfo(
        "perception", ("projector",), "recipe", ("caption", "conversation"),
        "projector alignment: trains the projector only (tower and LLM frozen) on image "
        "captions; starts from the recipe's vision tower + LLM"),
    "instruct": StageKindInfo(
        "perception", ("projector", "language"), "stage:align", ("direct", "conversation"),
        "visual instruction tuning: trains projector + LLM on questions answered directly; "
        "starts from the aligned model (this is the end-to-end baseline)"),
    "caption": StageKindInfo(
        "perception", ("projector", "language"), "stage:instruct", ("caption", "conversation"),
        "captioning post-training: trains projector + LLM to write full image descriptions; "
        "starts from the instruction-tuned model (Caption+Think)"),
    "extract": StageKindInfo(
        "perception", ("projector", "language"), "stage:instruct", ("extraction",),
        "visual extraction post-training: trains projector + LLM to write question-relevant "
        "descriptions from the extraction instruction + focus; starts from the "
        "instruction-tuned model (Extract+Think)"),
    "reasoner": StageKindInfo(
        "reasoner", ("language",), "recipe", ("trace", "hint"),
        "reasoner SFT: trains the text-only Qwen3 on thinking traces (description + "
        "question -> <think>...</think> Answer: X) and focus phrases; loss on assistant "
        "tokens only; starts from the recipe's reasoner (or, init stage:NAME, from a "
        "perception stage's decoder)"),
}


def kind_info(stage: StageConfig) -> StageKindInfo:
    return STAGE_KINDS[stage.kind]


def module_of(stage: StageConfig) -> str:
    return kind_info(stage).module


def trainable_parts(stage: StageConfig) -> tuple[str, ...]:
    return tuple(stage.trainable) if stage.trainable is not None else kind_info(stage).trainable


def init_of(stage: StageConfig) -> str:
    return stage.init or kind_info(stage).init


def help_text() -> str:
    return "\n".join(f"  {name:9s} {info.summary}" for name, info in STAGE_KINDS.items())
