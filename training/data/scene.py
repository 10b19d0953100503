"""The synthetic visual world: scene graphs and a deterministic Pillow renderer.

A scene is a 3x3 (configurable) grid; every item (a filled shape or a written word or
number) sits in its own cell, jittered inside it. Putting one item per cell keeps every
spatial relation and location question unambiguous while the images still look varied.
A second kind of scene is a bar chart with one value label per bar.

Same seed, same scene, same bytes: sampling uses only `random.Random(seed)` and the
renderer draws only from the scene graph (clutter has its own seed inside the graph).
"""

from __future__ import annotations

import io
import math
import random
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Literal

from PIL import Image, ImageDraw, ImageFont

from runtime.config_io import from_dict, to_dict
from runtime.errors import ConfigError

# The world's vocabulary is kept small on purpose: the default bundle's tokenizer is
# trained on it. Object colours are chosen to stay distinct after downscaling to 64 px.
COLORS: dict[str, tuple[int, int, int]] = {
    "red": (215, 38, 38),
    "orange": (245, 133, 24),
    "yellow": (236, 196, 16),
    "green": (34, 150, 60),
    "blue": (35, 85, 210),
    "purple": (135, 60, 175),
    "brown": (125, 80, 40),
    "black": (25, 25, 25),
}
# Text is only written in colours that read well on every background.
TEXT_COLORS = ("black", "red", "blue", "green", "purple", "brown")
SHAPES = ("circle", "square", "triangle", "star", "hexagon", "diamond", "cross")
SIZES = ("small", "medium", "large")
# Radius as a fraction of half a cell: small and large differ by 2x.
SIZE_SCALE = {"small": 0.45, "medium": 0.66, "large": 0.9}
BACKGROUNDS: dict[str, tuple[int, int, int]] = {
    "white": (250, 250, 250),
    "grey": (206, 206, 206),
    "cream": (245, 235, 205),
    "pale blue": (204, 224, 246),
    "pale green": (208, 238, 208),
}
PATTERNS = ("plain", "striped", "dotted")
WORDS = ("CAT", "DOG", "SUN", "CAR", "BUS", "HAT", "KEY", "CUP", "PEN", "MAP", "OWL", "FOX")
ROW_NAMES = ("top", "middle", "bottom")
COL_NAMES = ("left", "center", "right")
CLUTTER_RGB = (150, 150, 150)

SceneKind = Literal["shapes", "chart"]


@dataclass(frozen=True)
class Shape:
    shape: str
    color: str
    size: str
    row: int
    col: int
    dx: float = 0.0  # jitter inside the cell, in [-1, 1] of the free room
    dy: float = 0.0


@dataclass(frozen=True)
class TextMark:
    text: str  # an upper-case word from WORDS or a number 0..99 written as digits
    color: str
    row: int
    col: int

    @property
    def is_number(self) -> bool:
        return self.text.isdigit()


@dataclass(frozen=True)
class Bar:
    color: str
    value: int  # 1..9, distinct within a chart


@dataclass(frozen=True)
class Scene:
    kind: SceneKind
    background: str
    pattern: str
    grid: int = 3
    shapes: tuple[Shape, ...] = ()
    texts: tuple[TextMark, ...] = ()
    bars: tuple[Bar, ...] = ()
    clutter: int = 0  # number of grey specks and strokes under the objects
    clutter_seed: int = 0

    def to_dict(self) -> dict:
        return to_dict(self)

    @staticmethod
    def from_dict(data: dict) -> Scene:
        try:
            scene = _fast_scene(data)
        except (TypeError, ValueError):
            scene = from_dict(Scene, data)  # slower, but names the offending field
        validate_scene(scene)
        return scene


# Scenes are parsed by the thousand (datasets, the exact teacher): a strict fast path with
# the same rules as `config_io.from_dict` (no unknown keys, exact types), which is still
# used to word the error when this one refuses.
_FIELD_TYPES: dict[type, dict[str, tuple[type, ...]]] = {
    Shape: {"shape": (str,), "color": (str,), "size": (str,), "row": (int,), "col": (int,),
            "dx": (float, int), "dy": (float, int)},
    TextMark: {"text": (str,), "color": (str,), "row": (int,), "col": (int,)},
    Bar: {"color": (str,), "value": (int,)},
}
_SCENE_SCALARS = {"kind": (str,), "background": (str,), "pattern": (str,), "grid": (int,), "clutter": (int,),
                  "clutter_seed": (int,)}
