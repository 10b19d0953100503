"""One loaded `llama_model *`, shared by the language model, mtmd and the tokenizer."""

from __future__ import annotations

import ctypes
import os
import threading
import weakref
from pathlib import Path

from runtime.backends.gguf_file import MAGIC
from runtime.backends.llamacpp.library import llama_lib, native_reason, recent_native
from runtime.errors import BundleError
from runtime.memory import release_free_heap
from runtime.procfs import cpu_flags

# "1" or "0" forces llama.cpp's extra CPU weight layouts (AMX, repacked 4-bit) on or off
EXTRA_BUFTS_ENV = "EDGE_LLAMACPP_EXTRA_BUFTS"


def use_extra_buffer_types() -> bool:
    """Whether llama.cpp may put weights in its extra CPU buffer types.

    On CPUs with AMX, llama.cpp puts quantized weights in its AMX buffer, and its AMX
    matmul crashes (SIGSEGV on the first batch of the shipped Q8_0 models here;
    upstream ggml-org/llama.cpp#20824, #16315 for wrong results with Q4_0). llama.cpp
    offers no switch for AMX alone, so on such CPUs every extra layout is off, the
    repacked 4-bit one included: slower prompt processing, correct results."""
    forced = os.environ.get(EXTRA_BUFTS_ENV, "").strip()
    if forced in ("0", "1"):
        return forced == "1"
    return "amx_int8" not in cpu_flags()


def _check_gguf_file(path: Path, what: str) -> None:
    if not path.is_file():
        raise BundleError(f"{path}: {what} file not found")
    with open(path, "rb") as fh:
        head = fh.read(8)
    if len(head) < 8 or head[:4] != MAGIC:
        raise BundleError(f"{path}: not a GGUF file")


class NativeModel:
    """Owns one `llama_model *`, shared (refcounted) by the LM, mtmd and tokenizer."""

    def __init__(self, path: Path, gpu_layers: int = 0, *, vocab_only: bool = False) -> None:
        llama, _ = llama_lib()
        _check_gguf_file(path, "model")
        params = llama.llama_model_default_params()
        params.n_gpu_layers = int(gpu_layers)
        params.vocab_only = vocab_only
        params.use_extra_bufts = use_extra_buffer_types()
        if not gpu_layers and not vocab_only:
            # Read the weights into memory instead of mapping the file: on CPU llama.cpp
            # repacks 4-bit tensors into a copy but keeps reading the rest through the
            # mapping, so the whole file stayed resident beside the repacked copy (the
            # 1.7B Q4_K_M reasoner: 1788 MiB mapped + repacked, 1156 MiB read; docs/runtime.md).
            params.load_mode = llama.LLAMA_LOAD_MODE_NONE
        recent_native.clear()
        ptr = llama.llama_model_load_from_file(str(path).encode("utf-8"), params)
        if not ptr:
            raise BundleError(f"{path}: llama.cpp could not load this GGUF ({native_reason()})")
        # The loader's parsed metadata (a Qwen3 vocabulary and merges: ~60 MiB) is freed by
        # now but kept by glibc; the context's KV cache would be allocated on top of it.
        release_free_heap()
        self.path = path
        self.ptr = ptr
        self.vocab = llama.llama_model_get_vocab(ptr)
        self._refs = 1
        self._lock = threading.Lock()
        self._finalizer = weakref.finalize(self, llama.llama_model_free, ptr)
        # at interpreter exit the OS reclaims it; freeing then could race contexts that
        # were never closed and are torn down later
        self._finalizer.atexit = False

    def acquire(self) -> NativeModel:
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
