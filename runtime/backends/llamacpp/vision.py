"""`VisionEncoder` over an mmproj loaded with mtmd (llama.cpp's multimodal library).

Images are encoded with mtmd so the embeddings can be cached and fed back through
`LlamaCppLanguageModel.feed_embeddings`; the runtime resizes images itself, so mtmd gets
exactly image_size x image_size pixels.
"""

from __future__ import annotations

import contextlib
import ctypes
from pathlib import Path
from typing import Any

import numpy as np

from runtime.backends.gguf_file import read_gguf_info
from runtime.backends.llamacpp.library import llama_lib, native_reason, recent_native
from runtime.backends.llamacpp.native_model import NativeModel
from runtime.errors import BundleError, InputError
from runtime.gguf_constants import CLIP_ARCH, Keys


class MtmdVisionEncoder:
    """`VisionEncoder` over an mmproj loaded with mtmd (llama.cpp's multimodal library)."""

    def __init__(self, model: NativeModel, mmproj: Path, *, threads: int, use_gpu: bool = False,
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
        recent_native.clear()
        ctx = mtmd.mtmd_init_from_file(str(mmproj).encode("utf-8"), model.ptr, mp)
        if not ctx:
            self._model.release()
            raise BundleError(f"{mmproj}: llama.cpp could not load this mmproj ({native_reason()})")
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
                raise RuntimeError(f"mtmd failed to encode the image (code {rc}, {native_reason()})")
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
            raise RuntimeError(f"mtmd could not tokenize the image (code {rc}, {native_reason()})")
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