_SCENE_LISTS = {"shapes": Shape, "texts": TextMark, "bars": Bar}


def _strict(cls: type, data: object, types: dict[str, tuple[type, ...]]):
    if not isinstance(data, dict) or not set(data) <= set(types):
        raise TypeError(cls.__name__)
    for key, value in data.items():
        if isinstance(value, bool) or not isinstance(value, types[key]):
            raise TypeError(key)
    return cls(**{k: float(v) if float in types[k] else v for k, v in data.items()})


def _fast_scene(data: object) -> Scene:
    if not isinstance(data, dict) or not set(data) <= set(_SCENE_SCALARS) | set(_SCENE_LISTS):
        raise TypeError("scene")
    kw = {}
    for key, value in data.items():
        if key in _SCENE_LISTS:
            if not isinstance(value, (list, tuple)):
                raise TypeError(key)
            cls = _SCENE_LISTS[key]
            kw[key] = tuple(_strict(cls, v, _FIELD_TYPES[cls]) for v in value)
        else:
            if isinstance(value, bool) or not isinstance(value, _SCENE_SCALARS[key]):
                raise TypeError(key)
            kw[key] = value
    if data.get("kind") not in ("shapes", "chart"):
        raise ValueError("kind")
    return Scene(**kw)


@dataclass(frozen=True)
class SceneConfig:
    """How scenes are sampled. 64-128 px suits CPU training, 384 px the real sizes."""

    image_size: int = 128
    min_objects: int = 4  # items (shapes + written marks) in a shapes scene
    max_objects: int = 8
    max_texts: int = 2
    text_prob: float = 0.4  # chance that a shapes scene has written marks
    chart_prob: float = 0.15  # chance that a scene is a bar chart instead
    clutter_prob: float = 0.5
    min_bars: int = 3
    max_bars: int = 5
    grid: int = 3
    supersample: int = 2  # draw at 2x and box-downsample: anti-aliasing at low cost

    def __post_init__(self) -> None:
        if self.image_size < 32 or self.image_size > 2048:
            raise ConfigError(f"image_size must be in 32..2048, got {self.image_size}")
        if self.grid < 2 or self.grid > 6:
            raise ConfigError(f"grid must be in 2..6, got {self.grid}")
        if not 1 <= self.min_objects <= self.max_objects <= self.grid * self.grid:
            raise ConfigError(
                f"need 1 <= min_objects <= max_objects <= {self.grid * self.grid} (grid cells), "
                f"got {self.min_objects}..{self.max_objects}"
            )
        if not 2 <= self.min_bars <= self.max_bars <= 6:
            raise ConfigError(f"need 2 <= min_bars <= max_bars <= 6, got {self.min_bars}..{self.max_bars}")
        if self.max_texts < 0:
            raise ConfigError("max_texts must be >= 0")
        if self.supersample not in (1, 2, 3, 4):
            raise ConfigError(f"supersample must be 1..4, got {self.supersample}")
        for name in ("text_prob", "chart_prob", "clutter_prob"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"{name} must be in [0, 1], got {value}")


# ---------------------------------------------------------------------------------------
# Names of places


def region_name(row: int, col: int, grid: int = 3) -> str:
    """'top left', 'center', 'bottom right'... (grids other than 3 map onto thirds)."""
    r = _third(row, grid)
    c = _third(col, grid)
    if r == 1 and c == 1:
        return "center"
    if r == 1:
        return f"middle {COL_NAMES[c]}"
    return f"{ROW_NAMES[r]} {COL_NAMES[c]}"


