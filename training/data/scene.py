"""The synthetic visual world's scene graphs: what is where, sampled from a seed.

A scene is a 3x3 (configurable) grid; every item (a filled shape or a written word or
number) sits in its own cell, jittered inside it. Putting one item per cell keeps every
spatial relation and location question unambiguous while the images still look varied.
A second kind of scene is a bar chart with one value label per bar.

Same seed, same scene: sampling uses only `random.Random(seed)`. The words come from
`training.data.vocabulary`; `training.data.render` draws a scene (same scene, same bytes).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Literal

from runtime.config_io import from_dict, to_dict
from runtime.errors import ConfigError
from training.data.vocabulary import (
    BACKGROUNDS,
    CHART_BACKGROUNDS,
    COL_NAMES,
    COLORS,
    PATTERNS,
    ROW_NAMES,
    SHAPES,
    SIZES,
    TEXT_COLORS,
    WORDS,
)

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
    background = rng.choice(CHART_BACKGROUNDS)
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
