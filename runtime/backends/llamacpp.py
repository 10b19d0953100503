"""The llama.cpp backend: GGUF text models and mmproj vision encoders via llama-cpp-python.

Only the low-level ctypes API is used (`llama_cpp.llama_cpp` and `llama_cpp.mtmd_cpp`):
the runtime owns tokenization, sampling and budgets, so the backend just decodes
batches of token ids or embeddings and returns the last position's logits, and encodes
images with mtmd so embeddings can be cached and fed back with `feed_embeddings`.

llama-cpp-python issues worked around here (see docs/gguf.md):
- `Llama.detokenize` drops tokens longer than 32 bytes: pieces come from
  `llama_token_to_piece` with a large buffer instead;
- `max_tokens` is not enforced mid-UTF-8 and `generate().send()` cannot force tokens:
  neither is used, the runtime's own loop controls every step;
- its default log callback prints everything to stderr: llama.cpp and mtmd logs are
  routed to this module's logger at DEBUG level, and recent warnings/errors are kept to
  explain a failed load in the raised error.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import threading
import weakref
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from runtime.backends.base import BackendOptions
from runtime.backends.gguf_file import read_gguf_info
from runtime.chat_format import SPECIAL_ROLES
from runtime.errors import (
    BackendUnavailableError,
    BundleError,
    ConfigError,
    ContextOverflowError,
    InputError,
    MemoryPlanError,
)
from runtime.gguf_constants import CLIP_ARCH, QWEN3_ARCH, GGMLType, Keys

if TYPE_CHECKING:
    from runtime.bundle import Bundle
    from runtime.manifest import Artifact, ModelEntry

log = logging.getLogger(__name__)

DEFAULT_CONTEXT = 4096  # for stock GGUFs (no manifest): llama.cpp's default would be n_ctx_train
MAX_BATCH = 512
_KV_TYPES = {"f32": GGMLType.F32, "f16": GGMLType.F16}

_lib_lock = threading.Lock()
_lib: tuple[Any, Any] | None = None
_recent_native: deque[tuple[int, str]] = deque(maxlen=16)  # recent llama.cpp warnings/errors
_WARN, _ERROR = 3, 4  # ggml_log_level (DEBUG=1, INFO=2, WARN=3, ERROR=4, CONT=5)
_log_callbacks: list[Any] = []  # ctypes callbacks must outlive every native call


def llama_lib() -> tuple[Any, Any]:
    """(llama_cpp.llama_cpp, llama_cpp.mtmd_cpp), imported once with logging routed."""
    global _lib
    with _lib_lock:
        if _lib is None:
            try:
                import llama_cpp.llama_cpp as llama
                import llama_cpp.mtmd_cpp as mtmd
            except (ImportError, OSError) as exc:
                raise BackendUnavailableError("llama.cpp", "llamacpp", str(exc)) from None
            _route_native_logs(llama, mtmd)
            llama.llama_backend_init()
            _lib = (llama, mtmd)
    return _lib


def _route_native_logs(llama: Any, mtmd: Any) -> None:
    def on_log(level: int, text: bytes | None, _user: Any) -> None:
        try:
            msg = (text or b"").decode("utf-8", errors="replace").rstrip()
            if level in (_WARN, _ERROR) and msg:
                _recent_native.append((level, msg))
            if msg and log.isEnabledFor(logging.DEBUG):
                log.debug("native: %s", msg)
        except Exception:  # noqa: BLE001 - an exception must never cross into C
            pass

    cb = llama.llama_log_callback(on_log)
    _log_callbacks.append(cb)
    llama.llama_log_set(cb, ctypes.c_void_p(0))
    mtmd.mtmd_log_set(cb, ctypes.c_void_p(0))
    mtmd.mtmd_helper_log_set(cb, ctypes.c_void_p(0))


def _native_reason() -> str:
    """The first error llama.cpp logged since the last clear (the cause, not the summary)."""
    errors = [m for lvl, m in _recent_native if lvl == _ERROR]
    warnings = [m for lvl, m in _recent_native if lvl == _WARN]
    _recent_native.clear()
    if errors:
        return errors[0]
    return warnings[-1] if warnings else "no detail from llama.cpp"


def default_threads() -> int:
    try:
        import psutil

        n = psutil.cpu_count(logical=False)
    except ImportError:
        n = None
    return max(1, n or os.cpu_count() or 1)


def _check_gguf_file(path: Path, what: str) -> None:
    if not path.is_file():
        raise BundleError(f"{path}: {what} file not found")
    with open(path, "rb") as fh:
        head = fh.read(8)
    if len(head) < 8 or head[:4] != b"GGUF":
        raise BundleError(f"{path}: not a GGUF file")


class _Model:
    """Owns one `llama_model *`, shared (refcounted) by the LM, mtmd and tokenizer."""

    def __init__(self, path: Path, gpu_layers: int = 0, *, vocab_only: bool = False) -> None:
        llama, _ = llama_lib()
        _check_gguf_file(path, "model")
        params = llama.llama_model_default_params()
        params.n_gpu_layers = int(gpu_layers)
        params.vocab_only = vocab_only
        _recent_native.clear()
        ptr = llama.llama_model_load_from_file(str(path).encode("utf-8"), params)
        if not ptr:
            raise BundleError(f"{path}: llama.cpp could not load this GGUF ({_native_reason()})")
        self.path = path
        self.ptr = ptr
        self.vocab = llama.llama_model_get_vocab(ptr)
        self._refs = 1
        self._lock = threading.Lock()
        self._finalizer = weakref.finalize(self, llama.llama_model_free, ptr)
        # at interpreter exit the OS reclaims it; freeing then could race contexts that
        # were never closed and are torn down later
        self._finalizer.atexit = False

    def acquire(self) -> _Model:
        with self._lock:
            if self._refs <= 0:
                raise RuntimeError("the llama.cpp model was already freed")
            self._refs += 1
        return self

    def release(self) -> None:
        with self._lock:
            self._refs -= 1
            free = self._refs == 0
        if free:
            self._finalizer()  # llama_model_free, exactly once

    def meta(self, key: str) -> str | None:
        llama, _ = llama_lib()
        buf = ctypes.create_string_buffer(512)
        n = llama.llama_model_meta_val_str(self.ptr, key.encode("utf-8"), buf, len(buf))
        return buf.value.decode("utf-8", errors="replace") if n >= 0 else None

    @property
    def n_embd(self) -> int:
        return int(llama_lib()[0].llama_model_n_embd(self.ptr))

    @property
    def n_vocab(self) -> int:
        return int(llama_lib()[0].llama_vocab_n_tokens(self.vocab))


class LlamaCppLanguageModel:
    """`LanguageModel` over one llama.cpp context (one sequence, id 0)."""

    def __init__(self, model: _Model, *, n_ctx: int, threads: int, kv_cache_type: str = "f16") -> None:
        llama, _ = llama_lib()
        if kv_cache_type not in _KV_TYPES:
            raise ConfigError(f"kv_cache_type must be one of {', '.join(_KV_TYPES)}, not {kv_cache_type!r}")
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
        cp.type_k = cp.type_v = _KV_TYPES[kv_cache_type]
        cp.embeddings = False
        # CPU flash attention rounds through f16 even with an f32 cache (~1e-3 logit error):
        # an f32 cache asks for exact attention, so it gets the plain path.
        cp.flash_attn_type = (llama.LLAMA_FLASH_ATTN_TYPE_DISABLED if kv_cache_type == "f32"
                              else llama.LLAMA_FLASH_ATTN_TYPE_AUTO)
        _recent_native.clear()
        ctx = llama.llama_init_from_model(model.ptr, cp)
        if not ctx:
            self._model.release()
            raise MemoryPlanError(
                f"llama.cpp could not create a context of {n_ctx} tokens for {model.path.name} "
                f"({_native_reason()}); try a shorter context"
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
        arr = np.asarray(ids, dtype=np.int64).reshape(-1)
        if arr.size == 0:
            raise InputError("feed_tokens needs at least one token id")
        if arr.min() < 0 or arr.max() >= self._n_vocab:
            bad = int(arr[(arr < 0) | (arr >= self._n_vocab)][0])
            raise InputError(f"token id {bad} is outside the vocabulary (0..{self._n_vocab - 1})")
        self._check_room(arr.size)
        tok, pos, logits = self._tok_views
        for start in range(0, arr.size, self._n_batch):
            chunk = arr[start : start + self._n_batch]
            n = chunk.size
            tok[:n] = chunk
            self._decode(self._tok_batch, pos, logits, n, last=start + n == arr.size)
        return self._last_logits()

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

    def _decode(self, batch: Any, pos: np.ndarray, logits: np.ndarray, n: int, *, last: bool) -> None:
        if n == 1:
            pos[0] = self._n_past
            logits[0] = 1 if last else 0
        else:
            pos[:n] = np.arange(self._n_past, self._n_past + n, dtype=np.int32)
            logits[:n] = 0
            if last:
                logits[n - 1] = 1  # logits only for the very last position: no [n, vocab] copy
        batch.n_tokens = n
        rc = self._llama.llama_decode(self._ctx, batch)
        if rc != 0:
            # a failed decode may keep some ubatches: resync n_past with the cache
            self._n_past = int(self._llama.llama_memory_seq_pos_max(self._mem, 0)) + 1
            if rc == 1:
                raise ContextOverflowError(f"llama.cpp found no KV-cache slot for {n} positions")
            raise RuntimeError(f"llama_decode failed with code {rc} ({_native_reason()})")
        self._n_past += n

    def _last_logits(self) -> np.ndarray:
        ptr = self._llama.llama_get_logits_ith(self._ctx, -1)
        if not ptr:
            raise RuntimeError("llama.cpp returned no logits")
        out = np.empty(self._n_vocab, dtype=np.float32)  # a fresh array: the caller may keep it
        ctypes.memmove(out.ctypes.data, ptr, out.nbytes)
        return out


class MtmdVisionEncoder:
    """`VisionEncoder` over an mmproj loaded with mtmd (llama.cpp's multimodal library)."""

    def __init__(self, model: _Model, mmproj: Path, *, threads: int, use_gpu: bool = False,
                 image_size: int | None = None) -> None:
        _, mtmd = llama_lib()
        # bounds-checks the file before native code reads it (older clip loaders do not)
        # and reads the values checked against the manifest
        cv = Keys.ClipVision
        info = read_gguf_info(mmproj, arrays={cv.IMAGE_MEAN, cv.IMAGE_STD, cv.FEATURE_LAYER})
        arch = info.get(Keys.General.ARCHITECTURE)
        if arch != CLIP_ARCH or not info.get(Keys.Clip.HAS_VISION_ENCODER):
            raise BundleError(f"{mmproj}: not a vision mmproj (architecture {arch!r})")
        self.info = info
        self._mtmd = mtmd
        self._model = model.acquire()
        mp = mtmd.mtmd_context_params_default()
        mp.use_gpu = use_gpu
        mp.n_threads = threads
        mp.print_timings = False
        mp.warmup = False
        _recent_native.clear()
        ctx = mtmd.mtmd_init_from_file(str(mmproj).encode("utf-8"), model.ptr, mp)
        if not ctx:
            self._model.release()
            raise BundleError(f"{mmproj}: llama.cpp could not load this mmproj ({_native_reason()})")
        self._ctx = ctx
        if not mtmd.mtmd_support_vision(ctx):
            self.close()
            raise BundleError(f"{mmproj}: the mmproj has no vision encoder")
        self._marker = mtmd.mtmd_default_marker()
        self._n_embd = model.n_embd
        self.image_size = image_size or int(info.get(cv.IMAGE_SIZE, 0)) or None
        side = self.image_size or 64
        try:
            self._tokens = self._count_tokens(np.zeros((side, side, 3), dtype=np.uint8))
        except BaseException:
            self.close()
            raise

    @property
    def tokens_per_image(self) -> int:
        return self._tokens

    @property
    def n_embd(self) -> int:
        return self._n_embd

    def encode(self, image: np.ndarray) -> np.ndarray:
        self._alive()
        img = self._check_image(image)
        mtmd = self._mtmd
        with _Chunks(mtmd, self._ctx, self._marker, img) as chunk:
            n = int(mtmd.mtmd_input_chunk_get_n_tokens(chunk))
            rc = mtmd.mtmd_encode_chunk(self._ctx, chunk)
            if rc != 0:
                raise RuntimeError(f"mtmd failed to encode the image (code {rc}, {_native_reason()})")
            ptr = mtmd.mtmd_get_output_embd(self._ctx)
            if not ptr:
                raise RuntimeError("mtmd returned no image embeddings")
            out = np.ctypeslib.as_array(ptr, shape=(n * self._n_embd,)).copy()
        return out.reshape(n, self._n_embd)

    def close(self) -> None:
        if getattr(self, "_ctx", None) is None:
            return
        self._mtmd.mtmd_free(self._ctx)
        self._ctx = None
        self._model.release()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):  # interpreter shutdown
            self.close()

    def __enter__(self) -> MtmdVisionEncoder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _alive(self) -> None:
        if getattr(self, "_ctx", None) is None:
            raise RuntimeError("this mtmd vision encoder is closed")

    def _check_image(self, image: np.ndarray) -> np.ndarray:
        if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            got = getattr(image, "shape", type(image).__name__)
            raise InputError(f"the vision encoder takes an RGB uint8 array [H, W, 3], got {got}")
        if self.image_size and image.shape[:2] != (self.image_size, self.image_size):
            # the runtime resizes exactly as training did; mtmd would pad and resize again
            raise InputError(
                f"the image must be preprocessed to {self.image_size}x{self.image_size}, "
                f"got {image.shape[1]}x{image.shape[0]}"
            )
        return np.ascontiguousarray(image)

    def _count_tokens(self, image: np.ndarray) -> int:
        with _Chunks(self._mtmd, self._ctx, self._marker, image) as chunk:
            return int(self._mtmd.mtmd_input_chunk_get_n_tokens(chunk))


