"""Training examples: prompt and target segments built with the runtime's own prompts.

A `TrainExample` is a sequence of parts, each a list of chat segments and whether the
loss covers it, plus an optional image. Prompts come from `runtime.prompts` and
`runtime.chat_format`, and every part is tokenized on its own with
`runtime.tokenizer.encode_segments`, exactly as the runtime encodes a prompt and then
generates the continuation token by token: training and inference see the same ids.

Adapters turn records into examples for each style:

    caption     caption_prompt()                      -> the caption
    grid        GRID_INSTRUCTION                      -> every grid cell in a fixed order
                (training only: a dense, position-aligned alignment target for towers
                trained from scratch; see `grid_text`)
    direct      end_to_end_prompt(question, options)  -> the answer (letter or phrase)
    extraction  extraction_prompt(focus)              -> the question-relevant description
    trace       reasoning_prompt(description, ...)    -> <think> trace </think> Answer: X
                (`thinking_share` < 1: that share only; the rest under the non-thinking
                prompt -> Answer: X, as the runtime asks with thinking off)
    hint        hint_prompt(question)                 -> the focus phrase
    conversation  LLaVA turns: every assistant turn is a target
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runtime import prompts
from runtime.chat_format import (
    Message,
    Segment,
    Text,
    assistant_prefix,
    merge_text,
    render_prompt,
    render_target,
    turn,
)
from runtime.errors import ConfigError
from runtime.tokenizer import encode_segments
from training.cells import CellExample, scene_labels
from training.config import DataSource
from training.data.extraction import read_rows
from training.data.language import article, shape_name, text_name
from training.data.llava import load_llava
from training.data.scene import region_name
from training.data.synth import SynthDataset

log = logging.getLogger(__name__)

IGNORE = -100  # label of positions the loss skips


@dataclass(frozen=True)
class TrainExample:
    parts: tuple[tuple[tuple[Segment, ...], bool], ...]  # (segments, trained)
    image: str | None = None  # image file path
    id: str = ""


@dataclass(frozen=True)
class TokenizedExample:
    input_ids: list[int]
    labels: list[int]
    image: str | None
    id: str = ""

    @property
    def n_targets(self) -> int:
        """Positions whose next token is trained (what the loss sums over)."""
        return sum(1 for x in self.labels[1:] if x != IGNORE)


def single_turn(prompt: Sequence[Segment], target: Sequence[Segment], image: str | None = None,
                id: str = "") -> TrainExample:
    return TrainExample(((tuple(prompt), False), (tuple(target), True)), image, id)


def tokenize(example: TrainExample, tok: Any, *, image_tokens: int, image_token_id: int | None,
             max_length: int) -> TokenizedExample:
    """ids and labels (IGNORE on untrained parts); image positions get `image_token_id`.

    Longer than `max_length`: the tail is cut; if that would cut into the image block the
    example is kept but contributes nothing (no image, no trained tokens), so a bad row
    never stops a run.
    """
    ids: list[int] = []
    labels: list[int] = []
    for segs, trained in example.parts:
        part = encode_segments(tok, segs, image_tokens=image_tokens if example.image else 0)
        for t in part:
            tid = image_token_id if t is None else t
            if tid is None:
                raise ConfigError("an image example needs a model with an image token")
            ids.append(tid)
            labels.append(tid if trained and t is not None else IGNORE)
    image = example.image
    if len(ids) > max_length:
        if image is not None and image_token_id is not None and image_token_id in ids[max_length:]:
            log.warning("example %s: the image does not fit max_length=%d; skipped", example.id, max_length)
            return TokenizedExample(ids[:1], [IGNORE], None, example.id)
        ids, labels = ids[:max_length], labels[:max_length]
    return TokenizedExample(ids, labels, image, example.id)


# ---------------------------------------------------------------------------------------
# Styles over the synthetic world's records (training.data.synth)


def _stable_fraction(key: str) -> float:
    """A per-record number in [0, 1) that never changes between runs or machines."""
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") / 2**64


GRID_INSTRUCTION = "List what is in each cell of the image, row by row."


def grid_text(scene: Any) -> str:
    """Every cell of the synthetic world's grid in reading order, empty ones included.

    A caption names objects in reading order but skips empty cells, so a model must count
    to know which patch comes next; this lists all cells in the order of the tower's
    patches, the easiest mapping from patches to words there is. Charts list their bars.
    """
    if scene.kind == "chart":
        bars = ", ".join(f"{b.color} {b.value}" for b in scene.bars)
        return f"A bar chart. The bars from left to right: {bars}."
    at = {(s.row, s.col): article(shape_name(s)) for s in scene.shapes}
    at.update({(t.row, t.col): f"{text_name(t)} in {t.color}" for t in scene.texts})
    cells = [f"{region_name(r, c, scene.grid).capitalize()}: {at.get((r, c), 'nothing')}."
             for r in range(scene.grid) for c in range(scene.grid)]
    return " ".join(cells)


def grid_prompt() -> list[Segment]:
    return render_prompt([Message("user", GRID_INSTRUCTION, image=True)], thinking=None)


def value_answer_trace(rec: dict) -> tuple[str, str]:
    """(thinking, answer line) of a trace that answers a multiple-choice question with the
    option's text: the last step restating the options becomes "The answer is X."."""
    thinking, line = rec["thinking"], rec["answer_line"]
    if not rec.get("options"):
        return thinking, line
    steps = thinking.rstrip().split("\n")
    if steps and steps[-1].startswith("The options are"):
        steps = steps[:-1]
    steps.append(f"The answer is {rec['answer_text']}.")
    return "\n".join(steps), f"Answer: {rec['answer_text']}"


