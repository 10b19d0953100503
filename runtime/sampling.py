"""Choosing the next token from numpy logits: greedy, or temperature / top-k / top-p.

Cheap on a 151,936-wide vocabulary: the softmax normaliser is one exp pass into a
buffer allocated once per sampler, and only a small candidate set found with
`argpartition` is ever sorted (grown only if it does not hold `top_p` of the mass).
Masked logits (-inf, from the budget controller) get probability zero.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from runtime.errors import InputError

# One argpartition for this many candidates covers the nucleus of a peaked (real model)
# distribution; a flatter one goes straight to sorting the values (~1 ms at 152k).
_CANDIDATES = 256
_BLOCK = 1024


@dataclass(frozen=True)
class SamplingConfig:
    """temperature 0 means greedy; top_k 0 and top_p 1.0 mean "no cut"."""

    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0

    def __post_init__(self) -> None:
        if not (self.temperature >= 0.0 and np.isfinite(self.temperature)):
            raise InputError(f"temperature must be >= 0, got {self.temperature}")
        if not (0.0 < self.top_p <= 1.0):
            raise InputError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.top_k < 0:
            raise InputError(f"top_k must be >= 0, got {self.top_k}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0 or self.top_k == 1

    def key(self) -> tuple[float, float, int]:
        """Hashable identity (cache keys): all greedy configs are the same."""
        return (0.0, 1.0, 1) if self.greedy else (self.temperature, self.top_p, self.top_k)


class NothingToSample(RuntimeError):
    """No logit is finite: every token is masked, or the model produced NaN / infinity.
    The decode loop tells the two apart (`runtime.generation`)."""


GREEDY = SamplingConfig()
# The paper's settings (Qwen3's recommended ones): thinking mode and non-thinking mode.
THINKING = SamplingConfig(temperature=0.6, top_p=0.95)
NON_THINKING = SamplingConfig(temperature=0.7, top_p=0.8)
PRESETS: dict[str, SamplingConfig] = {
    "greedy": GREEDY,
    "thinking": THINKING,
    "non-thinking": NON_THINKING,
}


class Sampler:
    """Stateful sampler: owns its seeded generator so a run is reproducible."""

    def __init__(self, config: SamplingConfig, seed: int | np.random.Generator = 0) -> None:
        self.config = config
        self.rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        self._buf: np.ndarray | None = None

    def __call__(self, logits: np.ndarray) -> int:
        if self.config.greedy:
            return int(np.argmax(logits))
        return self._sample(logits)

    def distribution(self, logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The tokens `__call__` can pick from `logits` and their probabilities (float64,
        summing to 1): after temperature, top-k and top-p, masked tokens excluded."""
        n = logits.shape[0]
        top = float(logits.max())
        if not np.isfinite(top):
            raise NothingToSample("no token has a finite logit: nothing can be sampled")
        cfg = self.config
        if cfg.greedy:
            return np.asarray([int(np.argmax(logits))]), np.ones(1)
        inv_t = 1.0 / cfg.temperature
        k = min(cfg.top_k or _CANDIDATES, n)
        cand = np.argpartition(logits, n - k)[n - k :] if k < n else np.arange(n)
        w = np.exp((logits[cand].astype(np.float64) - top) * inv_t)
        if cfg.top_k:
            total = float(w.sum())
        else:
            total = float(np.exp((logits.astype(np.float64) - top) * inv_t).sum())
            if cfg.top_p >= 1.0 or float(w.sum()) < cfg.top_p * total:  # the nucleus is wider than the candidates
                cand = np.arange(n)
                w = np.exp((logits.astype(np.float64) - top) * inv_t)
        order = np.argsort(-w, kind="stable")
        cand, w = cand[order], w[order]
        if cfg.top_p < 1.0:
            cut = int(np.searchsorted(np.cumsum(w), cfg.top_p * total, side="left")) + 1
            cand, w = cand[:cut], w[:cut]
        keep = w > 0
        cand, w = cand[keep], w[keep]
        return cand, w / w.sum()

    def speculative(self, logits: np.ndarray, draft: int) -> int:
        """The next token when `draft` was guessed for it (prompt lookup): `draft` with
        its probability p(draft) under this sampler's distribution, otherwise a sample from
        that distribution with `draft` removed and the rest renormalised. The standard
        speculative-sampling rule for a deterministic draft: the token's distribution is
        exactly p, as if `__call__` had sampled it. Greedy: the argmax."""
        if self.config.greedy:
            return int(np.argmax(logits))
        ids, p = self.distribution(logits)
        at = np.flatnonzero(ids == draft)
        p_draft = float(p[at[0]]) if at.size else 0.0
        if self.rng.random() < p_draft:
            return int(draft)
        if at.size:
            p = p.copy()
            p[at[0]] = 0.0
        cum = np.cumsum(p)
        idx = int(np.searchsorted(cum, self.rng.random() * float(cum[-1]), side="right"))
        return int(ids[min(idx, len(ids) - 1)])

    def _sample(self, logits: np.ndarray) -> int:
        cfg = self.config
        n = logits.shape[0]
        top = float(logits.max())
        if not np.isfinite(top):
            raise NothingToSample("no token has a finite logit: nothing can be sampled")
        inv_t = 1.0 / cfg.temperature
        if cfg.top_k:
            k = min(cfg.top_k, n)
            cand = np.argpartition(logits, n - k)[n - k :] if k < n else np.arange(n)
            w = np.exp((logits[cand] - top) * inv_t)
            order = np.argsort(-w, kind="stable")
            cand, w = cand[order], w[order]
            total = float(w.sum())
        else:
            if self._buf is None or self._buf.shape[0] != n:
                self._buf = np.empty(n, dtype=np.float32)
            buf = self._buf
            np.subtract(logits, top, out=buf)
            buf *= inv_t
            np.exp(buf, out=buf)
            total = float(buf.sum(dtype=np.float64))
            target = cfg.top_p * total
            if cfg.top_p >= 1.0:
                return self._sample_sorted(buf, total)
            k = min(_CANDIDATES, n)
            cand = np.argpartition(logits, n - k)[n - k :] if k < n else np.arange(n)
            w = buf[cand].astype(np.float64)
            if w.sum() < target:  # a wide nucleus (a flat distribution)
                return self._sample_sorted(buf, total)
            order = np.argsort(-w, kind="stable")
            cand, w = cand[order], w[order]
        cum = np.cumsum(w)
        if cfg.top_p < 1.0:
            cut = int(np.searchsorted(cum, cfg.top_p * total, side="left")) + 1
            cut = min(cut, len(cum))
            cum = cum[:cut]
            cand = cand[:cut]
        r = self.rng.random() * float(cum[-1])
        idx = int(np.searchsorted(cum, r, side="right"))
        return int(cand[min(idx, len(cand) - 1)])

    def _sample_sorted(self, buf: np.ndarray, total: float) -> int:
        """Nucleus sampling by sorting the weights (not their indices, which is ~10x slower).

        Cumulative sums run per block of the descending weights, so the cut and the draw
        each touch one block; the drawn weight is mapped back to its token (a random one
        among exact ties).
        """
        n = buf.shape[0]
        desc = np.sort(buf)[::-1]
        pad = (-n) % _BLOCK
        if pad:
            desc = np.concatenate([desc, np.zeros(pad, dtype=np.float32)])
        blocks = np.cumsum(desc.reshape(-1, _BLOCK).sum(axis=1, dtype=np.float64))

        def position(value: float, side: str) -> tuple[int, float]:
            b = min(int(np.searchsorted(blocks, value, side=side)), len(blocks) - 1)
            before = float(blocks[b - 1]) if b else 0.0
            inner = np.cumsum(desc[b * _BLOCK : (b + 1) * _BLOCK], dtype=np.float64) + before
            i = min(int(np.searchsorted(inner, value, side=side)), _BLOCK - 1)
            return b * _BLOCK + i, float(inner[i])

        target = self.config.top_p * total if self.config.top_p < 1.0 else float(blocks[-1])
        last, mass = position(target, "left")  # the cut: keep sorted positions 0..last
        j, _ = position(self.rng.random() * mass, "right")
        value = desc[min(j, last)]
        ties = np.flatnonzero(buf == value)
        return int(ties[0] if len(ties) == 1 else ties[self.rng.integers(len(ties))])
