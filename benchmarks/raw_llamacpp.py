"""Baseline: llama.cpp driven directly through llama-cpp-python's low-level API.

No project code on the hot path: a context is created with the same parameters the
runtime's backend uses (context, batch, threads, KV type, flash attention), prompts are
fed with `llama_batch_get_one` (image embeddings with an explicit `llama_batch`), and
decoding is the minimal loop anyone would write: read the last logits through a numpy
view, mask the banned ids, argmax, `llama_decode` the token. Images go through mtmd the
same minimal way. This is what "the runtime's overhead" is measured against.
"""

from __future__ import annotations

import ctypes
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.inputs import prompt_runs
from runtime.backends.llamacpp.language_model import KV_TYPES, flash_attn_type
from runtime.backends.llamacpp.native_model import use_extra_buffer_types
from runtime.errors import BackendUnavailableError

MAX_BATCH = 512  # the runtime's backend uses min(512, n_ctx) as well


def _lib() -> tuple[Any, Any]:
    try:  # the backend library is an optional extra: loaded when the baseline runs
        import llama_cpp.llama_cpp as llama
        import llama_cpp.mtmd_cpp as mtmd
    except (ImportError, OSError) as exc:
        raise BackendUnavailableError("llama.cpp", "llamacpp", str(exc)) from None
    llama.llama_backend_init()
    return llama, mtmd