class _Chunks:
    """mtmd_tokenize of one image (the text is just the media marker); yields its chunk."""

    def __init__(self, mtmd: Any, ctx: Any, marker: bytes, image: np.ndarray) -> None:
        self.mtmd, self.ctx, self.marker, self.image = mtmd, ctx, marker, image
        self.bitmap = self.chunks = None

    def __enter__(self) -> Any:
        mtmd, img = self.mtmd, self.image
        h, w = img.shape[:2]
        self.bitmap = mtmd.mtmd_bitmap_init(w, h, img.ctypes.data_as(ctypes.POINTER(ctypes.c_uint8)))
        self.chunks = mtmd.mtmd_input_chunks_init()
        if not self.bitmap or not self.chunks:
            self.__exit__()
            raise MemoryError("mtmd could not allocate the image")
        text = mtmd.mtmd_input_text(self.marker, len(self.marker), False, True)
        bitmaps = (mtmd.mtmd_bitmap_p_ctypes * 1)(self.bitmap)
        rc = mtmd.mtmd_tokenize(self.ctx, self.chunks, ctypes.byref(text), bitmaps, 1)
        if rc != 0:
            self.__exit__()
            raise RuntimeError(f"mtmd could not tokenize the image (code {rc}, {_native_reason()})")
        for i in range(mtmd.mtmd_input_chunks_size(self.chunks)):
            chunk = mtmd.mtmd_input_chunks_get(self.chunks, i)
            if mtmd.mtmd_input_chunk_get_type(chunk) == mtmd.MTMD_INPUT_CHUNK_TYPE_IMAGE:
                return chunk
        self.__exit__()
        raise RuntimeError("mtmd produced no image chunk")

    def __exit__(self, *exc: object) -> None:
        if self.chunks:
            self.mtmd.mtmd_input_chunks_free(self.chunks)
            self.chunks = None
        if self.bitmap:
            self.mtmd.mtmd_bitmap_free(self.bitmap)
            self.bitmap = None


