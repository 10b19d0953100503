"""Examples -> padded tensors, and the deterministic order examples are seen in.

`StageData` mixes a stage's sources and fixes, for every position of an endless stream,
which example comes there: epoch `e` is a shuffle seeded by (seed, e) of each source's
share. A global batch of step `s` is stream positions [s*G, (s+1)*G), and each process
takes its own slice of each micro-batch, so the data position is a pure function of the
step: resuming needs only the step, and N processes see exactly what one process with the
same global batch sees.

`Collator` pads right (labels IGNORE, attention mask 0) and loads images exactly as the
runtime does (`runtime.image`): the same resize, then the bundle's mean / std. With an
any-resolution `layout` each image becomes the runtime's views (`runtime.image_layout`:
the base view, then the tiles), its prompt holds that image's own token count, and the
batch carries one `AnyresPlan` per image (`image_plans`) for the merge in the model.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from dataclasses import KW_ONLY, dataclass
from typing import Any

import numpy as np

from runtime.errors import EdgeError
from runtime.image import load_image, preprocess
from runtime.image_layout import LayoutSpec, image_views, plan_image
from runtime.manifest import ImagePreprocess
from training.examples import IGNORE, ExampleSource, TokenizedExample, tokenize

log = logging.getLogger(__name__)


class StageData:
    def __init__(self, sources: Sequence[ExampleSource], seed: int) -> None:
        if not sources:
            raise ValueError("no data sources")
        self.sources = list(sources)
        self.seed = seed
        self._epoch: int | None = None
        self._order: np.ndarray | None = None
        self.epoch_size = sum(self._share(len(s), s.spec.weight) for s in self.sources)
        if self.epoch_size == 0:
            raise ValueError("the data mix is empty")

    @staticmethod
    def _share(n: int, weight: float) -> int:
        return max(1, int(round(n * weight)))

    def _epoch_order(self, epoch: int) -> np.ndarray:
        """Rows of (source, index) for one epoch."""
        if self._epoch != epoch:
            rng = np.random.default_rng([self.seed, epoch])
            rows = []
            for si, src in enumerate(self.sources):
                n, k = len(src), self._share(len(src), src.spec.weight)
                full, rest = divmod(k, n)
                idx = [np.arange(n)] * full + [rng.permutation(n)[:rest]]
                idx = np.concatenate(idx) if idx else np.zeros(0, dtype=np.int64)
                rows.append(np.stack([np.full(len(idx), si), idx], axis=1))
            order = np.concatenate(rows)
            self._order = order[rng.permutation(len(order))]
            self._epoch = epoch
        assert self._order is not None
        return self._order

    def at(self, position: int) -> tuple[int, int]:
        epoch, within = divmod(position, self.epoch_size)
        si, idx = self._epoch_order(epoch)[within]
        return int(si), int(idx)

    def positions(self, start: int, count: int) -> list[tuple[int, int]]:
        return [self.at(p) for p in range(start, start + count)]

    def example(self, where: tuple[int, int]):
        si, idx = where
        return self.sources[si].example(idx)


def step_slices(step: int, micro: int, accum: int, world: int, rank: int) -> list[tuple[int, int]]:
    """(start, count) stream ranges of this process's micro-batches for optimizer step `step`."""
    global_batch = micro * accum * world
    base = step * global_batch
    return [(base + m * micro * world + rank * micro, micro) for m in range(accum)]


@dataclass(eq=False)
class Collator:
    tok: Any
    _: KW_ONLY
    pad_id: int
    max_length: int
    image_tokens: int = 0
    image_token_id: int | None = None
    image: ImagePreprocess | None = None
    pad_to_multiple: int = 1
    layout: LayoutSpec | None = None  # kept only for anyres: a single-view layout is the plain path

    def __post_init__(self) -> None:
        if self.layout is not None and self.layout.input_mode != "anyres":
            self.layout = None

    def tokenize(self, example) -> TokenizedExample:
        n = self.image_tokens
        if self.layout is not None and example.image is not None:
            with contextlib.suppress(EdgeError):  # unreadable: collate skips the row
                n = plan_image(self.layout, load_image(example.image).size).tokens  # this image's own count
        return tokenize(example, self.tok, image_tokens=n, image_token_id=self.image_token_id,
                        max_length=self.max_length)

    def _normalize(self, arr: np.ndarray) -> np.ndarray:
        """uint8 [..., size, size, 3] -> float32 [..., 3, size, size] with the mean / std."""
        assert self.image is not None
        x = arr.astype(np.float32) / 255.0
        x = (x - np.asarray(self.image.mean, dtype=np.float32)) / np.asarray(self.image.std, dtype=np.float32)
        return np.ascontiguousarray(np.moveaxis(x, -1, -3))

    def pixels(self, path: str) -> np.ndarray:
        """float32 [3, size, size], normalised like the runtime's vision encoders."""
        assert self.image is not None
        return self._normalize(preprocess(load_image(path), self.image))

    def views(self, path: str) -> tuple[np.ndarray, Any]:
        """Any-resolution input: float32 [views, 3, size, size] and the image's `AnyresPlan`."""
        assert self.layout is not None
        img = load_image(path)
        plan = plan_image(self.layout, img.size)
        return self._normalize(image_views(img, plan, self.image)), plan.anyres

    def collate(self, items: Sequence[TokenizedExample]) -> dict[str, Any]:
        import torch  # deferred: tokenizing and data checks need no torch

        pixels: list[np.ndarray] = []
        plans: list[Any] = []
        rows: list[tuple[list[int], list[int]]] = []
        for ex in items:
            ids, labels = ex.input_ids, ex.labels
            if ex.image is not None:
                if self.image is None:
                    raise EdgeError("image examples need a perception model")
                try:
                    if self.layout is not None:
                        views, plan = self.views(ex.image)
                        pixels.extend(views)
                        plans.append(plan)
                    else:
                        pixels.append(self.pixels(ex.image))
                except EdgeError as exc:  # unreadable image: the row contributes nothing
                    log.warning("example %s: %s; skipped", ex.id, exc)
                    ids, labels = ids[:1], [IGNORE]
                    if self.image_token_id is not None and ids[0] == self.image_token_id:
                        ids = [self.pad_id]
            rows.append((ids, labels))
        width = max(len(r[0]) for r in rows)
        if self.pad_to_multiple > 1:
            width = -(-width // self.pad_to_multiple) * self.pad_to_multiple
        input_ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        labels = torch.full((len(rows), width), IGNORE, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, (ids, lab) in enumerate(rows):
            input_ids[i, : len(ids)] = torch.tensor(ids)
            labels[i, : len(lab)] = torch.tensor(lab)
            mask[i, : len(ids)] = 1
        batch: dict[str, Any] = {"input_ids": input_ids, "labels": labels, "attention_mask": mask}
        batch["pixel_values"] = torch.from_numpy(np.stack(pixels)) if pixels else None
        if self.layout is not None:
            batch["image_plans"] = tuple(plans) if pixels else None
        return batch
