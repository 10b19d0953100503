"""Drawing scene graphs from a seed: grid scenes, bar charts and the everyday layouts.

Same seed, same scene: sampling uses only `random.Random(seed)`. Every picture also draws
its look (size, background tint and texture, shades, rotation, edges, noise, JPEG) here,
so the renderer only reads the graph.

Shape colours are chosen to stand out from the background (RGB distance >= MIN_CONTRAST
to every tint of it): a white shape only on a dark background, no pink on pale pink.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

from training.data.scene import (
    Bar,
    Scene,
    SceneConfig,
    Shape,
    TextMark,
    cell_of,
    hex_rgb,
    rgb_hex,
    size_of_radius,
)
from training.data.vocabulary import (
    BACKGROUNDS,
    CHART_BACKGROUNDS,
    COLORS,
    DARK_BACKGROUNDS,
    FONT_FILES,
    PATTERNS,
    SHADES,
    SHAPES,
    SIGN_COLORS,
    SIZES,
    TEXT_COLORS,
    WORDS,
)

MIN_CONTRAST = 100.0
ON_DARK_TEXT = ("white", "yellow", "pink", "orange")
# Smallest picture per layout (smaller ones could not show it), and the largest grid picture.
MIN_SIZE = {"grid": 64, "chart": 64, "single": 32, "few": 80, "sign": 48}
MAX_GRID_SIZE = 384
# Radius ranges (fractions of the image side) of freely placed shapes, per size word.
FREE_RADIUS = {"small": (0.055, 0.085), "medium": (0.095, 0.135), "large": (0.15, 0.2)}
SINGLE_RADIUS = (0.15, 0.44)
# Shapes told apart by corners or outline details need more pixels than a square does.
MIN_RADIUS_PX = {"pentagon": 12, "hexagon": 12, "star": 10, "heart": 10, "arrow": 10}
MIN_RADIUS_PX_DEFAULT = 8
UNROTATED = ("circle",)  # rotating a circle changes nothing; arrows pick a direction instead
# Still called the same however far they are turned (SceneConfig.max_turn).
TURNABLE = ("triangle", "pentagon", "hexagon", "star", "heart", "cross")


@dataclass(frozen=True)
class PairRules:
    """Colour-shape pairs a scene may not use, and one it must use (held-out splits)."""

    forbidden: frozenset[tuple[str, str]] = field(default_factory=frozenset)
    required: tuple[tuple[str, str], ...] = ()  # at least one of these must appear


DEFAULT_CONFIG = SceneConfig()
NO_RULES = PairRules()


def sample_scene(seed: int, config: SceneConfig = DEFAULT_CONFIG, rules: PairRules = NO_RULES) -> Scene:
    rng = random.Random(seed)
    if rng.random() < config.chart_prob:  # charts have no colour-shape pairs: any split may have them
        return _sample_chart(rng, config)
    if rng.random() < config.free_prob:
        layout = rng.choices(("single", "few", "sign"),
                             weights=(config.single_weight, config.few_weight, config.sign_weight))[0]
        return {"single": _sample_single, "few": _sample_few, "sign": _sample_sign}[layout](rng, config, rules)
    return _sample_grid(rng, config, rules)


# ---------------------------------------------------------------------------------------
# The look of a picture


def _distance(a: tuple[int, int, int], b: tuple[int, int, int]) -> float:
    return math.dist(a, b)


def _jitter(rng: random.Random, rgb: tuple[int, int, int], amount: int) -> str:
    return rgb_hex(tuple(v + rng.randint(-amount, amount) for v in rgb))


def _look(rng: random.Random, config: SceneConfig, layout: str, *, patterns: tuple[str, ...]) -> dict:
    """Size, background and degradations of one picture (Scene keyword arguments)."""
    size = 0
    if config.min_size:
        lo = max(config.min_size, MIN_SIZE[layout])
        hi = config.max_size if layout != "grid" else min(config.max_size, MAX_GRID_SIZE)
        lo = min(lo, hi)
        size = int(round(math.exp(rng.uniform(math.log(lo), math.log(hi)))))
    dark = rng.random() < config.dark_prob
    names = DARK_BACKGROUNDS if dark else tuple(b for b in BACKGROUNDS if b not in DARK_BACKGROUNDS)
    background = rng.choice(names)
    pattern = rng.choice(patterns)
    base = BACKGROUNDS[background]
    bg_rgb = _jitter(rng, base, 8)
    bg_rgb2 = ""
    if pattern == "gradient":
        delta = rng.choice((-1, 1)) * rng.randint(25, 45)
        if dark:
            delta = abs(delta)
        bg_rgb2 = rgb_hex(tuple(v + delta for v in hex_rgb(bg_rgb)))
    noise = round(rng.uniform(3, 14), 1) if rng.random() < config.noise_prob else 0.0
    jpeg = rng.randint(35, 90) if rng.random() < config.jpeg_prob else 0
    aa = 1 if rng.random() < config.hard_edge_prob else 0
    look = {"size": size, "background": background, "pattern": pattern, "bg_rgb": bg_rgb, "bg_rgb2": bg_rgb2,
            "noise": noise, "jpeg": jpeg, "aa": aa, "clutter_seed": rng.randrange(2**31)}
    if config.shape_variety:  # no draw from rng: the renderer derives each outline from clutter_seed
        look["variety"] = config.shape_variety
    return look


def _tints(look: dict) -> list[tuple[int, int, int]]:
    return [hex_rgb(v) for v in (look["bg_rgb"], look["bg_rgb2"]) if v]


def _stands_out(rgb: tuple[int, int, int], look: dict) -> bool:
    return all(_distance(rgb, t) >= MIN_CONTRAST for t in _tints(look))


def _visible_colors(look: dict) -> list[str]:
    return [c for c in COLORS if _stands_out(COLORS[c], look)]


def _shade(rng: random.Random, color: str, look: dict, config: SceneConfig) -> str:
    """A shade of `color` that stands out from the background ("" = the canonical RGB)."""
    if rng.random() < config.shade_prob:
        for _ in range(8):
            rgb = hex_rgb(_jitter(rng, rng.choice(SHADES[color]), 6))
            if _stands_out(rgb, look):
                return rgb_hex(rgb)
    return ""


def _pairs(look: dict, rules: PairRules) -> list[tuple[str, str]]:
    visible = _visible_colors(look)
    return [(c, s) for c in visible for s in SHAPES if (c, s) not in rules.forbidden]


def _look_for(rng: random.Random, config: SceneConfig, layout: str, rules: PairRules,
              patterns: tuple[str, ...]) -> dict:
    """A look on which a held-out pair the split requires can be seen."""
    for _ in range(20):
        look = _look(rng, config, layout, patterns=patterns)
        if not rules.required or any(_stands_out(COLORS[c], look) for c, _ in rules.required):
            return look
    return look


def _angle(rng: random.Random, shape: str, config: SceneConfig) -> float:
    if shape == "arrow":
        return float(rng.choice((0, 90, 180, 270))) + round(rng.uniform(-config.max_rotation, config.max_rotation), 1)
    if shape in UNROTATED or config.max_rotation == 0:
        return 0.0
    # one draw either way: a wider turn changes angles only, never the rest of the scene
    limit = config.max_turn if shape in TURNABLE and config.max_turn else config.max_rotation
    return round(rng.uniform(-limit, limit), 1)


def _aspect(rng: random.Random, shape: str) -> float:
    if shape == "rectangle":
        return round(rng.uniform(0.42, 0.62), 3)
    if shape == "ellipse":
        return round(rng.uniform(0.5, 0.66), 3)
    return 0.0


def _rotation_for(rng: random.Random, shape: str, config: SceneConfig) -> float:
    """Rectangles and ellipses lie flat or stand up; others turn a little."""
    angle = _angle(rng, shape, config)
    if shape in ("rectangle", "ellipse") and rng.random() < 0.3:
        angle += 90.0
    return angle


def _pick_pair(rng: random.Random, allowed: list[tuple[str, str]], rules: PairRules,
               look: dict) -> tuple[str, str] | None:
    required = [p for p in rules.required if _stands_out(COLORS[p[0]], look)]
    if required:
        return rng.choice(required)
    return rng.choice(allowed) if allowed else None


def _text_color(rng: random.Random, look: dict) -> str:
    """Dark letters on a pale background, light ones on a dark background."""
    dark = look["background"] in DARK_BACKGROUNDS
    pool = [c for c in (ON_DARK_TEXT if dark else TEXT_COLORS) if _stands_out(COLORS[c], look)]
    return rng.choice(pool or ["white" if dark else "black"])


def _word(rng: random.Random) -> str:
    word = rng.choice(WORDS)
    case = rng.random()
    return word.upper() if case < 0.35 else word.capitalize() if case < 0.6 else word


# ---------------------------------------------------------------------------------------
# Layouts


def _sample_chart(rng: random.Random, config: SceneConfig) -> Scene:
    n = rng.randint(config.min_bars, config.max_bars)
    colors = rng.sample([c for c in COLORS if c not in ("white", "grey")], n)
    values = rng.sample(range(1, 10), n)
    background = rng.choice(CHART_BACKGROUNDS)
    size = 0
    if config.min_size:
        lo, hi = min(max(config.min_size, MIN_SIZE["chart"]), config.max_size), min(config.max_size, MAX_GRID_SIZE)
        size = int(round(math.exp(rng.uniform(math.log(lo), math.log(max(lo, hi))))))
    jpeg = rng.randint(50, 90) if rng.random() < config.jpeg_prob else 0
    return Scene(
        kind="chart", background=background, pattern="plain", grid=config.grid,
        bars=tuple(Bar(c, v) for c, v in zip(colors, values, strict=True)), size=size, jpeg=jpeg,
    )


def _sample_grid(rng: random.Random, config: SceneConfig, rules: PairRules) -> Scene:
    grid = config.grid
    look = _look_for(rng, config, "grid", rules, PATTERNS)
    n_items = rng.randint(config.min_objects, config.max_objects)
    n_texts = 0
    if config.max_texts and rng.random() < config.text_prob:
        n_texts = rng.randint(1, min(config.max_texts, n_items - 1)) if n_items > 1 else 0
    n_shapes = n_items - n_texts
    cells = rng.sample(range(grid * grid), n_items)
    allowed = _pairs(look, PairRules(forbidden=rules.forbidden))
    pairs = [rng.choice(allowed) for _ in range(n_shapes)]
    required = [p for p in rules.required if _stands_out(COLORS[p[0]], look)]
    if required and n_shapes:
        pairs[rng.randrange(n_shapes)] = rng.choice(required)
    shapes = []
    for (color, shape), cell in zip(pairs, cells[:n_shapes], strict=True):
        shapes.append(Shape(
            shape=shape, color=color, size=rng.choice(SIZES), row=cell // grid, col=cell % grid,
            dx=round(rng.uniform(-1, 1), 3), dy=round(rng.uniform(-1, 1), 3),
            angle=_rotation_for(rng, shape, config), aspect=_aspect(rng, shape),
            rgb=_shade(rng, color, look, config),
        ))
    texts = []
    for cell in cells[n_shapes:]:
        text = _word(rng) if rng.random() < 0.5 else str(rng.randint(0, 99))
        texts.append(TextMark(text=text, color=_text_color(rng, look), row=cell // grid, col=cell % grid,
                              font=rng.randrange(len(FONT_FILES))))
    clutter = rng.randint(2, 8) if rng.random() < config.clutter_prob else 0
    return Scene(kind="shapes", grid=grid, shapes=tuple(shapes), texts=tuple(texts), clutter=clutter, **look)


def _free_shape(rng: random.Random, pair: tuple[str, str], r: float, look: dict, config: SceneConfig,
                taken: list[tuple[float, float, float]], cells: set[tuple[int, int]],
                area: tuple[float, float, float, float] = (0.0, 0.0, 1.0, 1.0)) -> Shape | None:
    """A shape of radius `r` placed inside `area` (x0, y0, x1, y1), clear of the `taken`
    circles and in a grid cell of its own; None when 60 tries find no room."""
    color, shape = pair
    x0, y0, x1, y1 = area
    margin = 0.02
    for _ in range(60):
        lo_x, hi_x = max(x0, r + margin), min(x1, 1 - r - margin)
        lo_y, hi_y = max(y0, r + margin), min(y1, 1 - r - margin)
        if lo_x > hi_x or lo_y > hi_y:
            return None
        x, y = rng.uniform(lo_x, hi_x), rng.uniform(lo_y, hi_y)
        cell = cell_of(x, y)
        if cell in cells or any(math.dist((x, y), (tx, ty)) < r + tr + 0.03 for tx, ty, tr in taken):
            continue
        taken.append((x, y, r))
        cells.add(cell)
        return Shape(shape=shape, color=color, size=size_of_radius(r), row=cell[0], col=cell[1],
                     x=round(x, 4), y=round(y, 4), r=round(r, 4), angle=_rotation_for(rng, shape, config),
                     aspect=_aspect(rng, shape), rgb=_shade(rng, color, look, config))
    return None


def _fit_size(look: dict, shapes: list[Shape]) -> dict:
    """Grow a picture until its smallest shape has the pixels its outline needs."""
    if not look["size"]:
        return look
    need = max(math.ceil(MIN_RADIUS_PX.get(s.shape, MIN_RADIUS_PX_DEFAULT) / s.r) for s in shapes) if shapes else 0
    return dict(look, size=max(look["size"], need))


def _sample_single(rng: random.Random, config: SceneConfig, rules: PairRules) -> Scene:
    look = _look_for(rng, config, "single", rules, ("plain", "plain", "gradient", "mottled"))
    pair = _pick_pair(rng, _pairs(look, rules), rules, look)
    if pair is None:  # nothing can be seen on this background: fall back to a grid scene
        return _sample_grid(rng, config, rules)
    r = rng.uniform(*SINGLE_RADIUS)
    shape = _free_shape(rng, pair, r, look, config, [], set())
    assert shape is not None  # one shape of radius < 0.45 always fits
    return Scene(kind="shapes", layout="single", shapes=(shape,), **_fit_size(look, [shape]))


def _sample_few(rng: random.Random, config: SceneConfig, rules: PairRules) -> Scene:
    look = _look_for(rng, config, "few", rules, ("plain", "plain", "gradient", "mottled"))
    allowed = _pairs(look, PairRules(forbidden=rules.forbidden))
    n = rng.randint(2, 5)
    picks = [rng.choice(allowed) for _ in range(n)]
    required = [p for p in rules.required if _stands_out(COLORS[p[0]], look)]
    if required:
        picks[0] = rng.choice(required)
    taken: list[tuple[float, float, float]] = []
    cells: set[tuple[int, int]] = set()
    shapes = []
    for pair in picks:
        r = rng.uniform(*FREE_RADIUS[rng.choice(SIZES)])
        s = _free_shape(rng, pair, r, look, config, taken, cells)
        if s is not None:
            shapes.append(s)
    return Scene(kind="shapes", layout="few", shapes=tuple(shapes), **_fit_size(look, shapes))


def _sample_sign(rng: random.Random, config: SceneConfig, rules: PairRules) -> Scene:
    """A written word, on a board or not; below it, sometimes, a shape."""
    look = _look_for(rng, config, "sign", rules, ("plain", "plain", "gradient", "mottled"))
    with_shape = rng.random() < 0.4 or bool(rules.required)  # a held-out split's pictures all show a pair
    sign = ""
    if rng.random() < 0.5:
        boards = [b for b in SIGN_COLORS if all(_distance(BACKGROUNDS[b], t) >= 40 for t in _tints(look))]
        sign = rng.choice(boards) if boards else ""
    color = rng.choice(("black", "blue", "red", "brown", "green")) if sign else _text_color(rng, look)
    x = rng.uniform(0.4, 0.6)
    y = rng.uniform(0.18, 0.3) if with_shape else rng.uniform(0.36, 0.64)
    h = rng.uniform(0.1, 0.2) if with_shape else rng.uniform(0.12, 0.28)
    row, col = cell_of(x, y)
    text = TextMark(text=_word(rng), color=color, row=row, col=col, x=round(x, 4), y=round(y, 4), h=round(h, 4),
                    font=rng.randrange(len(FONT_FILES)), sign=sign)
    shapes: list[Shape] = []
    if with_shape:
        pair = _pick_pair(rng, _pairs(look, rules), rules, look)
        if pair is not None:
            s = _free_shape(rng, pair, rng.uniform(0.1, 0.17), look, config, [], {(row, col)},
                            area=(0.2, 0.67, 0.8, 1.0))
            shapes = [s] if s is not None else []
    return Scene(kind="shapes", layout="sign", shapes=tuple(shapes), texts=(text,), **_fit_size(look, shapes))
