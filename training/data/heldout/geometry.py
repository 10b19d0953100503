"""Shape geometry of the held-out world, as inside-tests on sample points (numpy only).

This world does not draw with Pillow's polygon fill: each shape is a predicate on points
of a unit frame (radius 1, y up), and the renderer samples it once per pixel (hard edges)
or on a sub-pixel grid (anti-aliased coverage). Polygons use an even-odd crossing test, so
concave outlines (star, arrow) need no triangulation.

Each shape is drawn so that its name is the only one a person would give it: the rectangle
is twice as wide as it is tall (never a square), the ellipse is clearly flattened (never a
circle), the diamond is a rhombus standing on a corner, the cross is an upright plus.
"""

from __future__ import annotations

import math

import numpy as np

SHAPE_NAMES: tuple[str, ...] = (
    "circle", "square", "rectangle", "triangle", "star", "hexagon", "pentagon", "diamond",
    "ellipse", "heart", "cross", "arrow",
)
# Only real synonyms of the drawn shape: an ellipse is what people call an oval, and this
# diamond (a rhombus on its corner) is a rhombus. "box" is not a square, "plus" names a sign.
SHAPE_ALIASES: dict[str, tuple[str, ...]] = {"ellipse": ("oval",), "diamond": ("rhombus",)}
# Pairs where one name also fits the other shape in a strict reading (a square is a
# rectangle, a circle is an ellipse): never ask about one while the other is in the image,
# and never offer one as a wrong option for the other.
CONFUSABLE: dict[str, frozenset[str]] = {
    "square": frozenset({"rectangle"}),
    "rectangle": frozenset({"square"}),
    "circle": frozenset({"ellipse"}),
    "ellipse": frozenset({"circle"}),
}
# Shapes told apart only by their corners need room: the smallest radius (px) they are drawn at.
MIN_RADIUS_PX: dict[str, float] = {"pentagon": 12.0, "hexagon": 12.0, "star": 10.0, "heart": 10.0, "arrow": 10.0}
DEFAULT_MIN_RADIUS_PX = 8.0


def min_radius(shape: str) -> float:
    return MIN_RADIUS_PX.get(shape, DEFAULT_MIN_RADIUS_PX)


def _regular(n: int, start_deg: float, radius: float = 1.0) -> np.ndarray:
    a = np.deg2rad(start_deg) + 2 * np.pi * np.arange(n) / n
    return np.stack([radius * np.cos(a), radius * np.sin(a)], axis=1)


def _star(points: int = 5, inner: float = 0.42) -> np.ndarray:
    a = np.deg2rad(90.0) + np.pi * np.arange(2 * points) / points
    r = np.where(np.arange(2 * points) % 2 == 0, 1.0, inner)
    return np.stack([r * np.cos(a), r * np.sin(a)], axis=1)


# Outlines in the unit frame (x right, y up), pointing "up" or "right" before rotation.
POLYGONS: dict[str, np.ndarray] = {
    "square": np.array([(-0.78, -0.78), (0.78, -0.78), (0.78, 0.78), (-0.78, 0.78)]),
    "rectangle": np.array([(-1.0, -0.5), (1.0, -0.5), (1.0, 0.5), (-1.0, 0.5)]),
    "triangle": _regular(3, 90.0),
    "pentagon": _regular(5, 90.0),
    "hexagon": _regular(6, 0.0),
    "star": _star(),
    "diamond": np.array([(0.0, 1.0), (0.68, 0.0), (0.0, -1.0), (-0.68, 0.0)]),
    "cross": np.array([(-0.3, 1.0), (0.3, 1.0), (0.3, 0.3), (1.0, 0.3), (1.0, -0.3), (0.3, -0.3), (0.3, -1.0),
                       (-0.3, -1.0), (-0.3, -0.3), (-1.0, -0.3), (-1.0, 0.3), (-0.3, 0.3)]),
    "arrow": np.array([(-1.0, -0.22), (0.15, -0.22), (0.15, -0.62), (1.0, 0.0), (0.15, 0.62), (0.15, 0.22),
                       (-1.0, 0.22)]),
}


def inside_polygon(x: np.ndarray, y: np.ndarray, poly: np.ndarray) -> np.ndarray:
    """Even-odd rule: a point is inside when a ray to +x crosses the outline an odd number of times."""
    inside = np.zeros(x.shape, dtype=bool)
    px, py = poly[:, 0], poly[:, 1]
    qx, qy = np.roll(px, -1), np.roll(py, -1)
    for x0, y0, x1, y1 in zip(px, py, qx, qy, strict=True):
        if y0 == y1:
            continue
        spans = (y0 > y) != (y1 > y)
        cross_x = x0 + (y - y0) * (x1 - x0) / (y1 - y0)
        inside ^= spans & (x < cross_x)
    return inside


def inside_unit(shape: str, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Whether points (unit frame, y up) are inside the unrotated shape."""
    if shape == "circle":
        return x * x + y * y <= 1.0
    if shape == "ellipse":
        return x * x + (y / 0.52) ** 2 <= 1.0
    if shape == "heart":
        # the classic implicit heart (x^2 + y^2 - 1)^3 - x^2 y^3 <= 0, scaled into the unit disc
        hx, hy = x * 1.18, y * 1.18 + 0.12
        return (hx * hx + hy * hy - 1.0) ** 3 - hx * hx * hy ** 3 <= 0.0
    if shape in POLYGONS:
        return inside_polygon(x, y, POLYGONS[shape])
    raise ValueError(f"unknown shape {shape!r}")


def coverage(shape: str, cx: float, cy: float, radius: float, rotation_deg: float,
             box: tuple[int, int, int, int], samples: int) -> np.ndarray:
    """Fraction of each pixel of `box` (x0, y0, x1, y1; image coordinates, y down) inside the shape.

    `samples` sub-pixel samples per side: 1 gives hard edges (the pixel centre decides),
    4 gives 16 samples per pixel, i.e. anti-aliased edges.
    """
    x0, y0, x1, y1 = box
    offsets = (np.arange(samples) + 0.5) / samples
    xs = (np.arange(x0, x1)[:, None] + offsets[None, :]).ravel()
    ys = (np.arange(y0, y1)[:, None] + offsets[None, :]).ravel()
    gx, gy = np.meshgrid(xs, ys)
    theta = math.radians(rotation_deg)
    c, s = math.cos(theta), math.sin(theta)
    dx, dy = (gx - cx) / radius, (cy - gy) / radius  # to the unit frame, y up
    ux, uy = c * dx + s * dy, -s * dx + c * dy  # undo the shape's rotation
    hit = inside_unit(shape, ux, uy).astype(np.float32)
    h, w = y1 - y0, x1 - x0
    return hit.reshape(h, samples, w, samples).mean(axis=(1, 3))