def synthetic_example(rec: dict, style: str, image_path: str | None, *, caption_share: float = 0.0,
                      scene: Any = None, answer: str = "letter", thinking_share: float = 1.0) -> TrainExample:
    rid = str(rec.get("id", ""))
    try:
        question, options = rec["question"], rec.get("options")
        if style == "grid":
            if scene is None:
                raise ConfigError(f"record {rid}: the grid style needs the scene graph")
            return single_turn(grid_prompt(), render_target(grid_text(scene)), image_path, rid)
        if style == "caption":
            return single_turn(prompts.caption_prompt(), render_target(rec["caption"]), image_path, rid)
        if style == "direct":
            return single_turn(prompts.end_to_end_prompt(question, options), render_target(rec["answer"]),
                               image_path, rid)
        if style == "extraction":
            return single_turn(prompts.extraction_prompt(rec["focus"]), render_target(rec["extraction"]),
                               image_path, rid)
        if style == "trace":
            use_caption = _stable_fraction(rid + ":caption") < caption_share
            description = rec["caption"] if use_caption else rec["extraction"]
            think = _stable_fraction(rid + ":thinking") < thinking_share
            prompt = prompts.reasoning_prompt(description, question, options, thinking=think)
            thinking, line = value_answer_trace(rec) if answer == "value" else (rec["thinking"], rec["answer_line"])
            return single_turn(prompt, render_target(line, thinking_text=thinking if think else None), None, rid)
        if style == "hint":
            return single_turn(prompts.hint_prompt(question), render_target(rec["focus"]), None, rid)
    except KeyError as exc:
        raise ConfigError(f"record {rid or '?'} has no {exc.args[0]!r} field (needed by style {style!r})") from None
    raise ConfigError(f"style {style!r} does not apply to synthetic records")


# ---------------------------------------------------------------------------------------
# LLaVA conversation JSON (the paper's visual instruction / captioning data)