class GGUFTokenizer:
    """`TokenizerLike` over a llama.cpp vocabulary, for stock GGUF chat models.

    `encode_plain` keeps special-token strings as plain text: llama.cpp never matches
    control tokens (`<|im_end|>`) when `parse_special` is off, but it always matches
    user-defined ones (`<think>`), so text containing one is tokenized in pieces cut inside
    each occurrence (see `_cut_offset`: for `<...>` tags the cut falls on a pre-token
    boundary, so the result equals the canonical BPE split of the whole text).
    """

    def __init__(self, source: LlamaCppLanguageModel | str | os.PathLike[str]) -> None:
        if isinstance(source, LlamaCppLanguageModel):
            source._alive()
            self._model = source._model.acquire()
        else:
            self._model = _Model(Path(source), vocab_only=True)
        self._llama = llama_lib()[0]
        self._vocab = self._model.vocab
        self._n = self._model.n_vocab
        self._bytes: dict[int, bytes] = {}
        self._ids: dict[str, int] | None = None
        self._user_defined: list[str] | None = None
        self._special_ids: frozenset[int] | None = None
        self._buf = ctypes.create_string_buffer(1024)

    @property
    def vocab_size(self) -> int:
        return self._n

    @property
    def special_ids(self) -> frozenset[int]:
        """Ids of control and user-defined tokens (never produced by `encode_plain`)."""
        self._index()
        return self._special_ids

    def encode_plain(self, text: str) -> list[int]:
        self._index()
        cuts = sorted({i + _cut_offset(s) for s in self._user_defined for i in _find_all(text, s)})
        if not cuts:
            return self._tokenize(text)
        ids: list[int] = []
        start = 0
        for cut in cuts + [len(text)]:
            if cut > start:
                ids += self._tokenize(text[start:cut])
            start = cut
        return ids

    def token_id(self, token: str) -> int | None:
        self._index()
        return self._ids.get(token)

    def token_bytes(self, token_id: int) -> bytes:
        cached = self._bytes.get(token_id)
        if cached is not None:
            return cached
        if not 0 <= token_id < self._n:
            return b""  # llama.cpp would abort on an out-of-range id
        self._alive()
        attr = self._llama.llama_vocab_get_attr(self._vocab, token_id)
        # padding rows decode to nothing, as in BundleTokenizer
        out = b"" if attr & self._llama.LLAMA_TOKEN_ATTR_UNUSED else self._piece(token_id)
        self._bytes[token_id] = out
        return out

    def vocab(self) -> dict[int, str]:
        return {i: self.token_bytes(i).decode("utf-8", errors="replace") for i in range(self._n)}

    def tokenize_with_specials(self, text: str) -> list[int]:
        """llama.cpp's own full tokenization (special strings become special tokens)."""
        return self._tokenize(text, parse_special=True)

    def close(self) -> None:
        if getattr(self, "_model", None) is not None:
            self._model.release()
            self._model = None

    def __del__(self) -> None:
        with contextlib.suppress(Exception):  # interpreter shutdown
            self.close()

    def _alive(self) -> None:
        if getattr(self, "_model", None) is None:
            raise RuntimeError("this GGUF tokenizer is closed")

    def _piece(self, token_id: int) -> bytes:
        n = self._llama.llama_token_to_piece(self._vocab, token_id, self._buf, len(self._buf), 0, True)
        if n < 0:  # buffer too small: the required size is -n
            buf = ctypes.create_string_buffer(-n)
            n = self._llama.llama_token_to_piece(self._vocab, token_id, buf, len(buf), 0, True)
            return buf.raw[:n]
        return self._buf.raw[:n]

    def _tokenize(self, text: str, *, parse_special: bool = False) -> list[int]:
        self._alive()
        raw = text.encode("utf-8")
        if not raw:
            return []
        cap = len(raw) + 8
        out = (self._llama.llama_token * cap)()
        n = self._llama.llama_tokenize(self._vocab, raw, len(raw), out, cap, False, parse_special)
        if n < 0:
            cap = -n
            out = (self._llama.llama_token * cap)()
            n = self._llama.llama_tokenize(self._vocab, raw, len(raw), out, cap, False, parse_special)
        if n < 0:
            raise InputError("llama.cpp could not tokenize the text")
        return list(out[:n])

    def _index(self) -> None:
        if self._ids is not None:
            return
        self._alive()
        llama, vocab = self._llama, self._vocab
        ids: dict[str, int] = {}
        user: list[str] = []
        special: set[int] = set()
        for i in range(self._n):
            raw = llama.llama_vocab_get_text(vocab, i)
            text = raw.decode("utf-8", errors="replace") if raw else ""
            ids.setdefault(text, i)
            attr = llama.llama_vocab_get_attr(vocab, i)
            if attr & llama.LLAMA_TOKEN_ATTR_USER_DEFINED and len(text) > 1:
                user.append(text)
            if attr & (llama.LLAMA_TOKEN_ATTR_USER_DEFINED | llama.LLAMA_TOKEN_ATTR_CONTROL):
                special.add(i)
        self._ids, self._user_defined, self._special_ids = ids, user, frozenset(special)


