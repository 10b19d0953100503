"""Vision-tower pretraining on the synthetic world's scene graphs (stage kind "vision").

The paper's perception module starts from a pretrained SigLIP tower. A tower trained from
scratch through the LLM alone barely learns: at first the LLM attends to the image tokens
almost uniformly, so the tower receives a tiny gradient that is nearly the same for every
patch and its features collapse towards one vector. This stage is the synthetic world's
stand-in for SigLIP's pretraining: linear heads on the tower's features (exactly the
features the projector reads) predict what the scene graph says is in each grid cell (kind,
colour, shape, size, text), the bars of a chart and the background. The heads are
discarded afterwards; only the tower's weights move on to the next stage. The loss with
the heads is `training.losses.CellLoss`.

Labels are factorised (colour and shape are separate heads), which helps the tower
describe colour-shape pairs it never saw together (the held-out test split).

A freely placed shape labels every cell its body covers, not only the cell of its centre:
labelled only there, the rest of a large shape read "empty", so the tower learned to
describe its middle (a colour) and to call its outline nothing -- on the training world's
own pictures the heads named a single large shape in 25% of cells (docs/training.md,
"Perception experiments").
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from runtime.image import load_image, preprocess
from runtime.manifest import ImagePreprocess
from training.data.scene import Scene, Shape
from training.data.vocabulary import BACKGROUNDS, COLORS, PATTERNS, SHAPES, SIZES, WORDS

log = logging.getLogger(__name__)

MAX_BARS = 6
COVER = 1.0  # a cell whose centre lies within COVER x a free shape's radius of its centre is that shape's


def _vocab() -> dict[str, tuple[str, ...]]:
    return {
        "kind": ("empty", "shape", "text", "chart"),
        "color": tuple(COLORS),
        "shape": SHAPES,
        "size": SIZES,
        "text": tuple(WORDS) + tuple(str(i) for i in range(100)),
        "value": tuple(str(i) for i in range(1, 10)),
        "background": tuple(BACKGROUNDS),
        "pattern": PATTERNS,
        "clutter": ("no", "yes"),
    }


CELL_HEADS = ("kind", "color", "shape", "size", "text")
BAR_HEADS = ("color", "value")
GLOBAL_HEADS = ("background", "pattern", "clutter")


def head_sizes() -> dict[str, int]:
    """Classes per head; every attribute head has an extra last class "none"."""
    v = _vocab()
    return {k: len(x) + (0 if k in ("kind", "background", "pattern", "clutter") else 1) for k, x in v.items()}


def covered_cells(scene: Scene) -> dict[int, Shape]:
    """Cell index -> the freely placed shape whose body covers that cell's centre (the
    nearest one, relative to its radius, where bodies overlap). Grid shapes fit their cell."""
    owner: dict[int, tuple[float, Shape]] = {}
    for s in scene.shapes:
        if s.r <= 0:
            continue
        for row in range(scene.grid):
            for col in range(scene.grid):
                cx, cy = (col + 0.5) / scene.grid, (row + 0.5) / scene.grid
                d = ((cx - s.x) ** 2 + (cy - s.y) ** 2) ** 0.5 / s.r
                i = row * scene.grid + col
                if d < COVER and (i not in owner or d < owner[i][0]):
                    owner[i] = (d, s)
    return {i: s for i, (_, s) in owner.items()}


def scene_labels(scene: Scene) -> list[int]:
    """Class ids in a fixed order: cells (row-major) x CELL_HEADS, bars x BAR_HEADS, globals."""
    v = _vocab()
    none = {k: len(x) for k, x in v.items()}
    n = scene.grid * scene.grid
    cells = [[0, none["color"], none["shape"], none["size"], none["text"]] for _ in range(n)]
    if scene.kind == "chart":
        for c in cells:
            c[0] = 3

    def shape_cell(s: Shape) -> list[int]:
        return [1, v["color"].index(s.color), v["shape"].index(s.shape), v["size"].index(s.size), none["text"]]

    for i, s in covered_cells(scene).items():
        cells[i] = shape_cell(s)
    for s in scene.shapes:  # a shape's own cell is its own, whatever covers it
        cells[s.row * scene.grid + s.col] = shape_cell(s)
    for t in scene.texts:
        cells[t.row * scene.grid + t.col] = [2, v["color"].index(t.color), none["shape"], none["size"],
                                             v["text"].index(t.word) if t.word in v["text"] else none["text"]]
    bars = [[none["color"], none["value"]] for _ in range(MAX_BARS)]
    for i, b in enumerate(scene.bars[:MAX_BARS]):
        bars[i] = [v["color"].index(b.color), v["value"].index(str(b.value))]
    glob = [v["background"].index(scene.background), v["pattern"].index(scene.pattern), int(scene.clutter > 0)]
    return [x for c in cells for x in c] + [x for b in bars for x in b] + glob


@dataclass(frozen=True)
class CellExample:
    image: str
    labels: tuple[int, ...]
    id: str = ""

    @property
    def n_targets(self) -> int:
        return len(self.labels)

    @property
    def input_ids(self) -> list[int]:  # the loop counts tokens for its throughput log
        return []


class CellCollator:
    def __init__(self, image: ImagePreprocess) -> None:
        self.image = image

    def tokenize(self, example: CellExample) -> CellExample:
        return example

    def collate(self, items: list[CellExample]) -> dict[str, Any]:
        import torch  # deferred: building labels and examples needs no torch

        mean = np.asarray(self.image.mean, dtype=np.float32)
        std = np.asarray(self.image.std, dtype=np.float32)
        pixels = [((preprocess(load_image(ex.image), self.image).astype(np.float32) / 255.0 - mean) / std)
                  .transpose(2, 0, 1) for ex in items]
        return {"pixel_values": torch.from_numpy(np.ascontiguousarray(np.stack(pixels))),
                "cell_labels": torch.tensor([list(ex.labels) for ex in items], dtype=torch.long)}
