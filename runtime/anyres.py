"""LLaVA-OneVision's any-resolution input (`anyres_max_N` + `spatial_unpad`), numpy + PIL.

What the paper's fork (`llava/mm_utils.py`, `llava/model/llava_arch.py`) feeds for one image:

    plan = plan_anyres((w, h), pinpoints, tile=384, side=27, max_tiles=9)
    views = anyres_views(img, plan)      # [1 + rows*cols, 384, 384, 3] uint8, base view first
    feats = encoder(each view)           # [side*side, D] each (after the projector, maybe pooled)
    seq = merge(feats[0], feats[1:], plan, newline)     # [plan.tokens, D]

- the base view is the whole image stretched to tile x tile (today's single-view input);
- the canvas is the pinpoint that keeps the most original pixels (then wastes the fewest;
  the first one wins ties); the image is resized into it (bicubic, aspect kept, `ceil`),
  pasted centred on black and cut into tiles, row-major;
- the tiles' feature grids form one (rows*side) x (cols*side) grid; the rows or columns
  that only saw padding are cropped ("unpad", with the fork's `int()` truncation); when
  the grid's area exceeds max_tiles tiles by more than 10% it is shrunk bilinearly; the
  `image_newline` vector ends every row; the rows follow the base view's tokens.

Everything that decides the token count depends on the image size alone, so a plan (and
`plan_with_cap`'s lower tile count under a token cap) is known before any encoding.
"""

from __future__ import annotations

import ast
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from runtime.image_pool import bilinear_resize

Pinpoints = tuple[tuple[int, int], ...]


def parse_pinpoints(value: object, tile: int) -> Pinpoints:
    """A config's `image_grid_pinpoints` -> ((width, height), ...) in pixels, order kept.

    Accepts the released form (a list of [w, h] pixel pairs), the training command-line
    range "(1x1),...,(6x6)" (first index = width) and a string holding a literal list of
    pairs (read with `ast.literal_eval`, never `eval`). Raises ValueError.
    """
    if isinstance(value, str) and "x" in value:
        found = re.findall(r"\((\d+)x(\d+)\)", value)
        if not found:
            raise ValueError(f"image_grid_pinpoints {value!r} has no (AxB) ranges")
        (a0, b0), (a1, b1) = (tuple(map(int, f)) for f in (found[0], found[-1]))
        pairs = [(i * tile, j * tile) for i in range(a0, a1 + 1) for j in range(b0, b1 + 1)]
    else:
        raw = ast.literal_eval(value) if isinstance(value, str) else value
        try:
            pairs = [(int(p[0]), int(p[1])) for p in raw]  # type: ignore[union-attr]
        except (TypeError, ValueError, IndexError):
            raise ValueError(f"image_grid_pinpoints {value!r} is not a list of [width, height] pairs") from None
    if not pairs:
        raise ValueError("image_grid_pinpoints is empty")
    for w, h in pairs:
        if w <= 0 or h <= 0 or w % tile or h % tile:
            raise ValueError(f"pinpoint {w}x{h} is not a positive multiple of the {tile} px tile")
    return tuple(pairs)


def parse_max_tiles(image_aspect_ratio: str) -> int | None:
    """'anyres_max_9' -> 9; 'anyres' -> None (no shrink). Raises ValueError otherwise."""
    m = re.fullmatch(r"anyres_max_(\d+)", image_aspect_ratio)
    if m and int(m.group(1)) > 0:
        return int(m.group(1))
    if image_aspect_ratio == "anyres":
        return None
    raise ValueError(f"image_aspect_ratio {image_aspect_ratio!r} is not an any-resolution mode")


def select_best_resolution(size: tuple[int, int], pinpoints: Sequence[tuple[int, int]]) -> tuple[int, int]:
    """The pinpoint that keeps the most original pixels, then wastes the fewest; first wins ties."""
    w, h = size
    best, best_eff, best_waste = pinpoints[0], -1, math.inf
    for pw, ph in pinpoints:
        s = min(pw / w, ph / h)
        eff = min(int(w * s) * int(h * s), w * h)  # int() truncation, as the fork
        waste = pw * ph - eff
        if eff > best_eff or (eff == best_eff and waste < best_waste):
            best, best_eff, best_waste = (pw, ph), eff, waste
    return best


@dataclass(frozen=True)
class AnyresPlan:
    """Every integer of one image's layout, from its size alone."""

    size: tuple[int, int]  # original (width, height)
    tile: int  # pixels a side of one view
    canvas: tuple[int, int]  # the chosen pinpoint (width, height)
    cols: int
    rows: int
    resized: tuple[int, int]  # the image's size inside the canvas
    offset: tuple[int, int]  # where it is pasted (x, y)
    side: int  # feature grid side of one view (27, or pooled)
    crop_rows: tuple[int, int]  # [start, stop) of the tile grid kept by unpad
    crop_cols: tuple[int, int]
    out_rows: int  # after the optional shrink
    out_cols: int
    shrunk: bool

    @property
    def views(self) -> int:
        return 1 + self.rows * self.cols

    @property
    def tokens(self) -> int:
        return self.side * self.side + self.out_rows * (self.out_cols + 1)


def _unpad_bounds(size: tuple[int, int], grid_h: int, grid_w: int) -> tuple[tuple[int, int], tuple[int, int]]:
    w, h = size
    if w / h > grid_w / grid_h:  # padding was added above and below
        new_h = int(h * (grid_w / w))  # truncation, as the fork (not transformers' round)
        pad = (grid_h - new_h) // 2
        return (pad, grid_h - pad), (0, grid_w)
    new_w = int(w * (grid_h / h))
    pad = (grid_w - new_w) // 2
    return (0, grid_h), (pad, grid_w - pad)