def _cut_offset(token: str) -> int:
    """Where to split an occurrence of a user-defined token so it stays plain text.

    "<think>" pre-tokenizes as "<think" + ">" in byte-level BPE (a letter run ends at the
    punctuation), so cutting before a final punctuation mark that follows a letter keeps
    the canonical split; other tokens are cut after their first character.
    """
    if len(token) >= 2 and not token[-1].isalnum() and token[-2].isalpha():
        return len(token) - 1
    return 1


def _find_all(text: str, sub: str) -> list[int]:
    out, i = [], text.find(sub)
    while i >= 0:
        out.append(i)
        i = text.find(sub, i + 1)
    return out


# -- loading ---------------------------------------------------------------------------

def load_gguf(
    model_path: str | os.PathLike[str],
    mmproj_path: str | os.PathLike[str] | None = None,
    options: BackendOptions | None = None,
    *,
    image_size: int | None = None,
) -> tuple[LlamaCppLanguageModel, MtmdVisionEncoder | None]:
    """Load a GGUF text model (and optionally its mmproj) outside of a bundle.

    Without `options.context_length` the context is min(4096, the model's trained length).
    `image_size` (else the mmproj's) is the exact square size `encode` accepts.
    """
    options = options or BackendOptions()
    threads = options.threads or default_threads()
    model = _Model(Path(model_path), options.gpu_layers)
    try:
        n_train = int(llama_lib()[0].llama_model_n_ctx_train(model.ptr))
        n_ctx = options.context_length or min(DEFAULT_CONTEXT, n_train)
        lm = LlamaCppLanguageModel(model, n_ctx=n_ctx, threads=threads, kv_cache_type=options.kv_cache_type)
    finally:
        model.release()  # the LM holds its own reference now (or loading failed)
    vision = None
    if mmproj_path is not None:
        try:
            vision = MtmdVisionEncoder(lm._model, Path(mmproj_path), threads=threads,
                                       use_gpu=options.gpu_layers != 0, image_size=image_size)
        except BaseException:
            lm.close()
            raise
    return lm, vision