def conversation_example(qa: Sequence[tuple[str, str]], image_path: str | None, *, style: str = "conversation",
                         id: str = "") -> TrainExample:
    """Question-answer turns -> parts; every answer is a target. The image goes first in
    the first user turn (our chat format). Style "caption" keeps only the first answer,
    under the runtime's caption instruction (what Caption+Think prompts with)."""
    if not qa:
        raise ConfigError("no question-answer pair")
    if style == "caption":
        return single_turn(prompts.caption_prompt(), render_target(qa[0][1].strip()), image_path, id)
    parts: list[tuple[tuple[Segment, ...], bool]] = []
    pending: list[Segment] = []
    for i, (question, answer) in enumerate(qa):
        pending += turn(Message("user", question.strip(), image=image_path is not None and i == 0))
        parts.append((tuple(merge_text(pending + assistant_prefix(None))), False))
        parts.append((tuple(render_target(answer.strip())), True))
        pending = [Text("\n")]
    return TrainExample(tuple(parts), image_path, id)


# ---------------------------------------------------------------------------------------
# Sources


class ExampleSource:
    """Records of one `DataSource`, turned into `TrainExample`s on access."""

    def __init__(self, spec: DataSource) -> None:
        self.spec = spec
        self.records: list[dict] = []
        self._root = Path(spec.path)
        if spec.kind == "synthetic":
            self._load_synthetic()
        elif spec.kind == "extraction_jsonl":
            self._load_extraction()
        else:
            self._load_llava()
        if spec.limit is not None:
            self.records = self.records[: spec.limit]
        if not self.records:
            raise ConfigError(f"{spec.path}: no usable records for style {spec.style!r}")

    def __len__(self) -> int:
        return len(self.records)

    def _load_synthetic(self) -> None:
        ds = SynthDataset(self._root)
        self._scenes = ds.scenes() if self.spec.style in ("grid", "cells") else {}
        seen: set[str] = set()
        for rec in ds.records(self.spec.split):
            if self.spec.style in ("caption", "grid", "cells"):
                # one caption per image, not one per question about it
                if rec["scene_id"] in seen:
                    continue
                seen.add(rec["scene_id"])
            self.records.append(rec)

    def _load_llava(self) -> None:
        examples, report = load_llava(self._root, self.spec.image_folder)
        if report.skipped:
            log.warning("%s", report.summary())
        self.records = [{"id": ex.id, "image": str(ex.image) if ex.image else None,
                         "qa": [(p.question, p.answer) for p in ex.qa]} for ex in examples]

    def _load_extraction(self) -> None:
        try:
            rows = read_rows(self._root)
        except FileNotFoundError:
            raise ConfigError(f"{self._root}: file not found") from None
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{self._root}: not JSON lines ({exc})") from None
        self.records = [r for r in rows if r.get("status") == "ok" and r.get("image") and r.get("description")]
        if len(self.records) < len(rows):
            log.info("%s: %d of %d rows are usable extractions (the rest are SKIP/error rows)",
                     self._root, len(self.records), len(rows))

    def image_path(self, rec: dict) -> str | None:
        if self.spec.kind == "synthetic":
            return str(self._root / rec["image"]) if rec.get("image") else None
        if self.spec.kind == "extraction_jsonl":
            image = Path(rec["image"])
            if not image.is_absolute() and self.spec.image_folder:
                image = Path(self.spec.image_folder) / image
            return str(image)
        return rec.get("image")  # resolved (and checked) by the loader

    def example(self, i: int) -> TrainExample:
        rec = self.records[i]
        style = self.spec.style
        image = self.image_path(rec) if style in ("caption", "direct", "extraction", "conversation",
                                                  "grid", "cells") else None
        if style == "cells":
            assert image is not None
            return CellExample(image, tuple(scene_labels(self._scenes[rec["scene_id"]])), str(rec.get("id", "")))
        if self.spec.kind == "synthetic":
            return synthetic_example(rec, style, image, caption_share=self.spec.caption_share,
                                     answer=self.spec.answer, scene=self._scenes.get(rec.get("scene_id", "")),
                                     thinking_share=self.spec.thinking_share)
        if self.spec.kind == "extraction_jsonl":
            return single_turn(prompts.extraction_prompt(rec.get("focus")), render_target(rec["description"]),
                               image, str(rec.get("id", "")))
        return conversation_example(rec["qa"], image, style=style, id=rec["id"])
