"""The synthetic world's renderer: a scene graph -> an RGB image, deterministically.

The renderer draws only from the scene graph (background texture, clutter and pixel noise
have their seed inside the graph), so the same scene gives the same bytes. Shapes are
drawn at `supersample` times the size and box-downsampled (anti-aliasing at low cost), or
at 1x when the scene asks for hard edges. A scene may carry its own picture size and a
JPEG quality (`render_bytes` then writes a JPEG, artefacts included).
"""

from __future__ import annotations

import io
import math
import random
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from runtime.errors import ConfigError
from training.data.scene import SIZE_SCALE, Scene, Shape, TextMark, background_rgbs, shape_rgb
from training.data.vocabulary import BACKGROUNDS, COLORS, FONT_FILES

CLUTTER_RGB = (150, 150, 150)


def picture_size(scene: Scene, image_size: int) -> int:
    return scene.size or image_size


def render(scene: Scene, image_size: int = 128, supersample: int = 2) -> Image.Image:
    """Draw the scene as an RGB image (its own size if it has one, else `image_size`)."""
    side = picture_size(scene, image_size)
    ss = scene.aa or supersample
    size = side * ss
    img = _background(scene, size)
    draw = ImageDraw.Draw(img)
    _draw_pattern(draw, scene, size)
    if scene.clutter:
        _draw_clutter(draw, scene, size)
    if scene.kind == "chart":
        _draw_chart(draw, scene, size)
    else:
        for i, s in enumerate(scene.shapes):
            _draw_shape(draw, s, scene, size, i)
        for t in scene.texts:
            _draw_text(draw, t, scene, size)
    img = img.reduce(ss) if ss > 1 else img
    if scene.noise:
        rng = np.random.default_rng(scene.clutter_seed + 1)
        arr = np.asarray(img, dtype=np.float32) + rng.normal(0.0, scene.noise, (side, side, 1)).astype(np.float32)
        img = Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8), "RGB")
    return img


def render_png(scene: Scene, image_size: int = 128, supersample: int = 2) -> bytes:
    """The picture as PNG bytes (no JPEG artefacts, whatever the scene asks)."""
    buf = io.BytesIO()
    # compress_level 1: ~3x faster than the default and still lossless; bytes stay
    # deterministic for a given zlib.
    render(scene, image_size, supersample).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def render_bytes(scene: Scene, image_size: int = 128, supersample: int = 2) -> tuple[bytes, str]:
    """(file bytes, extension): a JPEG at the scene's quality when it asks for one, else PNG."""
    if not scene.jpeg:
        return render_png(scene, image_size, supersample), "png"
    buf = io.BytesIO()
    render(scene, image_size, supersample).save(buf, format="JPEG", quality=scene.jpeg)
    return buf.getvalue(), "jpg"


def shape_geometry(s: Shape, image_size: int, grid: int = 3) -> tuple[float, float, float]:
    """(centre x, centre y, radius) of a shape in pixels of an `image_size` picture."""
    if s.r > 0:
        return s.x * image_size, s.y * image_size, s.r * image_size
    cell = image_size / grid
    r = cell / 2 * SIZE_SCALE[s.size]
    room = max(0.0, cell / 2 - r - cell * 0.04)
    return (s.col + 0.5) * cell + s.dx * room, (s.row + 0.5) * cell + s.dy * room, r


def shape_center(s: Shape, image_size: int, grid: int = 3) -> tuple[float, float]:
    """Pixel centre of a shape in the final image (tests sample colours here)."""
    x, y, _ = shape_geometry(s, image_size, grid)
    return x, y


# ---------------------------------------------------------------------------------------
# Background


def _background(scene: Scene, size: int) -> Image.Image:
    tints = background_rgbs(scene)
    if scene.pattern == "gradient" and len(tints) == 2:
        rng = random.Random(scene.clutter_seed)
        a = rng.uniform(0, 2 * math.pi)
        ys, xs = np.mgrid[0:size, 0:size].astype(np.float32) / max(1, size - 1)
        t = (xs - 0.5) * math.cos(a) + (ys - 0.5) * math.sin(a)
        t = (t - t.min()) / max(1e-6, float(t.max() - t.min()))
        c0, c1 = (np.asarray(c, dtype=np.float32) for c in tints)
        arr = c0 + t[..., None] * (c1 - c0)
        return Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8), "RGB")
    if scene.pattern == "mottled":
        rng = np.random.default_rng(scene.clutter_seed)
        k = int(rng.integers(3, 8))
        blot = Image.fromarray(((rng.random((k, k, 3)) - 0.5) * 40 + 128).astype(np.uint8), "RGB")
        blot = np.asarray(blot.resize((size, size), Image.Resampling.BICUBIC), dtype=np.float32) - 128
        arr = np.asarray(tints[0], dtype=np.float32) + blot
        return Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8), "RGB")
    return Image.new("RGB", (size, size), tints[0])


