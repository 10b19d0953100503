"""Images in: load safely, then preprocess exactly as the bundle's manifest says.

Loading accepts a path, bytes, a PIL image or a numpy array. Files are checked before a
single pixel is decoded: a non-empty file, a format on the allow-list, and from the header
a pixel count below the cap (a decompression bomb is refused without decoding it) and an
aspect ratio below `MAX_ASPECT_RATIO` (a 1 x 39M strip squashed to a square means nothing,
and resampling it needed 1.3 GB). Then: the first frame, EXIF orientation applied, RGB
(alpha composited over a fixed white background). `preprocess` resizes (or pads to a
square first) into the uint8 [size, size, 3] array every backend's `VisionEncoder.encode`
takes, so llama.cpp and ONNX Runtime see identical pixels; `content_hash` of that array
keys the caches.

Memory is bounded by construction: the largest buffer is the decoded frame (at most
`max_pixels` x 4 bytes), and every later step works on at most one more copy of it or on a
reduced image. When the caller says what the image is for (`load_image(..., for_prep=)`,
as `load_and_preprocess` does), JPEG decodes at 1/2, 1/4 or 1/8 scale in the decoder
(draft mode) and any image is box-reduced by an integer factor before the rest of the work,
never below `REDUCING_GAP` x the target side: the final bicubic resize then sees at most
~2 x `REDUCING_GAP` times the target, so its result matches a full-resolution resize
closely (Pillow documents a gap of 3 as indistinguishable in most cases). 16-bit and float
frames are scaled to 8 bits in float32 strips, never as a whole float64 copy.
"""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageFile

from runtime.errors import ImageError
from runtime.manifest import ImagePreprocess
from runtime.manifest_checks import MAX_IMAGE_SIZE

ALLOWED_FORMATS = frozenset({"JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF", "PPM"})
MAX_PIXELS = 40_000_000  # ~40 MP: any camera photo; decoded, at most 160 MB (4 bytes a pixel)
MAX_FILE_BYTES = 64 << 20
MAX_ASPECT_RATIO = 20  # panoramas are 2:1 to 10:1; beyond 20:1 a square encoder sees a smear
REDUCING_GAP = 3.0  # reduce while staying >= 3x the target side; then resample exactly
STRIP_PIXELS = 1 << 20  # 16-bit/float frames are converted a strip of ~1 MP at a time
BACKGROUND = (255, 255, 255)
# SigLIP's normalisation (its preprocessor config): every SigLIP tower here uses it.
SIGLIP_MEAN = (0.5, 0.5, 0.5)
SIGLIP_STD = (0.5, 0.5, 0.5)

