"""Images in: load safely, then preprocess exactly as the bundle's manifest says.

Loading accepts a path, bytes, a PIL image or a numpy array. Files are checked before a
single pixel is decoded: a non-empty file, a format on the allow-list, and a pixel count
read from the header below the cap (a decompression bomb is refused without decoding
it). Then: the first frame, EXIF orientation applied, RGB (alpha composited over a
fixed white background). `preprocess` resizes (or pads to a square first) into the
uint8 [size, size, 3] array every backend's `VisionEncoder.encode` takes, so llama.cpp
and ONNX Runtime see identical pixels; `content_hash` of that array keys the caches.
"""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path
from typing import Any

import numpy as np

from runtime.errors import ImageError
from runtime.manifest import ImagePreprocess

ALLOWED_FORMATS = frozenset({"JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF", "PPM"})
MAX_PIXELS = 40_000_000  # ~40 MP: any camera photo; far below what would exhaust a Pi
MAX_FILE_BYTES = 64 << 20
BACKGROUND = (255, 255, 255)
# SigLIP's normalisation (its preprocessor config): every SigLIP tower here uses it.
SIGLIP_MEAN = (0.5, 0.5, 0.5)
SIGLIP_STD = (0.5, 0.5, 0.5)


def _pil():
    from PIL import Image, ImageFile, ImageOps

    ImageFile.LOAD_TRUNCATED_IMAGES = False  # a truncated file is an error, not grey pixels
    return Image, ImageOps


def _describe(source: Any) -> str:
    if isinstance(source, (str, os.PathLike)):
        return str(source)
    return f"<{type(source).__name__}>"


def load_image(source: Any, *, max_pixels: int = MAX_PIXELS, max_bytes: int = MAX_FILE_BYTES):
    """Load and normalise an image to an RGB PIL image, or raise `ImageError`."""
    Image, _ = _pil()
    name = _describe(source)
    if isinstance(source, np.ndarray):
        return _from_array(source, max_pixels)
    if isinstance(source, Image.Image):
        img = source
        if img.width * img.height > max_pixels:
            raise ImageError(f"{name}: {img.width}x{img.height} exceeds the {max_pixels:,}-pixel cap")
        return _normalise(img, name)
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
    elif isinstance(source, (str, os.PathLike)):
        path = Path(source)
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            raise ImageError(f"{name}: no such file") from None
        except OSError as exc:
            raise ImageError(f"{name}: cannot read ({exc.strerror or exc})") from None
        if not path.is_file():
            raise ImageError(f"{name}: not a file")
        if size > max_bytes:
            raise ImageError(f"{name}: {size:,} bytes is over the {max_bytes:,}-byte limit")
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ImageError(f"{name}: cannot read ({exc.strerror or exc})") from None
    else:
        raise ImageError(f"unsupported image source type {type(source).__name__}")
    if not data:
        raise ImageError(f"{name}: the image is empty (0 bytes)")
    if len(data) > max_bytes:
        raise ImageError(f"{name}: {len(data):,} bytes is over the {max_bytes:,}-byte limit")
    return _decode(data, name, max_pixels)


def _decode(data: bytes, name: str, max_pixels: int):
    Image, _ = _pil()
    try:
        img = Image.open(io.BytesIO(data), formats=sorted(ALLOWED_FORMATS))
    except Image.DecompressionBombError:
        raise ImageError(f"{name}: refused: more pixels than the {max_pixels:,}-pixel cap "
                         "(a decompression bomb)") from None
    except (OSError, SyntaxError, ValueError):
        # Pillow's own message names its in-memory buffer object, which helps nobody.
        raise ImageError(f"{name}: not a readable image in an allowed format "
                         f"({', '.join(sorted(ALLOWED_FORMATS))})") from None
    # Header only so far: check the pixel count before anything is decoded.
    w, h = img.size
    if w <= 0 or h <= 0:
        raise ImageError(f"{name}: the image has no pixels ({w}x{h})")
    if w * h > max_pixels:
        raise ImageError(f"{name}: {w}x{h} exceeds the {max_pixels:,}-pixel cap")
    try:
        img.seek(0)
        img.load()
    except Image.DecompressionBombError:
        raise ImageError(f"{name}: refused: more pixels than the {max_pixels:,}-pixel cap "
                         "(a decompression bomb)") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageError(f"{name}: truncated or corrupt {img.format} data ({exc})") from None
    return _normalise(img, name)