def _shade(rgb: tuple[int, int, int], delta: int) -> tuple[int, int, int]:
    return tuple(max(0, min(255, v + delta)) for v in rgb)  # type: ignore[return-value]


def _draw_pattern(draw: ImageDraw.ImageDraw, scene: Scene, size: int) -> None:
    if scene.pattern not in ("striped", "dotted"):
        return
    base = background_rgbs(scene)[0]
    ink = _shade(base, -22 if sum(base) > 300 else 28)
    step = max(4, size // 12)
    if scene.pattern == "striped":
        width = max(1, step // 4)
        for y in range(step // 2, size, step):
            draw.rectangle((0, y, size, y + width - 1), fill=ink)
    else:
        r = max(1, step // 8)
        for y in range(step // 2, size, step):
            for x in range(step // 2, size, step):
                draw.ellipse((x - r, y - r, x + r, y + r), fill=ink)


def _draw_clutter(draw: ImageDraw.ImageDraw, scene: Scene, size: int) -> None:
    rng = random.Random(scene.clutter_seed)
    r = max(1, size // 100)
    for _ in range(scene.clutter):
        x, y = rng.uniform(0, size), rng.uniform(0, size)
        if rng.random() < 0.6:
            draw.ellipse((x - r, y - r, x + r, y + r), fill=CLUTTER_RGB)
        else:
            a = rng.uniform(0, math.pi)
            length = size * rng.uniform(0.04, 0.1)
            draw.line((x, y, x + length * math.cos(a), y + length * math.sin(a)), fill=CLUTTER_RGB, width=r)


# ---------------------------------------------------------------------------------------
# Shapes: every outline is a polygon around (0, 0) with radius ~1, then scaled, rotated
# and moved; each fits inside its circle of radius r.


def _regular(n: int, start: float) -> list[tuple[float, float]]:
    return [(math.cos(start + 2 * math.pi * i / n), math.sin(start + 2 * math.pi * i / n)) for i in range(n)]


def _outline(shape: str, aspect: float, style: tuple[float, ...] = (0.0, 0.0, 0.0)) -> list[tuple[float, float]]:  # noqa: C901 - one branch per shape
    """The shape's polygon. `style` (three numbers in [-1, 1], all 0 for the standard drawing)
    moves its proportions within what a person still calls by that name."""
    s1, s2, s3 = style
    if shape == "circle":
        return _regular(48, 0.0)
    if shape == "ellipse":
        return [(x, y * (aspect or 0.58)) for x, y in _regular(48, 0.0)]
    if shape == "square":
        h = 0.72
        return [(-h, -h), (h, -h), (h, h), (-h, h)]
    if shape == "rectangle":
        w = 0.92
        h = w * (aspect or 0.5)
        return [(-w, -h), (w, -h), (w, h), (-w, h)]
    if shape == "triangle":  # shifted down so its centroid sits at the centre; taller or flatter
        return [(x * (1 + 0.12 * s2), (y + 0.15) * (1 + 0.15 * s1)) for x, y in _regular(3, -math.pi / 2)]
    if shape == "diamond":
        return [(0.0, -1.0), (0.7 + 0.1 * s1, 0.0), (0.0, 1.0), (-0.7 - 0.1 * s1, 0.0)]
    if shape == "pentagon":
        return [(x, y + 0.05) for x, y in _regular(5, -math.pi / 2)]
    if shape == "hexagon":  # pointy or flat top
        return _regular(6, (math.pi / 6) * (s1 > 0))
    if shape == "star":
        inner = 0.45 + 0.12 * s1
        return [((1.0 if i % 2 == 0 else inner) * math.cos(-math.pi / 2 + math.pi * i / 5),
                 (1.0 if i % 2 == 0 else inner) * math.sin(-math.pi / 2 + math.pi * i / 5)) for i in range(10)]
    if shape == "cross":
        w = 0.34 + 0.09 * s1
        return [(-w, -1), (w, -1), (w, -w), (1, -w), (1, w), (w, w), (w, 1), (-w, 1), (-w, w), (-1, w),
                (-1, -w), (-w, -w)]
    if shape == "heart":
        pts = []
        sx, sy = 1 + 0.1 * s1, 1 + 0.1 * s2
        for i in range(60):
            t = 2 * math.pi * i / 60
            x = 16 * math.sin(t) ** 3
            y = -(13 * math.cos(t) - 5 * math.cos(2 * t) - 2 * math.cos(3 * t) - math.cos(4 * t))
            pts.append((x / 17.0 * sx / max(sx, sy), (y + 2.5) / 17.0 * sy / max(sx, sy)))
        return pts
    if shape == "arrow":  # pointing right; the angle turns it. Shaft width, head length and width vary.
        s, hd, neck = 0.2 + 0.07 * s1, 0.55 + 0.12 * s2, 0.15 + 0.2 * s3
        return [(-1.0, -s), (neck, -s), (neck, -hd), (1.0, 0.0), (neck, hd), (neck, s), (-1.0, s)]
    raise ConfigError(f"unknown shape {shape!r}")  # validate_scene rejects these; hand-built graphs


def _style(scene: Scene, index: int) -> tuple[float, float, float]:
    """Three numbers in [-variety, variety] for the scene's `index`-th shape, from its own seed
    (no draw from the sampler: a scene's graph and words do not depend on its variety)."""
    if not scene.variety:
        return (0.0, 0.0, 0.0)
    u = np.random.default_rng((scene.clutter_seed, index, 0x5EED)).uniform(-1.0, 1.0, 3) * scene.variety
    return (float(u[0]), float(u[1]), float(u[2]))


def _draw_shape(draw: ImageDraw.ImageDraw, s: Shape, scene: Scene, size: int, index: int = 0) -> None:
    cx, cy, r = shape_geometry(s, size, scene.grid)
    a = math.radians(-s.angle)  # counter-clockwise on screen (y grows downwards)
    ca, sa = math.cos(a), math.sin(a)
    outline = _outline(s.shape, s.aspect, _style(scene, index))
    pts = [(cx + r * (x * ca - y * sa), cy + r * (x * sa + y * ca)) for x, y in outline]
    draw.polygon(pts, fill=shape_rgb(s))


# ---------------------------------------------------------------------------------------
# Text


@lru_cache(maxsize=256)
def _font(px: int, index: int = 0) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    path = FONT_FILES[index]
    if path:
        try:
            return ImageFont.truetype(path, px)
        except OSError:  # the font is not installed here: Pillow's own keeps the data usable
            pass
    return ImageFont.load_default(size=px)


@lru_cache(maxsize=8192)
def _fitted_font(text: str, height: int, width: int, index: int) -> tuple[int, tuple[int, int, int, int]]:
    """The largest font size (<= `height`) whose text fits `width`."""
    px = max(6, height)
    while True:
        bbox = _font(px, index).getbbox(text)
        if bbox[2] - bbox[0] <= width or px <= 6:
            return px, bbox
        px = max(6, int(px * 0.92))


def _draw_text(draw: ImageDraw.ImageDraw, t: TextMark, scene: Scene, size: int) -> None:
    if t.h > 0:
        cx, cy = t.x * size, t.y * size
        px, bbox = _fitted_font(t.text, int(t.h * size * 1.35), int(size * (0.72 if t.sign else 0.86)), t.font)
    else:
        cell = size / scene.grid
        cx, cy = (t.col + 0.5) * cell, (t.row + 0.5) * cell
        px, bbox = _fitted_font(t.text, int(cell * 0.6), int(cell * 0.9), t.font)
    x = cx - (bbox[0] + bbox[2]) / 2
    y = cy - (bbox[1] + bbox[3]) / 2
    if t.sign:
        pad_x, pad_y = (bbox[3] - bbox[1]) * 0.45, (bbox[3] - bbox[1]) * 0.35
        box = (x + bbox[0] - pad_x, y + bbox[1] - pad_y, x + bbox[2] + pad_x, y + bbox[3] + pad_y)
        draw.rounded_rectangle(box, radius=int(pad_y), fill=BACKGROUNDS[t.sign])
    draw.text((x, y), t.text, fill=COLORS[t.color], font=_font(px, t.font))


# ---------------------------------------------------------------------------------------
# Charts


def chart_geometry(n_bars: int, size: int) -> tuple[float, float, float, float]:
    """(left, baseline y, bar pitch, plot height) of a bar chart drawn at `size` px."""
    left, right = size * 0.12, size * 0.95
    baseline, top = size * 0.9, size * 0.16
    return left, baseline, (right - left) / n_bars, baseline - top


def bar_rect(index: int, value: int, n_bars: int, size: int) -> tuple[float, float, float, float]:
    left, baseline, pitch, height = chart_geometry(n_bars, size)
    x0 = left + pitch * index + pitch * 0.18
    x1 = left + pitch * (index + 1) - pitch * 0.18
    return (x0, baseline - height * value / 9, x1, baseline)


def _draw_chart(draw: ImageDraw.ImageDraw, scene: Scene, size: int) -> None:
    left, baseline, pitch, _ = chart_geometry(len(scene.bars), size)
    axis = COLORS["black"]
    lw = max(1, size // 96)
    draw.line((left, size * 0.08, left, baseline), fill=axis, width=lw)
    draw.line((left, baseline, size * 0.97, baseline), fill=axis, width=lw)
    label_px = max(6, int(pitch * 0.5))
    font = _font(label_px)
    for i, bar in enumerate(scene.bars):
        x0, y0, x1, y1 = bar_rect(i, bar.value, len(scene.bars), size)
        draw.rectangle((x0, y0, x1, y1 - lw), fill=COLORS[bar.color])
        text = str(bar.value)
        bbox = font.getbbox(text)
        tx = (x0 + x1) / 2 - (bbox[0] + bbox[2]) / 2
        ty = y0 - (bbox[3] - bbox[1]) - size * 0.02 - bbox[1]
        draw.text((tx, ty), text, fill=axis, font=font)