ImageFile.LOAD_TRUNCATED_IMAGES = False  # a truncated file is an error, not grey pixels
# EXIF orientation (tag 0x0112) -> the transpose that displays the image upright.
_ORIENTATION = {
    2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_HIGH_DEPTH = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")
_RESAMPLE = {"bicubic": Image.Resampling.BICUBIC, "bilinear": Image.Resampling.BILINEAR}


def _describe(source: Any) -> str:
    if isinstance(source, (str, os.PathLike)):
        return str(source)
    return f"<{type(source).__name__}>"


def check_dimensions(w: int, h: int, name: str, max_pixels: int = MAX_PIXELS) -> None:
    """Refuse an empty, too large or too elongated image from its dimensions alone."""
    if w <= 0 or h <= 0:
        raise ImageError(f"{name}: the image has no pixels ({w}x{h})")
    if w * h > max_pixels:
        raise ImageError(f"{name}: {w}x{h} exceeds the {max_pixels:,}-pixel cap")
    ratio = max(w, h) / min(w, h)
    if ratio > MAX_ASPECT_RATIO:
        raise ImageError(f"{name}: {w}x{h} has an aspect ratio of {ratio:,.0f}:1, over the "
                         f"{MAX_ASPECT_RATIO}:1 limit (crop it to the part the question is about)")


def load_image(source: Any, *, max_pixels: int = MAX_PIXELS, max_bytes: int = MAX_FILE_BYTES,
               for_prep: ImagePreprocess | None = None) -> Image.Image:
    """Load and normalise an image to an RGB PIL image, or raise `ImageError`.

    `for_prep`: the preprocessing the image is loaded for; the loader may then decode and
    keep fewer pixels (never fewer than `REDUCING_GAP` x its size per side).
    """
    name = _describe(source)
    if isinstance(source, np.ndarray):
        return _from_array(source, max_pixels, for_prep)
    if isinstance(source, Image.Image):
        check_dimensions(source.width, source.height, name, max_pixels)
        return _normalise(source, name, for_prep)
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
    elif isinstance(source, (str, os.PathLike)):
        data = _read_file(Path(source), name, max_bytes)
    else:
        raise ImageError(f"unsupported image source type {type(source).__name__}")
    if not data:
        raise ImageError(f"{name}: the image is empty (0 bytes)")
    if len(data) > max_bytes:
        raise ImageError(f"{name}: {len(data):,} bytes is over the {max_bytes:,}-byte limit")
    return _decode(data, name, max_pixels, for_prep)


def _read_file(path: Path, name: str, max_bytes: int) -> bytes:
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
        return path.read_bytes()
    except OSError as exc:
        raise ImageError(f"{name}: cannot read ({exc.strerror or exc})") from None


def _decode(data: bytes, name: str, max_pixels: int, prep: ImagePreprocess | None) -> Image.Image:
    try:
        img = Image.open(io.BytesIO(data), formats=sorted(ALLOWED_FORMATS))
    except Image.DecompressionBombError:
        raise ImageError(f"{name}: refused: more pixels than the {max_pixels:,}-pixel cap "
                         "(a decompression bomb)") from None
    except (OSError, SyntaxError, ValueError):
        # Pillow's own message names its in-memory buffer object, which helps nobody.
        raise ImageError(f"{name}: not a readable image in an allowed format "
                         f"({', '.join(sorted(ALLOWED_FORMATS))})") from None
    # Header only so far: check size and shape before anything is decoded.
    check_dimensions(img.width, img.height, name, max_pixels)
    try:
        img.seek(0)
        if prep is not None and img.format == "JPEG":
            # DCT-domain downscaling while decoding: a 40 MP photo never exists at full size.
            img.draft(None, _keep_size(img.size, prep))
        img.load()
    except Image.DecompressionBombError:
        raise ImageError(f"{name}: refused: more pixels than the {max_pixels:,}-pixel cap "
                         "(a decompression bomb)") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageError(f"{name}: truncated or corrupt {img.format} data ({exc})") from None
    return _normalise(img, name, prep)


def _keep_size(size: tuple[int, int], prep: ImagePreprocess) -> tuple[int, int]:
    """The smallest (w, h), same aspect, that `prep` can turn into its square as if from full size.

    "resize" stretches each side to `prep.size`, so the shorter side needs the margin;
    "pad" fits the longer side to it, so only that one does.
    """
    w, h = size
    need = int(REDUCING_GAP * prep.size)
    side = min(w, h) if prep.mode == "resize" else max(w, h)
    if side <= need:
        return w, h
    return max(1, w * need // side), max(1, h * need // side)


def _reduce_for(img: Image.Image, prep: ImagePreprocess | None) -> Image.Image:
    """Box-reduce by the largest integer factor that keeps `_keep_size`'s margin."""
    if prep is None:
        return img
    w, h = img.size
    kw, kh = _keep_size((w, h), prep)
    factor = min(w // kw, h // kh)
    if factor < 2:
        return img
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    elif img.mode == "1":
        img = img.convert("L")
    # In strips of whole blocks: the same pixels as one `reduce`, without the full-size
    # premultiplied copy Pillow makes of an RGBA frame.
    out = Image.new(img.mode, (-(-w // factor), -(-h // factor)))
    for y, part in _strips(img, multiple=factor):
        out.paste(part.reduce(factor), (0, y // factor))
    return out


def _strips(img: Image.Image, multiple: int = 1):
    """(top row, copy of the strip) pairs of about `STRIP_PIXELS`, rows a multiple of `multiple`."""
    w, h = img.size
    rows = max(multiple, STRIP_PIXELS // w // multiple * multiple)
    for y in range(0, h, rows):
        yield y, img.crop((0, y, w, min(h, y + rows)))


def _orientation(img: Image.Image) -> int:
    try:
        return int(img.getexif().get(0x0112, 1))
    except (OSError, SyntaxError, ValueError, EOFError, TypeError):
        return 1  # unreadable EXIF: show the pixels as stored


def _normalise(img: Image.Image, name: str, prep: ImagePreprocess | None = None) -> Image.Image:
    orientation = _orientation(img)  # read before any step that drops the metadata
    try:
        if img.mode in _HIGH_DEPTH:
            img = _to_8bit(img)
        img = _reduce_for(img, prep)
        if orientation in _ORIENTATION:
            img = img.transpose(_ORIENTATION[orientation])
        if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
            rgba = img if img.mode == "RGBA" else img.convert("RGBA")
            # Paste through the alpha band onto an RGB background, a strip at a time: one
            # RGB frame, no full-size RGBA copies.
            flat = Image.new("RGB", rgba.size, BACKGROUND)
            for y, part in _strips(rgba):
                flat.paste(part, (0, y), mask=part.getchannel("A"))
            img = flat
        return img if img.mode == "RGB" else img.convert("RGB")
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageError(f"{name}: cannot read the image ({exc})") from None


def _to_8bit(img: Image.Image) -> Image.Image:
    """16-bit / 32-bit / float greyscale -> L, scaled by the maximum (not clipped at 255)."""
    hi = float(img.getextrema()[1])
    scale = np.float32(255.0 / hi) if np.isfinite(hi) and hi > 0 else np.float32(255.0)
    out = np.empty((img.height, img.width), dtype=np.uint8)
    for y, part in _strips(img):
        strip = np.asarray(part, dtype=np.float32)
        np.nan_to_num(strip, copy=False, nan=0.0, posinf=hi if np.isfinite(hi) else 0.0, neginf=0.0)
        strip *= scale
        np.clip(strip, 0.0, 255.0, out=strip)
        np.rint(strip, out=strip)
        out[y:y + strip.shape[0]] = strip
    return Image.fromarray(out, "L")


def _from_array(arr: np.ndarray, max_pixels: int, prep: ImagePreprocess | None) -> Image.Image:
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3 or arr.shape[2] not in (1, 3, 4) or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ImageError(f"an image array must be HxW, HxWx1, HxWx3 or HxWx4, got shape {arr.shape}")
    check_dimensions(arr.shape[1], arr.shape[0], "<array>", max_pixels)
    if arr.dtype == np.uint8:
        data = arr
    elif np.issubdtype(arr.dtype, np.floating):
        data = _unit_floats_to_uint8(arr)
    else:
        raise ImageError(f"an image array must be uint8 or float in [0, 1], got {arr.dtype}")
    mode = {1: "L", 3: "RGB", 4: "RGBA"}[data.shape[2]]
    img = Image.fromarray(np.ascontiguousarray(data[:, :, 0] if mode == "L" else data), mode)
    return _normalise(img, "<array>", prep)


def _unit_floats_to_uint8(arr: np.ndarray) -> np.ndarray:
    """Floats in [0, 1] -> uint8, a strip at a time (no float64 copy of the whole frame)."""
    out = np.empty(arr.shape, dtype=np.uint8)
    rows = max(1, STRIP_PIXELS // arr.shape[1])
    for y in range(0, arr.shape[0], rows):
        strip = np.array(arr[y:y + rows], dtype=np.float32)
        if not np.isfinite(strip).all() or strip.min() < 0.0 or strip.max() > 1.0:
            raise ImageError("a float image array must hold finite values in [0, 1]")
        strip *= 255.0
        np.rint(strip, out=strip)
        out[y:y + rows] = strip
    return out


def preprocess(img: Image.Image, prep: ImagePreprocess) -> np.ndarray:
    """RGB PIL image -> uint8 [size, size, 3], exactly as `prep` (the manifest) says."""
    if not 1 <= prep.size <= MAX_IMAGE_SIZE:  # a bundle's manifest is checked; this guards direct callers
        raise ImageError(f"image preprocessing size {prep.size} is outside 1..{MAX_IMAGE_SIZE}")
    resample = _RESAMPLE[prep.resample]
    img = _reduce_for(img, prep)  # no-op when `load_image(..., for_prep=prep)` already did it
    if prep.mode == "pad":
        # LLaVA's "pad" aspect mode: centre on a square of the mean colour, then resize.
        # After the reduction above the square is at most ~2 x REDUCING_GAP x size a side.
        w, h = img.size
        if w != h:
            side = max(w, h)
            fill = tuple(int(round(min(max(m, 0.0), 1.0) * 255)) for m in prep.mean)
            square = Image.new("RGB", (side, side), fill)
            square.paste(img, ((side - w) // 2, (side - h) // 2))
            img = square
    if img.size != (prep.size, prep.size):
        img = img.resize((prep.size, prep.size), resample=resample)
    if img.mode != "RGB":
        img = img.convert("RGB")
    return np.ascontiguousarray(np.asarray(img, dtype=np.uint8))


def content_hash(pixels: np.ndarray) -> str:
    """sha256 of a preprocessed image (shape + bytes): equal pixels, equal embeddings."""
    h = hashlib.sha256()
    h.update(repr((pixels.shape, str(pixels.dtype))).encode())
    h.update(np.ascontiguousarray(pixels).tobytes())
    return h.hexdigest()


def load_and_preprocess(source: Any, prep: ImagePreprocess, **limits: int) -> tuple[np.ndarray, str]:
    """(pixels, content hash) for one image source, decoding no more pixels than `prep` needs."""
    pixels = preprocess(load_image(source, for_prep=prep, **limits), prep)
    return pixels, content_hash(pixels)