def _normalise(img, name: str):
    Image, ImageOps = _pil()
    try:
        img = ImageOps.exif_transpose(img)
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageError(f"{name}: cannot read the image ({exc})") from None
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        bg = Image.new("RGBA", rgba.size, (*BACKGROUND, 255))
        img = Image.alpha_composite(bg, rgba)
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        # 16-bit / float greyscale: scale to 8 bits rather than clipping.
        arr = np.asarray(img, dtype=np.float64)
        hi = float(arr.max()) or 1.0
        img = Image.fromarray(np.clip(arr / hi * 255.0, 0, 255).astype(np.uint8), "L")
    return img.convert("RGB")


def _from_array(arr: np.ndarray, max_pixels: int):
    Image, _ = _pil()
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3 or arr.shape[2] not in (1, 3, 4) or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ImageError(f"an image array must be HxW, HxWx1, HxWx3 or HxWx4, got shape {arr.shape}")
    if arr.shape[0] * arr.shape[1] > max_pixels:
        raise ImageError(f"{arr.shape[1]}x{arr.shape[0]} exceeds the {max_pixels:,}-pixel cap")
    if arr.dtype == np.uint8:
        data = arr
    elif np.issubdtype(arr.dtype, np.floating):
        if not np.isfinite(arr).all() or arr.min() < 0.0 or arr.max() > 1.0:
            raise ImageError("a float image array must hold finite values in [0, 1]")
        data = np.round(arr * 255.0).astype(np.uint8)
    else:
        raise ImageError(f"an image array must be uint8 or float in [0, 1], got {arr.dtype}")
    mode = {1: "L", 3: "RGB", 4: "RGBA"}[data.shape[2]]
    img = Image.fromarray(np.ascontiguousarray(data[:, :, 0] if mode == "L" else data), mode)
    return _normalise(img, "<array>")


def preprocess(img, prep: ImagePreprocess) -> np.ndarray:
    """RGB PIL image -> uint8 [size, size, 3], exactly as `prep` (the manifest) says."""
    Image, _ = _pil()
    resample = {"bicubic": Image.Resampling.BICUBIC, "bilinear": Image.Resampling.BILINEAR}[prep.resample]
    if prep.mode == "pad":
        # LLaVA's "pad" aspect mode: centre on a square of the mean colour, then resize.
        w, h = img.size
        if w != h:
            side = max(w, h)
            fill = tuple(int(round(m * 255)) for m in prep.mean)
            square = Image.new("RGB", (side, side), fill)
            square.paste(img, ((side - w) // 2, (side - h) // 2))
            img = square
    if img.size != (prep.size, prep.size):
        img = img.resize((prep.size, prep.size), resample=resample)
    out = np.asarray(img.convert("RGB"), dtype=np.uint8)
    return np.ascontiguousarray(out)


def content_hash(pixels: np.ndarray) -> str:
    """sha256 of a preprocessed image (shape + bytes): equal pixels, equal embeddings."""
    h = hashlib.sha256()
    h.update(repr((pixels.shape, str(pixels.dtype))).encode())
    h.update(np.ascontiguousarray(pixels).tobytes())
    return h.hexdigest()


def load_and_preprocess(source: Any, prep: ImagePreprocess, **limits: int) -> tuple[np.ndarray, str]:
    """Convenience: (pixels, content hash) for one image source."""
    pixels = preprocess(load_image(source, **limits), prep)
    return pixels, content_hash(pixels)
