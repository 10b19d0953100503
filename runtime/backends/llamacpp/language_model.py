"""`LanguageModel` over one llama.cpp context: batches of token ids or embeddings in, the
last position's logits out. The runtime owns tokenization, sampling and budgets, so this
never uses llama-cpp-python's high-level `Llama` (whose `max_tokens` is not enforced
mid-UTF-8 and whose `generate().send()` cannot force tokens)."""

from __future__ import annotations

import contextlib
import ctypes
from collections.abc import Sequence
from typing import Any

import numpy as np

from runtime.backends.base import PrefixState
from runtime.backends.llamacpp.library import llama_lib, native_reason, recent_native
from runtime.backends.llamacpp.native_model import NativeModel
from runtime.errors import ConfigError, ContextOverflowError, InputError, MemoryPlanError
from runtime.gguf_constants import GGMLType

MAX_BATCH = 512
KV_TYPES = {"f32": GGMLType.F32, "f16": GGMLType.F16, "q8_0": GGMLType.Q8_0}


def flash_attn_type(llama: Any, kv_cache_type: str) -> int:
    """llama.cpp's flash attention setting for a KV cache type. CPU flash attention rounds
    through f16 even with an f32 cache (~1e-3 logit error): an f32 cache asks for exact
    attention, so it gets the plain path. A quantized V cache works only inside flash
    attention (llama.cpp refuses the context otherwise)."""
    return {"f32": llama.LLAMA_FLASH_ATTN_TYPE_DISABLED,
            "q8_0": llama.LLAMA_FLASH_ATTN_TYPE_ENABLED}.get(kv_cache_type, llama.LLAMA_FLASH_ATTN_TYPE_AUTO)


