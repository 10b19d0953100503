"""Image loading (formats, EXIF, alpha, caps, broken files) and manifest-exact preprocessing."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from runtime.errors import ImageError
from runtime.image import BACKGROUND, content_hash, load_and_preprocess, load_image, preprocess
from runtime.manifest import ImagePreprocess

PREP = ImagePreprocess(size=16, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))


def _encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def _gradient(w=40, h=30) -> Image.Image:
    x = np.linspace(0, 255, w, dtype=np.uint8)[None, :, None].repeat(h, 0).repeat(3, 2)
    x[:, :, 1] = np.linspace(0, 255, h, dtype=np.uint8)[:, None]
    return Image.fromarray(x, "RGB")


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP", "BMP", "GIF", "TIFF"])
def test_allowed_formats_from_bytes_and_path(tmp_path, fmt):
    data = _encode(_gradient(), fmt)
    img = load_image(data)
    assert img.mode == "RGB" and img.size == (40, 30)
    path = tmp_path / f"x.{fmt.lower()}"
    path.write_bytes(data)
    assert load_image(path).size == (40, 30)
    assert load_image(str(path)).size == (40, 30)


def test_refused_format(tmp_path):
    data = _encode(_gradient(16, 16), "ICO")
    with pytest.raises(ImageError, match="allowed format"):
        load_image(data)
    p = tmp_path / "notes.txt"
    p.write_text("this is not an image")
    with pytest.raises(ImageError):
        load_image(p)


def test_zero_byte_missing_and_directory(tmp_path):
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    with pytest.raises(ImageError, match="empty"):
        load_image(empty)
    with pytest.raises(ImageError, match="no such file"):
        load_image(tmp_path / "missing.png")
    with pytest.raises(ImageError, match="not a file"):
        load_image(tmp_path)
    with pytest.raises(ImageError):
        load_image(b"")


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_truncated(fmt):
    data = _encode(_gradient(64, 64), fmt)
    with pytest.raises(ImageError, match="truncated|corrupt|readable"):
        load_image(data[: len(data) // 2])


def _png_claiming(width: int, height: int) -> bytes:
    """A small valid PNG whose IHDR (with a correct CRC) claims a huge size."""
    data = bytearray(_encode(_gradient(8, 8), "PNG"))
    ihdr = data.index(b"IHDR")
    data[ihdr + 4 : ihdr + 12] = struct.pack(">II", width, height)
    crc = zlib.crc32(bytes(data[ihdr : ihdr + 17])) & 0xFFFFFFFF
    data[ihdr + 17 : ihdr + 21] = struct.pack(">I", crc)
    return bytes(data)


def test_pixel_cap_is_checked_from_the_header():
    with pytest.raises(ImageError, match="pixel cap|decompression bomb"):
        load_image(_png_claiming(100_000, 100_000))
    with pytest.raises(ImageError, match="pixel cap"):
        load_image(_png_claiming(10_000, 5_000))  # 50 MP: under PIL's own limit, over ours
    with pytest.raises(ImageError, match="pixel cap"):
        load_image(_encode(_gradient(40, 30), "PNG"), max_pixels=1000)
    with pytest.raises(ImageError, match="byte limit"):
        load_image(_encode(_gradient(40, 30), "PNG"), max_bytes=100)


def test_exif_orientation_is_applied():
    img = Image.new("RGB", (40, 20), (255, 0, 0))
    img.paste((0, 0, 255), (0, 0, 10, 20))  # blue band on the left
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    out = load_image(_encode(img, "JPEG", exif=exif.tobytes(), quality=95))
    assert out.size == (20, 40)
    top = np.asarray(out)[:5].reshape(-1, 3).mean(0)
    assert top[2] > 200 and top[0] < 60  # the left band is now at the top


def test_alpha_is_composited_over_the_background():
    rgba = np.zeros((10, 10, 4), dtype=np.uint8)
    rgba[..., 0] = 255
    rgba[:, 5:, 3] = 255  # right half opaque red, left half transparent
    out = np.asarray(load_image(_encode(Image.fromarray(rgba, "RGBA"), "PNG")))
    assert tuple(out[0, 0]) == BACKGROUND
    assert tuple(out[0, 9]) == (255, 0, 0)


def test_gif_first_frame():
    frames = [Image.new("RGB", (8, 8), c) for c in ((255, 0, 0), (0, 255, 0))]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:])
    out = np.asarray(load_image(buf.getvalue()))
    assert out[0, 0, 0] > 200 and out[0, 0, 1] < 50


def test_arrays_and_pil_images():
    arr = (np.random.default_rng(0).random((12, 9, 3)) * 255).astype(np.uint8)
    assert np.array_equal(np.asarray(load_image(arr)), arr)
    assert load_image(arr[:, :, 0]).mode == "RGB"
    assert load_image(arr.astype(np.float32) / 255.0).size == (9, 12)
    assert load_image(Image.fromarray(arr).convert("L")).mode == "RGB"
    for bad in (np.zeros((4, 4, 2), np.uint8), np.zeros((4,), np.uint8), np.zeros((4, 4, 3), np.int32),
                np.full((4, 4, 3), 2.0), np.zeros((0, 4, 3), np.uint8)):
        with pytest.raises(ImageError):
            load_image(bad)
    with pytest.raises(ImageError):
        load_image(12345)


def test_preprocess_resize_matches_pil():
    img = _gradient(40, 30)
    out = preprocess(img, PREP)
    assert out.shape == (16, 16, 3) and out.dtype == np.uint8
    want = np.asarray(img.resize((16, 16), Image.Resampling.BICUBIC))
    assert np.array_equal(out, want)
    bil = preprocess(img, ImagePreprocess(16, (0.5,) * 3, (0.5,) * 3, resample="bilinear"))
    assert np.array_equal(bil, np.asarray(img.resize((16, 16), Image.Resampling.BILINEAR)))


def test_preprocess_pad_uses_the_mean_colour():
    img = Image.new("RGB", (40, 20), (0, 0, 0))
    prep = ImagePreprocess(size=20, mean=(0.2, 0.4, 0.6), std=(0.5,) * 3, mode="pad")
    out = preprocess(img, prep)
    assert out.shape == (20, 20, 3)
    assert tuple(out[0, 10]) == (51, 102, 153)  # the padded band above the image
    assert tuple(out[10, 10]) == (0, 0, 0)


def test_content_hash():
    a = preprocess(_gradient(), PREP)
    b = preprocess(load_image(_encode(_gradient(), "PNG")), PREP)
    assert content_hash(a) == content_hash(b)
    c = a.copy()
    c[0, 0, 0] ^= 1
    assert content_hash(a) != content_hash(c)
    pixels, h = load_and_preprocess(_encode(_gradient(), "PNG"), PREP)
    assert h == content_hash(a) and pixels.shape == (16, 16, 3)
