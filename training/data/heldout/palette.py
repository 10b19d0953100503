"""Colours of the held-out world: the names people use, each in pure and muted shades.

Every shade is one a person would give the same name without hesitating (a muted red is
still plainly red, never brick or rose); colours whose names people disagree on (teal,
magenta, beige, olive...) are left out, so a colour question has one right answer.
Backgrounds are pale or dark tints of a random hue; a shape colour is only used where it
stands far enough from every background colour of the image to be seen and named.
"""

from __future__ import annotations

import colorsys
import math

import numpy as np

RGB = tuple[int, int, int]

# name -> shades; the first shade of each is the "pure" hue, the others muted or darker.
SHADES: dict[str, tuple[RGB, ...]] = {
    "red": ((228, 26, 28), (190, 58, 52), (204, 36, 60)),
    "orange": ((250, 130, 10), (226, 126, 52)),
    "yellow": ((250, 222, 20), (226, 200, 72)),
    "green": ((32, 170, 52), (84, 142, 82), (22, 112, 46)),
    "blue": ((26, 82, 230), (70, 104, 180), (40, 122, 216)),
    "purple": ((132, 40, 182), (116, 76, 150)),
    "pink": ((246, 102, 172), (226, 142, 178)),
    "brown": ((136, 80, 34), (118, 84, 58)),
    "black": ((14, 14, 14), (46, 46, 46)),
    "white": ((252, 252, 252), (236, 236, 236)),
    "grey": ((128, 128, 128), (162, 162, 162)),
}
COLOR_NAMES: tuple[str, ...] = tuple(SHADES)
# Only real synonyms: the same colour spelled two ways.
COLOR_ALIASES: dict[str, tuple[str, ...]] = {"grey": ("gray",)}

# How far (Euclidean, RGB) a shape's colour must stand from the background to be used.
MIN_CONTRAST = 95.0


def distance(a: RGB, b: RGB) -> float:
    return math.dist(a, b)


def pale_tint(rng: np.random.Generator) -> RGB:
    """A light background colour of a random hue (near-white to a clear pastel)."""
    h = float(rng.random())
    s = float(rng.uniform(0.03, 0.22))
    v = float(rng.uniform(0.88, 0.99))
    return _hsv(h, s, v)


def dark_tint(rng: np.random.Generator) -> RGB:
    """A dark background colour of a random hue (charcoal, navy-ish, dark olive...)."""
    h = float(rng.random())
    s = float(rng.uniform(0.05, 0.35))
    v = float(rng.uniform(0.12, 0.26))
    return _hsv(h, s, v)


def _hsv(h: float, s: float, v: float) -> RGB:
    r, g, b = colorsys.hsv_to_rgb(h, s, v)
    return (round(r * 255), round(g * 255), round(b * 255))


def usable_colors(backgrounds: tuple[RGB, ...]) -> list[str]:
    """Colour names with at least one shade that contrasts with every background colour."""
    return [name for name in COLOR_NAMES if usable_shades(name, backgrounds)]


def usable_shades(name: str, backgrounds: tuple[RGB, ...]) -> list[RGB]:
    return [c for c in SHADES[name] if all(distance(c, bg) >= MIN_CONTRAST for bg in backgrounds)]
