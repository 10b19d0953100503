"""Caches that let a second question about the same image skip work.

- image embeddings, keyed by (image content hash, model artifact): skips the vision
  encoder;
- extractions, keyed by (image hash, artifact, focus, budget, sampling, seed): the same
  focus on the same image skips the whole perception stage.

Both are LRU caches bounded by bytes, so a long-running demo or kiosk loop never grows
without limit.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

import numpy as np

V = TypeVar("V")


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    evictions: int = 0


class LRUCache(Generic[V]):
    """Least-recently-used mapping bounded by the total size of its values in bytes."""

    def __init__(self, max_bytes: int) -> None:
        if max_bytes < 0:
            raise ValueError("max_bytes must be >= 0")
        self.max_bytes = max_bytes
        self._items: OrderedDict[Hashable, tuple[V, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()  # the demo server may answer from several threads
        self.stats = CacheStats()

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._items

    @property
    def nbytes(self) -> int:
        return self._bytes

    def get(self, key: Hashable) -> V | None:
        with self._lock:
            item = self._items.get(key)
            if item is None:
                self.stats.misses += 1
                return None
            self._items.move_to_end(key)
            self.stats.hits += 1
            return item[0]

    def put(self, key: Hashable, value: V, nbytes: int) -> None:
        """Store `value`; one larger than the whole cache is simply not kept."""
        with self._lock:
            if key in self._items:
                self._bytes -= self._items.pop(key)[1]
            if nbytes > self.max_bytes:
                return
            self._items[key] = (value, nbytes)
            self._bytes += nbytes
            while self._bytes > self.max_bytes:
                _, (_, size) = self._items.popitem(last=False)
                self._bytes -= size
                self.stats.evictions += 1

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._bytes = 0


class EmbeddingCache(LRUCache[np.ndarray]):
    """Image embeddings per (content hash, artifact id). Stored read-only."""

    def put_embeddings(self, image_hash: str, artifact_id: str, embeds: np.ndarray) -> None:
        arr = np.array(embeds, dtype=np.float32, copy=True)
        arr.setflags(write=False)
        self.put((image_hash, artifact_id), arr, arr.nbytes)

    def get_embeddings(self, image_hash: str, artifact_id: str) -> np.ndarray | None:
        return self.get((image_hash, artifact_id))


@dataclass(frozen=True)
class ExtractionKey:
    image_hash: str
    artifact_id: str
    prompt: str  # the stage-1 instruction (carries the focus) or the caption prompt
    budget: int
    sampling: tuple[float, float, int]
    seed: int  # greedy runs ignore it (see `make`)

    @classmethod
    def make(cls, image_hash: str, artifact_id: str, prompt: str, budget: int,
             sampling: tuple[float, float, int], seed: int) -> ExtractionKey:
        greedy = sampling == (0.0, 1.0, 1)
        return cls(image_hash, artifact_id, prompt, budget, sampling, 0 if greedy else seed)


class ExtractionCache(LRUCache[tuple[str, int]]):
    """Extraction text (and its token count) per `ExtractionKey`."""

    def put_text(self, key: ExtractionKey, text: str, tokens: int) -> None:
        self.put(key, (text, tokens), len(text.encode("utf-8")) + 64)

    def get_text(self, key: ExtractionKey) -> tuple[str, int] | None:
        return self.get(key)