def load(
    bundle: Bundle, role: str, artifact: Artifact, options: BackendOptions
) -> tuple[LlamaCppLanguageModel, MtmdVisionEncoder | None]:
    """Load `role`'s GGUF artifact from a checked bundle and verify it against the manifest."""
    entry = bundle.model(role)
    if artifact.format != "gguf":
        raise BundleError(f"the llama.cpp backend loads gguf artifacts, not {artifact.format}")
    if "model" not in artifact.files:
        raise BundleError(f"the {role} gguf artifact has no 'model' file")
    if entry.vision is not None and "mmproj" not in artifact.files:
        raise BundleError(f"the {role} gguf artifact has no 'mmproj' file for its vision encoder")
    ctx_len = options.context_length or entry.text.context_length
    if ctx_len > entry.text.context_length:
        raise ConfigError(
            f"context length {ctx_len} exceeds the {role} model's trained {entry.text.context_length}"
        )
    opts = BackendOptions(threads=options.threads, context_length=ctx_len, gpu_layers=options.gpu_layers,
                          providers=options.providers, kv_cache_type=options.kv_cache_type)
    mmproj = bundle.path(artifact.files["mmproj"]) if entry.vision is not None else None
    image_size = entry.vision.image_size if entry.vision is not None else None
    tokenizer_size = _tokenizer_size(bundle.path(entry.tokenizer))
    lm, vision = load_gguf(bundle.path(artifact.files["model"]), mmproj, opts, image_size=image_size)
    try:
        check_against_manifest(lm, vision, entry, role)
        if lm.n_vocab < tokenizer_size:
            raise BundleError(
                f"the {role} GGUF has {lm.n_vocab} vocabulary rows but the bundle tokenizer "
                f"defines {tokenizer_size} ids"
            )
    except BaseException:
        if vision is not None:
            vision.close()
        lm.close()
        raise
    return lm, vision