def _third(i: int, grid: int) -> int:
    return min(2, (3 * i) // grid) if grid != 3 else i


REGIONS = tuple(region_name(r, c) for r in range(3) for c in range(3))


# ---------------------------------------------------------------------------------------
# Sampling


@dataclass(frozen=True)
class PairRules:
    """Colour-shape pairs a scene may not use, and one it must use (held-out splits)."""

    forbidden: frozenset[tuple[str, str]] = field(default_factory=frozenset)
    required: tuple[tuple[str, str], ...] = ()  # at least one of these must appear


def sample_scene(seed: int, config: SceneConfig = SceneConfig(), rules: PairRules = PairRules()) -> Scene:
    rng = random.Random(seed)
    if rng.random() < config.chart_prob:  # charts have no colour-shape pairs: any split may have them
        return _sample_chart(rng, config)
    return _sample_shapes(rng, config, rules)


def _sample_chart(rng: random.Random, config: SceneConfig) -> Scene:
    n = rng.randint(config.min_bars, config.max_bars)
    colors = rng.sample(list(COLORS), n)
    values = rng.sample(range(1, 10), n)
    background = rng.choice(("white", "cream", "pale blue"))
    return Scene(
        kind="chart", background=background, pattern="plain", grid=config.grid,
        bars=tuple(Bar(c, v) for c, v in zip(colors, values, strict=True)),
    )


def _sample_shapes(rng: random.Random, config: SceneConfig, rules: PairRules) -> Scene:
    grid = config.grid
    n_items = rng.randint(config.min_objects, config.max_objects)
    n_texts = 0
    if config.max_texts and rng.random() < config.text_prob:
        n_texts = rng.randint(1, min(config.max_texts, n_items - 1)) if n_items > 1 else 0
    n_shapes = n_items - n_texts
    cells = rng.sample(range(grid * grid), n_items)
    allowed = [(c, s) for c in COLORS for s in SHAPES if (c, s) not in rules.forbidden]
    pairs = [rng.choice(allowed) for _ in range(n_shapes)]
    if rules.required and n_shapes:
        pairs[rng.randrange(n_shapes)] = rng.choice(rules.required)
    shapes = []
    for (color, shape), cell in zip(pairs, cells[:n_shapes], strict=True):
        shapes.append(Shape(
            shape=shape, color=color, size=rng.choice(SIZES), row=cell // grid, col=cell % grid,
            dx=round(rng.uniform(-1, 1), 3), dy=round(rng.uniform(-1, 1), 3),
        ))
    texts = []
    for cell in cells[n_shapes:]:
        text = rng.choice(WORDS) if rng.random() < 0.5 else str(rng.randint(0, 99))
        texts.append(TextMark(text=text, color=rng.choice(TEXT_COLORS), row=cell // grid, col=cell % grid))
    clutter = rng.randint(2, 8) if rng.random() < config.clutter_prob else 0
    return Scene(
        kind="shapes",
        background=rng.choice(list(BACKGROUNDS)),
        pattern=rng.choice(PATTERNS),
        grid=grid,
        shapes=tuple(shapes),
        texts=tuple(texts),
        clutter=clutter,
        clutter_seed=rng.randrange(2**31),
    )


def validate_scene(scene: Scene) -> None:
    """Reject graphs the renderer or the question generators cannot trust."""
    if scene.background not in BACKGROUNDS:
        raise ConfigError(f"unknown background {scene.background!r}")
    if scene.pattern not in PATTERNS:
        raise ConfigError(f"unknown pattern {scene.pattern!r}")
    used: set[tuple[int, int]] = set()
    for item in (*scene.shapes, *scene.texts):
        if not (0 <= item.row < scene.grid and 0 <= item.col < scene.grid):
            raise ConfigError(f"item outside the {scene.grid}x{scene.grid} grid: {item}")
        if (item.row, item.col) in used:
            raise ConfigError(f"two items share the cell {(item.row, item.col)}")
        used.add((item.row, item.col))
    for s in scene.shapes:
        if s.shape not in SHAPES or s.color not in COLORS or s.size not in SIZES:
            raise ConfigError(f"unknown shape, colour or size in {s}")
    for t in scene.texts:
        if t.color not in COLORS or not t.text or not (t.text.isdigit() or t.text.isalpha()):
            raise ConfigError(f"bad text mark {t}")
    values = [b.value for b in scene.bars]
    if len(set(values)) != len(values) or len({b.color for b in scene.bars}) != len(values):
        raise ConfigError("bar colours and values must be distinct")
    if scene.kind == "chart" and (scene.shapes or scene.texts or len(scene.bars) < 2):
        raise ConfigError("a chart scene has bars only, at least two")
    if scene.kind == "shapes" and scene.bars:
        raise ConfigError("a shapes scene has no bars")


# ---------------------------------------------------------------------------------------
# Rendering


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


def shape_radius(s: Shape, image_size: int, grid: int = 3) -> float:
    return image_size / grid / 2 * SIZE_SCALE[s.size]


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