def plan_anyres(size: tuple[int, int], pinpoints: Sequence[tuple[int, int]], *, tile: int, side: int,
                max_tiles: int | None) -> AnyresPlan:
    w, h = size
    if w <= 0 or h <= 0:
        raise ValueError(f"image size {size} has no pixels")
    cw, ch = select_best_resolution(size, pinpoints)
    cols, rows = cw // tile, ch // tile
    sw, sh = cw / w, ch / h
    if sw < sh:  # the width fills the canvas
        nw, nh = cw, min(math.ceil(h * sw), ch)
    else:
        nh, nw = ch, min(math.ceil(w * sh), cw)
    (r0, r1), (c0, c1) = _unpad_bounds(size, rows * side, cols * side)
    out_h, out_w, shrunk = r1 - r0, c1 - c0, False
    if max_tiles is not None:
        times = math.sqrt(out_h * out_w / (max_tiles * side * side))
        if times > 1.1:
            out_h, out_w, shrunk = int(out_h // times), int(out_w // times), True  # float floor-div, as the fork
    return AnyresPlan((w, h), tile, (cw, ch), cols, rows, (nw, nh), ((cw - nw) // 2, (ch - nh) // 2), side,
                      (r0, r1), (c0, c1), out_h, out_w, shrunk)


def plan_with_cap(size: tuple[int, int], pinpoints: Sequence[tuple[int, int]], *, tile: int, side: int,
                  max_tiles: int | None, max_tokens: int | None) -> AnyresPlan | None:
    """The plan with the most tiles whose token count is at most `max_tokens` (all of them
    when None), or None when not even one tile fits. Lower tile counts drop the pinpoints
    with more tiles (order kept); unpad and shrink stay the trained rules."""
    full = plan_anyres(size, pinpoints, tile=tile, side=side, max_tiles=max_tiles)
    if max_tokens is None or full.tokens <= max_tokens:
        return full
    counts = sorted({(pw // tile) * (ph // tile) for pw, ph in pinpoints}, reverse=True)
    for k in counts:
        allowed = [p for p in pinpoints if (p[0] // tile) * (p[1] // tile) <= k]
        plan = plan_anyres(size, allowed, tile=tile, side=side, max_tiles=max_tiles)
        if plan.tokens <= max_tokens:
            return plan
    return None


def max_tokens(pinpoints: Sequence[tuple[int, int]], *, tile: int, side: int, max_tiles: int | None) -> int:
    """An upper bound of `plan.tokens` over every image size (sizes the context)."""
    worst = 0
    for pw, ph in pinpoints:
        gh, gw = (ph // tile) * side, (pw // tile) * side
        if max_tiles is not None and gh * gw > 1.21 * max_tiles * side * side:
            # shrunk to area ~max_tiles tiles (times > 1.1 after unpad) or left <= 1.21x of it
            area = int(1.21 * max_tiles * side * side) + 1
            worst = max(worst, area + gh)
        else:
            worst = max(worst, gh * (gw + 1))
    return side * side + worst


def anyres_views(img: Image.Image, plan: AnyresPlan) -> np.ndarray:
    """RGB PIL image -> [views, tile, tile, 3] uint8: the base view, then the tiles row-major."""
    bicubic = Image.Resampling.BICUBIC  # the fork's resize default (Pillow's for RGB)
    t = plan.tile
    out = np.empty((plan.views, t, t, 3), dtype=np.uint8)
    out[0] = np.asarray(img.resize((t, t), bicubic), dtype=np.uint8)  # stretched, not padded (as trained)
    canvas = Image.new("RGB", plan.canvas, (0, 0, 0))  # black padding, as the fork
    canvas.paste(img.resize(plan.resized, bicubic), plan.offset)
    arr = np.asarray(canvas, dtype=np.uint8)
    for r in range(plan.rows):
        for c in range(plan.cols):
            out[1 + r * plan.cols + c] = arr[r * t:(r + 1) * t, c * t:(c + 1) * t]
    return out


def merge(base: np.ndarray, tiles: np.ndarray, plan: AnyresPlan, newline: np.ndarray) -> np.ndarray:
    """base [side*side, D], tiles [rows*cols, side*side, D] (row-major), newline [D] -> [tokens, D]."""
    s, d = plan.side, base.shape[-1]
    if base.shape != (s * s, d) or tiles.shape != (plan.rows * plan.cols, s * s, d) or newline.shape != (d,):
        raise ValueError(f"feature shapes {base.shape}, {tiles.shape}, {newline.shape} do not fit "
                         f"{plan.rows}x{plan.cols} tiles of {s}x{s}")
    grid = tiles.reshape(plan.rows, plan.cols, s, s, d).transpose(0, 2, 1, 3, 4).reshape(plan.rows * s, plan.cols * s, d)
    grid = grid[plan.crop_rows[0]:plan.crop_rows[1], plan.crop_cols[0]:plan.crop_cols[1]]
    if plan.shrunk:
        grid = bilinear_resize(grid, plan.out_rows, plan.out_cols)
    out = np.empty((s * s + plan.out_rows * (plan.out_cols + 1), d), dtype=np.float32)
    out[:s * s] = base
    rows = out[s * s:].reshape(plan.out_rows, plan.out_cols + 1, d)
    rows[:, :-1] = grid
    rows[:, -1] = newline  # ends every row, the last one too
    return out