def _tokenizer_size(path: Path) -> int:
    """Highest id + 1 in a tokenizer.json (BPE ranks and added tokens)."""
    import json

    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        ids = list((data.get("model") or {}).get("vocab", {}).values())
        ids += [t["id"] for t in data.get("added_tokens", [])]
        return max(int(i) for i in ids) + 1 if ids else 0
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise BundleError(f"{path}: not a readable tokenizer.json ({exc})") from None


def check_against_manifest(lm: LlamaCppLanguageModel, vision: MtmdVisionEncoder | None,
                           entry: ModelEntry, role: str) -> None:
    """Raise BundleError when the loaded files do not have the manifest's shapes."""
    llama = llama_lib()[0]
    m = lm._model
    t = entry.text
    arch = m.meta(Keys.General.ARCHITECTURE)
    got = {
        "architecture": arch,
        "hidden_size": m.n_embd,
        "num_layers": int(llama.llama_model_n_layer(m.ptr)),
        "num_heads": int(llama.llama_model_n_head(m.ptr)),
        "num_kv_heads": int(llama.llama_model_n_head_kv(m.ptr)),
        "vocab_size": m.n_vocab,
        "context_length": int(llama.llama_model_n_ctx_train(m.ptr)),
    }
    want = {"architecture": QWEN3_ARCH, "hidden_size": t.hidden_size, "num_layers": t.num_layers,
            "num_heads": t.num_heads, "num_kv_heads": t.num_kv_heads, "vocab_size": t.vocab_size,
            "context_length": t.context_length}
    bad = [f"{k} {got[k]} != {want[k]}" for k in want if got[k] != want[k]]
    if bad:
        raise BundleError(f"the {role} GGUF does not match the manifest: {', '.join(bad)}")
    for name, tid in vars(entry.special_tokens).items():
        if tid is None:
            continue
        if not 0 <= tid < m.n_vocab:
            raise BundleError(f"the manifest's {name} id {tid} is outside the GGUF vocabulary ({m.n_vocab})")
        text = llama.llama_vocab_get_text(m.vocab, tid).decode("utf-8", errors="replace")
        if name in SPECIAL_ROLES and text != SPECIAL_ROLES[name]:
            raise BundleError(
                f"the manifest's {name} id {tid} is {text!r} in the GGUF vocabulary "
                "(tokenizer and model do not belong together)"
            )
    if vision is None:
        return
    v, pre = entry.vision, entry.image
    if vision.tokens_per_image != v.tokens_per_image:
        raise BundleError(
            f"the mmproj makes {vision.tokens_per_image} tokens per image, the manifest says {v.tokens_per_image}"
        )
    info = vision.info
    cv = Keys.ClipVision
    checks = {
        "image_size": (info.get(cv.IMAGE_SIZE), v.image_size),
        "patch_size": (info.get(cv.PATCH_SIZE), v.patch_size),
        "hidden_size": (info.get(cv.EMBEDDING_LENGTH), v.hidden_size),
        "num_layers": (info.get(cv.BLOCK_COUNT), v.num_layers),
        "projection_dim": (info.get(cv.PROJECTION_DIM), t.hidden_size),
    }
    bad = [f"{k} {a} != {b}" for k, (a, b) in checks.items() if a != b]
    mean, std = info.get(cv.IMAGE_MEAN), info.get(cv.IMAGE_STD)
    if pre is not None and (mean is None or std is None
                            or not np.allclose(mean, pre.mean, atol=1e-6) or not np.allclose(std, pre.std, atol=1e-6)):
        bad.append(f"mean/std {mean}/{std} != {list(pre.mean)}/{list(pre.std)}")
    if bad:
        raise BundleError(f"the {role} mmproj does not match the manifest: {', '.join(bad)}")