class LlamaCppLanguageModel:
    """`LanguageModel` over one llama.cpp context (one sequence, id 0)."""

    def __init__(self, model: NativeModel, *, n_ctx: int, threads: int, kv_cache_type: str = "f16") -> None:
        llama, _ = llama_lib()
        if kv_cache_type not in KV_TYPES:
            raise ConfigError(f"kv_cache_type must be one of {', '.join(KV_TYPES)}, not {kv_cache_type!r}")
        if n_ctx < 1:
            raise ConfigError(f"context length must be positive, not {n_ctx}")
        self._llama = llama
        self._model = model.acquire()
        n_batch = min(MAX_BATCH, n_ctx)
        cp = llama.llama_context_default_params()
        cp.n_ctx = n_ctx
        cp.n_batch = n_batch
        cp.n_ubatch = n_batch
        cp.n_seq_max = 1
        cp.n_threads = threads
        cp.n_threads_batch = threads
        cp.type_k = cp.type_v = KV_TYPES[kv_cache_type]
        cp.embeddings = False
        cp.flash_attn_type = flash_attn_type(llama, kv_cache_type)
        recent_native.clear()
        ctx = llama.llama_init_from_model(model.ptr, cp)
        if not ctx:
            self._model.release()
            raise MemoryPlanError(
                f"llama.cpp could not create a context of {n_ctx} tokens for {model.path.name} "
                f"({native_reason()}); try a shorter context"
            )
        self._ctx = ctx
        self._mem = llama.llama_get_memory(ctx)
        self._n_ctx = min(n_ctx, int(llama.llama_n_ctx(ctx)))
        self._n_batch = n_batch
        self._n_vocab = model.n_vocab
        self._n_embd = model.n_embd
        self._n_past = 0
        self._tok_batch = llama.llama_batch_init(n_batch, 0, 1)
        self._tok_views = self._views(self._tok_batch)
        self._emb_batch: Any = None
        self._emb_views: Any = None
        self.threads = threads
        self.kv_cache_type = kv_cache_type
        # what a saved state is valid for: these weights and this KV cache type
        path = model.path.resolve()
        self._owner = f"llamacpp|{path}|{path.stat().st_size}|kv={kv_cache_type}"

    # -- protocol -------------------------------------------------------------------
    @property
    def n_ctx(self) -> int:
        return self._n_ctx

    @property
    def n_vocab(self) -> int:
        return self._n_vocab

    @property
    def n_past(self) -> int:
        return self._n_past

    @property
    def batch_invariant(self) -> bool:
        # llama.cpp's CPU kernels quantize activations per row (Q8 blocks of 32 values): the
        # default bundle's Q8_0 rows equal the single-token logits bit for bit, F32 ones to
        # 1.5e-7 (summation order) (tests/runtime/test_lookup_decoding.py)
        return True

    @property
    def n_embd(self) -> int:
        return self._n_embd

    def reset(self) -> None:
        self._alive()
        self._llama.llama_memory_clear(self._mem, True)
        self._n_past = 0

    def truncate(self, n: int) -> None:
        self._alive()
        if not 0 <= n <= self._n_past:
            raise InputError(f"cannot truncate to {n} positions: the sequence has {self._n_past}")
        if n == self._n_past:
            return
        if not self._llama.llama_memory_seq_rm(self._mem, 0, n, -1):
            raise RuntimeError(f"llama.cpp refused to drop positions {n}.. from the KV cache")
        self._n_past = n

    def feed_tokens(self, ids: Sequence[int]) -> np.ndarray:
        self._alive()
        if len(ids) == 1:  # the decode loop's hot path: no numpy reductions
            tid = int(ids[0])
            if not 0 <= tid < self._n_vocab:
                raise InputError(f"token id {tid} is outside the vocabulary (0..{self._n_vocab - 1})")
            self._check_room(1)
            tok, pos, logits = self._tok_views
            tok[0] = tid
            self._decode(self._tok_batch, pos, logits, 1, last=True)
            return self._last_logits()
        arr = self._token_array(ids, "feed_tokens", None)
        tok, pos, logits = self._tok_views
        for start in range(0, arr.size, self._n_batch):
            chunk = arr[start : start + self._n_batch]
            n = chunk.size
            tok[:n] = chunk
            self._decode(self._tok_batch, pos, logits, n, last=start + n == arr.size)
        return self._last_logits()

    def feed_tokens_all(self, ids: Sequence[int]) -> np.ndarray:
        """Feed `ids` in one batch with logits requested for every position: [n, n_vocab]
        (prompt-lookup verification; n is at most the batch size)."""
        self._alive()
        arr = self._token_array(ids, "feed_tokens_all", self._n_batch)
        n = arr.size
        tok, pos, logits = self._tok_views
        tok[:n] = arr
        self._decode(self._tok_batch, pos, logits, n, last=True, every=True)
        out = np.empty((n, self._n_vocab), dtype=np.float32)
        for i in range(n):  # by batch index: llama.cpp maps it to its output row
            ptr = self._llama.llama_get_logits_ith(self._ctx, i)
            if not ptr:
                raise RuntimeError("llama.cpp returned no logits")
            ctypes.memmove(out[i].ctypes.data, ptr, out[i].nbytes)
        return out

    def _token_array(self, ids: Sequence[int], what: str, most: int | None) -> np.ndarray:
        """`ids` as int64, checked: 1..`most` of them, inside the vocabulary, room left."""
        arr = np.asarray(ids, dtype=np.int64).reshape(-1)
        if arr.size == 0:
            raise InputError(f"{what} needs at least one token id")
        if most is not None and arr.size > most:
            raise InputError(f"{what} takes 1..{most} token ids, got {arr.size}")
        if arr.min() < 0 or arr.max() >= self._n_vocab:
            bad = int(arr[(arr < 0) | (arr >= self._n_vocab)][0])
            raise InputError(f"token id {bad} is outside the vocabulary (0..{self._n_vocab - 1})")
        self._check_room(arr.size)
        return arr

    def feed_embeddings(self, embeds: np.ndarray) -> np.ndarray:
        self._alive()
        emb = np.ascontiguousarray(embeds, dtype=np.float32)
        if emb.ndim != 2 or emb.shape[1] != self._n_embd or emb.shape[0] == 0:
            raise InputError(f"embeddings must be [n, {self._n_embd}] float32, got shape {tuple(emb.shape)}")
        if not np.isfinite(emb).all():
            raise InputError("embeddings contain NaN or infinity")
        self._check_room(emb.shape[0])
        if self._emb_batch is None:
            self._emb_batch = self._llama.llama_batch_init(self._n_batch, self._n_embd, 1)
            self._emb_views = self._views(self._emb_batch, embd=True)
        data, pos, logits = self._emb_views
        for start in range(0, emb.shape[0], self._n_batch):
            chunk = emb[start : start + self._n_batch]
            n = chunk.shape[0]
            data[: n * self._n_embd] = chunk.reshape(-1)
            self._decode(self._emb_batch, pos, logits, n, last=start + n == emb.shape[0])
        return self._last_logits()

    def save_state(self) -> PrefixState:
        """Sequence 0's KV cells as a `llama_state_seq_get_data` blob (no logits: the next
        feed after `load_state` computes them)."""
        self._alive()
        llama = self._llama
        size = int(llama.llama_state_seq_get_size(self._ctx, 0))
        blob = np.empty(size, dtype=np.uint8)
        got = int(llama.llama_state_seq_get_data(self._ctx, blob.ctypes.data_as(ctypes.POINTER(ctypes.c_uint8)),
                                                 size, 0))
        if got != size:
            raise RuntimeError(f"llama.cpp saved {got} of {size} bytes of the sequence state ({native_reason()})")
        blob.setflags(write=False)
        return PrefixState(n_past=self._n_past, nbytes=blob.nbytes, owner=self._owner, data=blob)

    def load_state(self, state: PrefixState) -> None:
        self._alive()
        if state.owner != self._owner:
            raise InputError(f"this prefix state was saved by another model ({state.owner}), "
                             f"not by {self._owner}")
        if state.n_past > self._n_ctx:
            raise ContextOverflowError(f"the prefix state holds {state.n_past} positions; "
                                       f"the context holds {self._n_ctx}")
        llama = self._llama
        blob = state.data
        llama.llama_memory_clear(self._mem, False)  # cells only: zeroing a 4096-cell cache costs more than the restore
        self._n_past = 0
        ptr = ctypes.cast(blob.ctypes.data, ctypes.POINTER(ctypes.c_uint8))  # read only by llama.cpp
        if int(llama.llama_state_seq_set_data(self._ctx, ptr, blob.size, 0)) == 0:
            llama.llama_memory_clear(self._mem, True)
            raise RuntimeError(f"llama.cpp could not restore the sequence state ({native_reason()})")
        held = int(llama.llama_memory_seq_pos_max(self._mem, 0)) + 1
        if held != state.n_past:
            llama.llama_memory_clear(self._mem, True)
            raise RuntimeError(f"the restored sequence holds {held} positions, the state says {state.n_past}")
        self._n_past = state.n_past

    def close(self) -> None:
        if getattr(self, "_ctx", None) is None:
            return
        llama = self._llama
        llama.llama_batch_free(self._tok_batch)
        if self._emb_batch is not None:
            llama.llama_batch_free(self._emb_batch)
        llama.llama_free(self._ctx)
        self._ctx = None
        self._model.release()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):  # interpreter shutdown
            self.close()

    def __enter__(self) -> LlamaCppLanguageModel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals ------------------------------------------------------------------
    def _alive(self) -> None:
        if getattr(self, "_ctx", None) is None:
            raise RuntimeError("this llama.cpp model is closed")

    def _check_room(self, n: int) -> None:
        if self._n_past + n > self._n_ctx:
            raise ContextOverflowError(
                f"{self._n_past} positions used + {n} new exceed the context of {self._n_ctx} tokens"
            )

    def _views(self, batch: Any, *, embd: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        n = self._n_batch
        nseq = np.ctypeslib.as_array(batch.n_seq_id, shape=(n,))
        nseq[:] = 1
        for i in range(n):  # every position belongs to sequence 0, set once
            batch.seq_id[i][0] = 0
        pos = np.ctypeslib.as_array(batch.pos, shape=(n,))
        logits = np.ctypeslib.as_array(batch.logits, shape=(n,))
        if embd:
            data = np.ctypeslib.as_array(batch.embd, shape=(n * self._n_embd,))
        else:
            data = np.ctypeslib.as_array(batch.token, shape=(n,))
        return data, pos, logits

    def _decode(self, batch: Any, pos: np.ndarray, logits: np.ndarray, n: int, *, last: bool,
                every: bool = False) -> None:
        if n == 1:
            pos[0] = self._n_past
            logits[0] = 1 if last else 0
        else:
            pos[:n] = np.arange(self._n_past, self._n_past + n, dtype=np.int32)
            logits[:n] = 1 if every else 0
            if last:
                logits[n - 1] = 1  # logits only for the very last position: no [n, vocab] copy
        batch.n_tokens = n
        rc = self._llama.llama_decode(self._ctx, batch)
        if rc != 0:
            # a failed decode may keep some ubatches: resync n_past with the cache
            self._n_past = int(self._llama.llama_memory_seq_pos_max(self._mem, 0)) + 1
            if rc == 1:
                raise ContextOverflowError(f"llama.cpp found no KV-cache slot for {n} positions")
            raise RuntimeError(f"llama_decode failed with code {rc} ({native_reason()})")
        self._n_past += n

    def _last_logits(self) -> np.ndarray:
        ptr = self._llama.llama_get_logits_ith(self._ctx, -1)
        if not ptr:
            raise RuntimeError("llama.cpp returned no logits")
        out = np.empty(self._n_vocab, dtype=np.float32)  # a fresh array: the caller may keep it
        ctypes.memmove(out.ctypes.data, ptr, out.nbytes)
        return out
