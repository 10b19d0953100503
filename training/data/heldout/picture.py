"""What a held-out picture contains: figures on a background, maybe a word, and how it is drawn.

A picture is one of three kinds: `single` (one large shape, any size from 32 to 512 px),
`scene` (2 to 5 shapes placed freely without overlapping, 96 px and up so every shape keeps
at least 8-12 px of radius) and `sign` (a written word, sometimes on a white sign, sometimes
beside a shape). Sampling is a pure function of a numpy Generator.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from training.data.heldout.geometry import SHAPE_NAMES, min_radius
from training.data.heldout.palette import RGB, dark_tint, pale_tint, usable_colors, usable_shades

MIN_SIZE, MAX_SIZE = 32, 512
MIN_SCENE_SIZE = 96
MIN_SIGN_SIZE = 64
MIN_SIDE_SIZE = 48  # a shape placed in one half is smaller: keep it >= 8 px of radius
BACKGROUND_STYLES = ("flat", "gradient", "blotchy")
EDGES = ("anti-aliased", "hard")
SIDES = ("left", "right", "top", "bottom")
# Words for signs: everyday words that are neither colours nor shapes nor numbers.
WORDS = ("stop", "open", "exit", "milk", "rain", "bird", "tree", "moon", "fish", "lamp", "book", "door",
         "cake", "frog", "ship", "road", "shoe", "kite", "bell", "leaf")
# the bounding radius of every shape, in shape radii (the rectangle's corners reach sqrt(1.25))
REACH = 1.12


@dataclass(frozen=True)
class Figure:
    shape: str
    color: str  # the colour's name
    rgb: RGB  # the shade it is drawn in
    cx: float  # centre, pixels
    cy: float
    radius: float  # pixels
    rotation: float  # degrees, counter-clockwise


@dataclass(frozen=True)
class Picture:
    kind: str
    size: int
    background: str  # one of BACKGROUND_STYLES
    tints: tuple[RGB, ...]  # the background's colours (one, or the two ends of a gradient)
    figures: tuple[Figure, ...] = ()
    word: str | None = None
    word_rgb: RGB = (0, 0, 0)
    sign: bool = False  # the word sits on a white sign with a dark border
    word_box: tuple[float, float, float, float] | None = None  # x0, y0, x1, y1 of the word's area
    edges: str = "anti-aliased"
    noise: float = 0.0  # standard deviation of the per-pixel noise, 0..255 scale
    jpeg_quality: int | None = None  # None: saved as PNG
    seed: int = 0  # the renderer's own draws (blotches, noise)


def sample_size(rng: np.random.Generator, lo: int = MIN_SIZE, hi: int = MAX_SIZE) -> int:
    """Log-uniform between lo and hi, so small images are as common as large ones per octave."""
    return int(round(math.exp(rng.uniform(math.log(lo), math.log(hi)))))


def sample_background(rng: np.random.Generator) -> tuple[str, tuple[RGB, ...]]:
    style = str(rng.choice(BACKGROUND_STYLES, p=(0.45, 0.35, 0.2)))
    tint = dark_tint if rng.random() < 0.18 else pale_tint
    if style == "gradient":
        return style, (tint(rng), tint(rng))
    return style, (tint(rng),)


def _drawing(rng: np.random.Generator) -> dict:
    jpeg = rng.random() < 0.35
    return {
        "edges": EDGES[int(rng.random() < 0.35)],
        "noise": float(rng.choice((0.0, 0.0, rng.uniform(3, 14)))),
        "jpeg_quality": int(rng.integers(35, 91)) if jpeg else None,
        "seed": int(rng.integers(0, 2**31)),
    }


def _figure(rng: np.random.Generator, shape: str, color: str, tints: tuple[RGB, ...],
            cx: float, cy: float, radius: float) -> Figure:
    shades = usable_shades(color, tints)
    rgb = shades[int(rng.integers(len(shades)))]
    rotation = float(rng.uniform(-12, 12))
    if shape == "arrow":  # arrows point any of four ways
        rotation += 90.0 * int(rng.integers(4))
    elif shape == "rectangle" and rng.random() < 0.3:  # standing rectangles too
        rotation += 90.0
    return Figure(shape, color, rgb, round(cx, 2), round(cy, 2), round(radius, 2), round(rotation, 2))


def sample_single(rng: np.random.Generator, *, side: str | None = None) -> Picture:
    """One large shape; `side` places it clearly in that half (for position questions)."""
    size = sample_size(rng, lo=MIN_SIDE_SIZE if side else MIN_SIZE)
    style, tints = sample_background(rng)
    frac = rng.uniform(0.17, 0.24) if side else rng.uniform(0.26, 0.42)
    radius = size * frac
    shape = str(rng.choice([s for s in SHAPE_NAMES if min_radius(s) <= radius]))
    color = str(rng.choice(usable_colors(tints)))
    margin = radius * REACH + 1
    cx = size / 2 + rng.uniform(-0.06, 0.06) * size
    cy = size / 2 + rng.uniform(-0.06, 0.06) * size
    if side in ("left", "right"):
        cx = rng.uniform(margin, size * 0.3) if side == "left" else rng.uniform(size * 0.7, size - margin)
    elif side in ("top", "bottom"):
        cy = rng.uniform(margin, size * 0.3) if side == "top" else rng.uniform(size * 0.7, size - margin)
    fig = _figure(rng, shape, color, tints, cx, cy, radius)
    return Picture("single", size, style, tints, (fig,), **_drawing(rng))


def _place(rng: np.random.Generator, size: int, radii: list[float], tries: int = 200) -> list[tuple[float, float]] | None:
    """Centres for circles of `radii` (times REACH) that neither overlap nor leave the image."""
    placed: list[tuple[float, float, float]] = []
    for r in radii:
        reach = r * REACH
        for _ in range(tries):
            x, y = rng.uniform(reach + 1, size - reach - 1), rng.uniform(reach + 1, size - reach - 1)
            if all(math.hypot(x - px, y - py) > reach + pr + 0.04 * size for px, py, pr in placed):
                placed.append((x, y, reach))
                break
        else:
            return None
    return [(x, y) for x, y, _ in placed]


def sample_scene(rng: np.random.Generator, n: int | None = None) -> Picture | None:
    """2-5 shapes drawn from a few kinds and colours (so counts above 1 happen); None if they do not fit."""
    size = sample_size(rng, lo=MIN_SCENE_SIZE)
    style, tints = sample_background(rng)
    n = n or int(rng.integers(2, 6))
    radii = [max(size * rng.uniform(0.07, 0.13), 8.0) for _ in range(n)]
    centres = _place(rng, size, radii)
    if centres is None:
        return None
    kinds = list(rng.choice(SHAPE_NAMES, size=int(rng.integers(1, n + 1)), replace=False))
    colors = list(rng.choice(usable_colors(tints), size=int(rng.integers(1, n + 1)), replace=False))
    figures = []
    for (cx, cy), r in zip(centres, radii, strict=True):
        fitting = [k for k in kinds if min_radius(k) <= r] or [k for k in SHAPE_NAMES if min_radius(k) <= r]
        shape = str(rng.choice(fitting))
        figures.append(_figure(rng, shape, str(rng.choice(colors)), tints, cx, cy, r))
    return Picture("scene", size, style, tints, tuple(figures), **_drawing(rng))


def sample_sign(rng: np.random.Generator) -> Picture:
    """A written word (sometimes on a white sign), and sometimes a shape beside it."""
    size = sample_size(rng, lo=MIN_SIGN_SIZE)
    style, tints = sample_background(rng)
    word = str(rng.choice(WORDS))
    sign = bool(rng.random() < 0.5)
    figures: tuple[Figure, ...] = ()
    if rng.random() < 0.4:  # the word above, a shape below
        box = (size * 0.08, size * 0.06, size * 0.92, size * 0.44)
        r = size * 0.2
        shape = str(rng.choice([s for s in SHAPE_NAMES if min_radius(s) <= r]))
        figures = (_figure(rng, shape, str(rng.choice(usable_colors(tints))), tints, size * 0.5, size * 0.72, r),)
    else:
        h = size * rng.uniform(0.3, 0.45)
        top = size / 2 - h / 2 + rng.uniform(-0.1, 0.1) * size
        box = (size * 0.08, top, size * 0.92, top + h)
    ink_from = ((255, 255, 255),) if sign else tints
    inks = [c for name in ("black", "blue", "red", "white") for c in usable_shades(name, ink_from)[:1]]
    word_rgb = inks[int(rng.integers(len(inks)))]
    return Picture("sign", size, style, tints, figures, word=word, word_rgb=word_rgb, sign=sign,
                   word_box=tuple(round(v, 2) for v in box), **_drawing(rng))