class RawLlamaCpp:
    """One GGUF text model (and optionally its mmproj) with a hand-written decode loop."""

    def __init__(self, model_path: str | Path, *, n_ctx: int, threads: int, kv_cache_type: str = "f16",
                 mmproj: str | Path | None = None) -> None:
        llama, mtmd = _lib()
        self._llama, self._mtmd = llama, mtmd
        mp = llama.llama_model_default_params()
        mp.use_extra_bufts = use_extra_buffer_types()  # the runtime's choice (AMX is off)
        self._model = llama.llama_model_load_from_file(str(model_path).encode(), mp)
        if not self._model:
            raise RuntimeError(f"llama.cpp could not load {model_path}")
        self._vocab = llama.llama_model_get_vocab(self._model)
        self.n_vocab = int(llama.llama_vocab_n_tokens(self._vocab))
        self.n_embd = int(llama.llama_model_n_embd(self._model))
        cp = llama.llama_context_default_params()
        self.n_batch = min(MAX_BATCH, n_ctx)
        cp.n_ctx, cp.n_batch, cp.n_ubatch, cp.n_seq_max = n_ctx, self.n_batch, self.n_batch, 1
        cp.n_threads = cp.n_threads_batch = threads
        cp.type_k = cp.type_v = KV_TYPES[kv_cache_type]  # the runtime's cache settings: same work
        cp.flash_attn_type = flash_attn_type(llama, kv_cache_type)
        self._ctx = llama.llama_init_from_model(self._model, cp)
        if not self._ctx:
            llama.llama_model_free(self._model)
            raise RuntimeError(f"llama.cpp could not create a {n_ctx}-token context")
        self._mem = llama.llama_get_memory(self._ctx)
        self._emb_batch = llama.llama_batch_init(self.n_batch, self.n_embd, 1)
        self._tok_buf = (llama.llama_token * self.n_batch)()
        self._mtmd_ctx = None
        if mmproj is not None:
            p = mtmd.mtmd_context_params_default()
            p.use_gpu = False
            p.n_threads = threads
            p.print_timings = False
            p.warmup = False
            self._mtmd_ctx = mtmd.mtmd_init_from_file(str(mmproj).encode(), self._model, p)
            if not self._mtmd_ctx:
                raise RuntimeError(f"mtmd could not load {mmproj}")
        self.n_past = 0

    # -- text / embeddings ---------------------------------------------------------------
    def reset(self) -> None:
        self._llama.llama_memory_clear(self._mem, True)
        self.n_past = 0

    def _decode_tokens(self, ids: Sequence[int]) -> None:
        llama = self._llama
        for s in range(0, len(ids), self.n_batch):
            chunk = ids[s:s + self.n_batch]
            for i, t in enumerate(chunk):
                self._tok_buf[i] = t
            if llama.llama_decode(self._ctx, llama.llama_batch_get_one(self._tok_buf, len(chunk))) != 0:
                raise RuntimeError("llama_decode failed")
            self.n_past += len(chunk)

    def _decode_embeddings(self, emb: np.ndarray) -> None:
        llama, b = self._llama, self._emb_batch
        emb = np.ascontiguousarray(emb, dtype=np.float32)
        data = np.ctypeslib.as_array(b.embd, shape=(self.n_batch * self.n_embd,))
        for s in range(0, emb.shape[0], self.n_batch):
            chunk = emb[s:s + self.n_batch]
            n = chunk.shape[0]
            data[: n * self.n_embd] = chunk.reshape(-1)
            for i in range(n):
                b.pos[i] = self.n_past + i
                b.n_seq_id[i] = 1
                b.seq_id[i][0] = 0
                b.logits[i] = 1 if i == n - 1 else 0
            b.n_tokens = n
            if llama.llama_decode(self._ctx, b) != 0:
                raise RuntimeError("llama_decode (embeddings) failed")
            self.n_past += n

    def feed(self, prompt: Sequence[int | None], image_embeds: np.ndarray | None = None) -> None:
        """Feed a prompt; `None` entries are consecutive image-embedding rows."""
        for ids, image in prompt_runs(prompt, image_embeds):
            if ids is None:
                self._decode_embeddings(image)
            else:
                self._decode_tokens(ids)

    def generate(self, prompt: Sequence[int | None], n_new: int, *, ban: Sequence[int] = (),
                 image_embeds: np.ndarray | None = None) -> dict[str, float]:
        """Prefill `prompt`, then greedy-decode exactly `n_new` tokens (banned ids masked).

        Returns seconds for the prefill (= time to the first token's logits), the decode
        loop and the total, plus the ids produced.
        """
        llama = self._llama
        ban_arr = np.asarray(sorted(set(ban)), dtype=np.int64)
        self.reset()
        t0 = time.perf_counter()
        self.feed(prompt, image_embeds)
        t1 = time.perf_counter()
        out = []
        for _ in range(n_new):
            logits = np.ctypeslib.as_array(llama.llama_get_logits_ith(self._ctx, -1), shape=(self.n_vocab,))
            if ban_arr.size:
                logits[ban_arr] = -np.inf
            tid = int(np.argmax(logits))
            out.append(tid)
            self._tok_buf[0] = tid
            if llama.llama_decode(self._ctx, llama.llama_batch_get_one(self._tok_buf, 1)) != 0:
                raise RuntimeError("llama_decode failed")
            self.n_past += 1
        t2 = time.perf_counter()
        return {"prefill_s": t1 - t0, "decode_s": t2 - t1, "total_s": t2 - t0, "ids": out}

    # -- images ---------------------------------------------------------------------------
    def encode_image(self, pixels: np.ndarray) -> tuple[float, np.ndarray]:
        """(seconds, embeddings [tokens, n_embd]) for an RGB uint8 image, through mtmd."""
        if self._mtmd_ctx is None:
            raise RuntimeError("no mmproj loaded")
        mtmd = self._mtmd
        img = np.ascontiguousarray(pixels, dtype=np.uint8)
        h, w = img.shape[:2]
        t0 = time.perf_counter()
        bitmap = mtmd.mtmd_bitmap_init(w, h, img.ctypes.data_as(ctypes.POINTER(ctypes.c_uint8)))
        chunks = mtmd.mtmd_input_chunks_init()
        try:
            marker = mtmd.mtmd_default_marker()
            text = mtmd.mtmd_input_text(marker, len(marker), False, True)
            bitmaps = (mtmd.mtmd_bitmap_p_ctypes * 1)(bitmap)
            if mtmd.mtmd_tokenize(self._mtmd_ctx, chunks, ctypes.byref(text), bitmaps, 1) != 0:
                raise RuntimeError("mtmd_tokenize failed")
            chunk = next(mtmd.mtmd_input_chunks_get(chunks, i) for i in range(mtmd.mtmd_input_chunks_size(chunks))
                         if mtmd.mtmd_input_chunk_get_type(mtmd.mtmd_input_chunks_get(chunks, i))
                         == mtmd.MTMD_INPUT_CHUNK_TYPE_IMAGE)
            n = int(mtmd.mtmd_input_chunk_get_n_tokens(chunk))
            if mtmd.mtmd_encode_chunk(self._mtmd_ctx, chunk) != 0:
                raise RuntimeError("mtmd_encode_chunk failed")
            emb = np.ctypeslib.as_array(mtmd.mtmd_get_output_embd(self._mtmd_ctx), shape=(n * self.n_embd,)).copy()
        finally:
            mtmd.mtmd_input_chunks_free(chunks)
            mtmd.mtmd_bitmap_free(bitmap)
        return time.perf_counter() - t0, emb.reshape(n, self.n_embd)

    def close(self) -> None:
        if self._ctx is None:
            return
        if self._mtmd_ctx is not None:
            self._mtmd.mtmd_free(self._mtmd_ctx)
            self._mtmd_ctx = None
        self._llama.llama_batch_free(self._emb_batch)
        self._llama.llama_free(self._ctx)
        self._llama.llama_model_free(self._model)
        self._ctx = None

    def __enter__(self) -> RawLlamaCpp:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
