"""The synthetic world's renderer: a scene graph -> an RGB image, deterministically.

The renderer draws only from the scene graph (clutter has its own seed inside the graph),
so the same scene gives the same bytes. Shapes are drawn at `supersample` times the size
and box-downsampled: anti-aliasing at low cost.
"""

from __future__ import annotations

import io
import math
import random
from functools import lru_cache

from PIL import Image, ImageDraw, ImageFont

from runtime.errors import ConfigError
from training.data.scene import Scene, Shape, TextMark
from training.data.vocabulary import BACKGROUNDS, COLORS

# Radius as a fraction of half a cell: small and large differ by 2x.
SIZE_SCALE = {"small": 0.45, "medium": 0.66, "large": 0.9}
CLUTTER_RGB = (150, 150, 150)


def render(scene: Scene, image_size: int = 128, supersample: int = 2) -> Image.Image:
    """Draw the scene as an RGB image of `image_size` x `image_size` pixels."""
    size = image_size * supersample
    img = Image.new("RGB", (size, size), BACKGROUNDS[scene.background])
    draw = ImageDraw.Draw(img)
    _draw_pattern(draw, scene, size)
    if scene.clutter:
        _draw_clutter(draw, scene, size)
    if scene.kind == "chart":
        _draw_chart(draw, scene, size)
    else:
        cell = size / scene.grid
        for s in scene.shapes:
            _draw_shape(draw, s, cell)
        for t in scene.texts:
            _draw_text(draw, t, cell)
    return img.reduce(supersample) if supersample > 1 else img


def render_png(scene: Scene, image_size: int = 128, supersample: int = 2) -> bytes:
    buf = io.BytesIO()
    # compress_level 1: ~3x faster than the default and still lossless; bytes stay
    # deterministic for a given zlib.
    render(scene, image_size, supersample).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def shape_center(s: Shape, image_size: int, grid: int = 3) -> tuple[float, float]:
    """Pixel centre of a shape in the final image (tests sample colours here)."""
    cell = image_size / grid
    r = cell / 2 * SIZE_SCALE[s.size]
    room = max(0.0, cell / 2 - r - cell * 0.04)
    return ((s.col + 0.5) * cell + s.dx * room, (s.row + 0.5) * cell + s.dy * room)


def _shade(rgb: tuple[int, int, int], delta: int) -> tuple[int, int, int]:
    return tuple(max(0, min(255, v + delta)) for v in rgb)  # type: ignore[return-value]


def _draw_pattern(draw: ImageDraw.ImageDraw, scene: Scene, size: int) -> None:
    if scene.pattern == "plain":
        return
    ink = _shade(BACKGROUNDS[scene.background], -22)
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


def _polygon(cx: float, cy: float, r: float, n: int, start: float) -> list[tuple[float, float]]:
    return [(cx + r * math.cos(start + 2 * math.pi * i / n), cy + r * math.sin(start + 2 * math.pi * i / n))
            for i in range(n)]


def _draw_shape(draw: ImageDraw.ImageDraw, s: Shape, cell: float) -> None:
    fill = COLORS[s.color]
    r = cell / 2 * SIZE_SCALE[s.size]
    room = max(0.0, cell / 2 - r - cell * 0.04)
    cx, cy = (s.col + 0.5) * cell + s.dx * room, (s.row + 0.5) * cell + s.dy * room
    if s.shape == "circle":
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fill)
    elif s.shape == "square":
        h = r * 0.85
        draw.rectangle((cx - h, cy - h, cx + h, cy + h), fill=fill)
    elif s.shape == "triangle":
        # Shifted down a little so its centroid sits at the cell centre.
        draw.polygon(_polygon(cx, cy + r * 0.15, r, 3, -math.pi / 2), fill=fill)
    elif s.shape == "diamond":
        draw.polygon([(cx, cy - r), (cx + r * 0.75, cy), (cx, cy + r), (cx - r * 0.75, cy)], fill=fill)
    elif s.shape == "hexagon":
        draw.polygon(_polygon(cx, cy, r, 6, 0.0), fill=fill)
    elif s.shape == "star":
        pts = []
        for i in range(10):
            rad = r if i % 2 == 0 else r * 0.45
            a = -math.pi / 2 + math.pi * i / 5
            pts.append((cx + rad * math.cos(a), cy + rad * math.sin(a)))
        draw.polygon(pts, fill=fill)
    elif s.shape == "cross":
        w = r * 0.36
        draw.rectangle((cx - r, cy - w, cx + r, cy + w), fill=fill)
        draw.rectangle((cx - w, cy - r, cx + w, cy + r), fill=fill)
    else:  # validate_scene rejects unknown shapes; this guards hand-built graphs
        raise ConfigError(f"unknown shape {s.shape!r}")


@lru_cache(maxsize=64)
def _font(px: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=px)


@lru_cache(maxsize=4096)
def _fitted_font(text: str, box: int) -> tuple[int, tuple[int, int, int, int]]:
    """The largest font size (<= 60% of the box) whose text fits 90% of the box width."""
    px = max(6, int(box * 0.6))
    while True:
        bbox = _font(px).getbbox(text)
        if bbox[2] - bbox[0] <= box * 0.9 or px <= 6:
            return px, bbox
        px -= 1


def _draw_text(draw: ImageDraw.ImageDraw, t: TextMark, cell: float) -> None:
    px, bbox = _fitted_font(t.text, int(cell))
    cx, cy = (t.col + 0.5) * cell, (t.row + 0.5) * cell
    x = cx - (bbox[0] + bbox[2]) / 2
    y = cy - (bbox[1] + bbox[3]) / 2
    draw.text((x, y), t.text, fill=COLORS[t.color], font=_font(px))


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

