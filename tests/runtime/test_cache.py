"""Bounded LRU caches for image embeddings and extractions."""

from __future__ import annotations

import numpy as np
import pytest

from runtime.cache import EmbeddingCache, ExtractionCache, ExtractionKey, LRUCache


def test_lru_by_bytes():
    c: LRUCache[str] = LRUCache(100)
    c.put("a", "A", 40)
    c.put("b", "B", 40)
    assert c.get("a") == "A"  # a is now the most recent
    c.put("c", "C", 40)  # over 100: evicts b, the least recently used
    assert "b" not in c and "a" in c and "c" in c
    assert c.nbytes == 80 and c.stats.evictions == 1
    assert c.get("b") is None and c.stats.misses == 1 and c.stats.hits == 1
    c.put("huge", "H", 101)  # larger than the whole cache: not kept, nothing evicted
    assert "huge" not in c and len(c) == 2
    c.put("a", "A2", 10)  # replacing updates the size
    assert c.get("a") == "A2" and c.nbytes == 50
    c.clear()
    assert len(c) == 0 and c.nbytes == 0
    with pytest.raises(ValueError):
        LRUCache(-1)


def test_embedding_cache_is_keyed_by_image_and_artifact_and_read_only():
    c = EmbeddingCache(1 << 20)
    e = np.ones((4, 8), dtype=np.float32)
    c.put_embeddings("img1", "art1", e)
    e[0, 0] = 5  # the caller's array may change later; the cache kept a copy
    got = c.get_embeddings("img1", "art1")
    assert got[0, 0] == 1 and not got.flags.writeable
    assert c.get_embeddings("img1", "art2") is None
    assert c.get_embeddings("img2", "art1") is None


def test_extraction_cache_key():
    greedy = (0.0, 1.0, 1)
    k1 = ExtractionKey.make("img", "art", "prompt focus A", 64, greedy, seed=1)
    k2 = ExtractionKey.make("img", "art", "prompt focus A", 64, greedy, seed=2)
    assert k1 == k2  # greedy decoding does not depend on the seed
    s1 = ExtractionKey.make("img", "art", "prompt focus A", 64, (0.7, 0.8, 0), seed=1)
    s2 = ExtractionKey.make("img", "art", "prompt focus A", 64, (0.7, 0.8, 0), seed=2)
    assert s1 != s2
    assert k1 != ExtractionKey.make("img", "art", "prompt focus B", 64, greedy, 1)
    assert k1 != ExtractionKey.make("img", "art", "prompt focus A", 32, greedy, 1)
    c = ExtractionCache(1 << 16)
    c.put_text(k1, "a red circle", 4)
    assert c.get_text(k2) == ("a red circle", 4)
    assert c.get_text(s1) is None
