"""The held-out world's renderer: numpy coverage masks, tinted or noisy backgrounds, JPEG.

Independent of the training renderer on purpose (which fills Pillow polygons on a plain,
striped or dotted background at 2x and box-downsamples): shapes are sampled from inside
tests, either hard-edged (one sample per pixel) or anti-aliased (16 samples per pixel);
backgrounds are flat tints, two-colour gradients or blotchy low-frequency noise; a picture
may get per-pixel noise and JPEG compression. Words are written with a DejaVu font where
the system has one (Pillow's built-in font otherwise; the split records which).
"""

from __future__ import annotations

import io
import math
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from training.data.heldout.geometry import coverage
from training.data.heldout.picture import REACH, Figure, Picture

FONT_FILES = ("DejaVuSans-Bold.ttf", "DejaVuSerif-Bold.ttf")


@lru_cache(maxsize=1)
def font_name() -> str:
    """The font words are written in: the first DejaVu face Pillow finds, else its default."""
    for name in FONT_FILES:
        try:
            ImageFont.truetype(name, 12)
            return name
        except OSError:
            continue
    return "pillow-default"


@lru_cache(maxsize=256)
def _font(px: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    name = font_name()
    return ImageFont.load_default(size=px) if name == "pillow-default" else ImageFont.truetype(name, px)


def _background(pic: Picture, rng: np.random.Generator) -> np.ndarray:
    size = pic.size
    base = np.asarray(pic.tints[0], dtype=np.float32)
    img = np.broadcast_to(base, (size, size, 3)).copy()
    if pic.background == "gradient":
        angle = rng.uniform(0, 2 * math.pi)
        yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / max(1, size - 1)
        t = (xx - 0.5) * math.cos(angle) + (yy - 0.5) * math.sin(angle)
        t = ((t - t.min()) / max(1e-6, float(t.max() - t.min())))[..., None]
        img = (1 - t) * base + t * np.asarray(pic.tints[1], dtype=np.float32)
    elif pic.background == "blotchy":
        coarse = rng.normal(0.0, 14.0, size=(5, 5)).astype(np.float32)
        field = Image.fromarray(coarse, mode="F").resize((size, size), Image.Resampling.BICUBIC)
        img = img + np.asarray(field, dtype=np.float32)[..., None]
    return img


def _paint(img: np.ndarray, fig: Figure, samples: int) -> None:
    size = img.shape[0]
    reach = fig.radius * REACH + 1
    x0, y0 = max(0, int(fig.cx - reach)), max(0, int(fig.cy - reach))
    x1, y1 = min(size, int(math.ceil(fig.cx + reach))), min(size, int(math.ceil(fig.cy + reach)))
    if x1 <= x0 or y1 <= y0:
        return
    alpha = coverage(fig.shape, fig.cx, fig.cy, fig.radius, fig.rotation, (x0, y0, x1, y1), samples)[..., None]
    patch = img[y0:y1, x0:x1]
    img[y0:y1, x0:x1] = patch * (1 - alpha) + np.asarray(fig.rgb, dtype=np.float32) * alpha


def _write(image: Image.Image, pic: Picture) -> None:
    assert pic.word is not None and pic.word_box is not None
    draw = ImageDraw.Draw(image)
    if pic.edges == "hard":
        draw.fontmode = "1"  # no anti-aliasing on the glyphs either
    x0, y0, x1, y1 = pic.word_box
    if pic.sign:
        border = max(1, round(pic.size / 64))
        draw.rounded_rectangle((x0, y0, x1, y1), radius=(y1 - y0) * 0.2, fill=(250, 250, 250),
                               outline=(40, 40, 40), width=border)
    text = pic.word.upper() if pic.seed % 3 == 0 else (pic.word.capitalize() if pic.seed % 3 == 1 else pic.word)
    px = max(8, int((y1 - y0) * 0.62))
    while px > 8:
        box = _font(px).getbbox(text)
        if box[2] - box[0] <= (x1 - x0) * 0.82 and box[3] - box[1] <= (y1 - y0) * 0.7:
            break
        px -= 1
    font = _font(px)
    box = font.getbbox(text)
    tx = (x0 + x1) / 2 - (box[0] + box[2]) / 2
    ty = (y0 + y1) / 2 - (box[1] + box[3]) / 2
    draw.text((tx, ty), text, fill=pic.word_rgb, font=font)


def render(pic: Picture) -> Image.Image:
    """The picture as an RGB image (before any JPEG compression)."""
    rng = np.random.default_rng(pic.seed)
    img = _background(pic, rng)
    samples = 4 if pic.edges == "anti-aliased" else 1
    for fig in pic.figures:
        _paint(img, fig, samples)
    image = Image.fromarray(np.clip(np.rint(img), 0, 255).astype(np.uint8), mode="RGB")
    if pic.word is not None:
        _write(image, pic)
    if pic.noise > 0:
        arr = np.asarray(image, dtype=np.float32) + rng.normal(0.0, pic.noise, size=(pic.size, pic.size, 3))
        image = Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8), mode="RGB")
    return image


def encode(pic: Picture) -> tuple[bytes, str]:
    """(file bytes, extension): PNG, or JPEG at the picture's quality."""
    buf = io.BytesIO()
    image = render(pic)
    if pic.jpeg_quality is not None:
        image.save(buf, format="JPEG", quality=pic.jpeg_quality)
        return buf.getvalue(), "jpg"
    image.save(buf, format="PNG", compress_level=6)
    return buf.getvalue(), "png"
