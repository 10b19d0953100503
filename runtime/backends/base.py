"""The one protocol every backend implements.

A backend owns inference only: it runs a decoder over token ids or embeddings and
returns next-token logits, and encodes images into embeddings. Everything that makes
Extract+Think what it is (prompts, tokenization, the token-budget controller,
sampling, stopping, caching) lives above it in `runtime` and is shared by all backends,
so budget forcing and NoWait mean the same thing on llama.cpp and ONNX Runtime.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from runtime.threads import check_threads


@dataclass(frozen=True)
class BackendOptions:
    threads: int | None = None  # None: runtime.threads.default_threads()
    context_length: int | None = None  # None: the manifest's (capped by the planner)
    gpu_layers: int = 0  # llama.cpp offload (Jetson/CUDA builds); 0 = CPU
    providers: tuple[str, ...] = ()  # onnxruntime execution providers; () = CPU
    # llama.cpp KV cache type: "f16" (default, ~1e-2 parity) or "f32" (exact parity tests)
    kv_cache_type: str = "f16"
    # the backend of the vision encoder when it is not the text model's: "onnx" runs the
    # role's ONNX vision graph beside a llama.cpp text model (None: the text model's own)
    vision_backend: str | None = None

    def __post_init__(self) -> None:
        check_threads(self.threads)  # bounded: absurd counts crash or stall the backends

    def runs_vision(self, backend: str) -> bool:
        """Whether `backend`, loading a model, also loads its vision encoder (not when
        `vision_backend` names another one: `runtime.backends.load_model` does that)."""
        return self.vision_backend in (None, backend)


@dataclass(frozen=True, eq=False)
class PrefixState:
    """The KV state of a sequence's first `n_past` positions, as `save_state` kept it.

    `data` is the backend's own form (a llama.cpp sequence-state blob, ONNX past
    key/value arrays), held in host memory so it outlives the model that wrote it
    (sequential residency unloads models between stages). `owner` names the model, the
    backend and the KV cache type that wrote it: `load_state` refuses a state of another.
    """

    n_past: int
    nbytes: int
    owner: str
    data: Any = field(repr=False)


@runtime_checkable
class LanguageModel(Protocol):
    """One decoding sequence with a KV cache.

    `feed_*` append to the sequence and return float32 logits [n_vocab] for the last
    position; `feed_tokens_all` returns them for every position it fed, [n, n_vocab] (one
    batch, so prompt-lookup drafts are verified in one pass; n is small).
    `batch_invariant`: a position's logits do not depend on which positions share its
    batch (beyond float summation order, ~1e-7), so `feed_tokens_all`'s rows are what
    feeding the tokens one at a time returns (prompt lookup runs only then: its greedy
    tokens must be the plain loop's). `truncate(n)` drops everything after the first n positions so a shared
    prompt prefix can be reused. `save_state()` keeps the whole sequence's KV state in
    host memory; `load_state(state)` replaces the sequence with it (the next `feed_*`
    continues after `state.n_past` positions exactly as if they had just been fed).
    """

    @property
    def n_ctx(self) -> int: ...

    @property
    def n_vocab(self) -> int: ...

    @property
    def n_past(self) -> int: ...

    @property
    def batch_invariant(self) -> bool: ...

    def reset(self) -> None: ...

    def truncate(self, n: int) -> None: ...

    def feed_tokens(self, ids: Sequence[int]) -> np.ndarray: ...

    def feed_tokens_all(self, ids: Sequence[int]) -> np.ndarray: ...

    def feed_embeddings(self, embeds: np.ndarray) -> np.ndarray: ...

    def save_state(self) -> PrefixState: ...

    def load_state(self, state: PrefixState) -> None: ...

    def close(self) -> None: ...


@runtime_checkable
class VisionEncoder(Protocol):
    """Image -> embeddings in the language model's input space.

    `encode` takes an RGB uint8 array [size, size, 3] already resized by
    `runtime.image.preprocess` (so every backend sees identical pixels) and returns
    float32 [tokens_per_image, hidden]. Normalisation (mean/std) is the backend's job.
    """

    @property
    def tokens_per_image(self) -> int: ...

    def encode(self, image: np.ndarray) -> np.ndarray: ...

    def close(self) -> None: ...


@runtime_checkable
class TokenizerLike(Protocol):
    """What the runtime needs from a tokenizer (bundle tokenizer.json or a GGUF vocab)."""

    @property
    def vocab_size(self) -> int: ...

    def encode_plain(self, text: str) -> list[int]: ...

    def token_id(self, token: str) -> int | None: ...

    def token_bytes(self, token_id: int) -> bytes: ...

    def vocab(self) -> dict[int, str]: ...
