"""The synthetic visual world's scene graphs: what is where (the data model).

A grid scene is a 3x3 (configurable) grid; every item (a filled shape or a written word or
number) sits in its own cell, jittered inside it. Putting one item per cell keeps every
spatial relation and location question unambiguous while the images still look varied.
Everyday layouts (one large shape, a few shapes placed freely, a written word) give each
shape an exact centre and radius, and still name the cell its centre falls in, so the
descriptions and questions speak of places the same way. A bar chart has one value label
per bar.

`training.data.sampling` draws scenes from a seed (same seed, same scene);
`training.data.render` draws a scene (same scene, same bytes). The words come from
`training.data.vocabulary`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from runtime.config_io import from_dict, to_dict
from runtime.errors import ConfigError
from training.data.vocabulary import (
    BACKGROUNDS,
    COL_NAMES,
    COLORS,
    FONT_FILES,
    PATTERNS,
    ROW_NAMES,
    SHAPES,
    SIGN_COLORS,
    SIZES,
)

SceneKind = Literal["shapes", "chart"]


@dataclass(frozen=True)
class Shape:
    shape: str
    color: str
    size: str
    row: int  # the grid cell its centre is in (free layouts too: descriptions name places by it)
    col: int
    dx: float = 0.0  # grid layout: jitter inside the cell, in [-1, 1] of the free room
    dy: float = 0.0
    x: float = 0.0  # free layouts: centre and radius as fractions of the image side (r = 0: grid)
    y: float = 0.0
    r: float = 0.0
    angle: float = 0.0  # rotation in degrees (arrows: the way they point, 0 = right, 90 = up)
    aspect: float = 0.0  # rectangles and ellipses: height / width (0: the shape's default)
    rgb: str = ""  # the shade it is drawn in, "#rrggbb" ("" = the colour's canonical RGB)


@dataclass(frozen=True)
class TextMark:
    text: str  # a word from WORDS as written (any case) or a number 0..99 written as digits
    color: str
    row: int
    col: int
    x: float = 0.0  # free layouts: centre and letter height as fractions of the image (h = 0: grid)
    y: float = 0.0
    h: float = 0.0
    font: int = 0  # index into vocabulary.FONT_FILES
    sign: str = ""  # the board it is written on (a SIGN_COLORS name), "" for none

    @property
    def is_number(self) -> bool:
        return self.text.isdigit()

    @property
    def word(self) -> str:
        """What it says, as an answer: lower case."""
        return self.text.lower()


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
    clutter_seed: int = 0  # also seeds the background texture and the pixel noise
    layout: str = "grid"  # grid | single (one shape) | few (2-5 placed freely) | sign (a written word)
    size: int = 0  # the picture's side in px (0: the dataset's image_size)
    bg_rgb: str = ""  # the background's exact tint "#rrggbb" ("" = the name's RGB)
    bg_rgb2: str = ""  # gradient: the tint it fades to
    noise: float = 0.0  # per-pixel noise (standard deviation, 0-255 scale)
    jpeg: int = 0  # saved as JPEG at this quality (0: PNG)
    aa: int = 0  # supersampling factor (1: hard edges; 0: the dataset's)
    variety: float = 0.0  # how far outlines stray from the standard drawing, 0..1 (`render._outline`)

    def to_dict(self) -> dict:
        data = to_dict(self)
        if not self.variety:  # scenes without it read and hash as before the field existed
            del data["variety"]
        return data

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
_F = (float, int)
_FIELD_TYPES: dict[type, dict[str, tuple[type, ...]]] = {
    Shape: {"shape": (str,), "color": (str,), "size": (str,), "row": (int,), "col": (int,),
            "dx": _F, "dy": _F, "x": _F, "y": _F, "r": _F, "angle": _F, "aspect": _F, "rgb": (str,)},
    TextMark: {"text": (str,), "color": (str,), "row": (int,), "col": (int,), "x": _F, "y": _F, "h": _F,
               "font": (int,), "sign": (str,)},
    Bar: {"color": (str,), "value": (int,)},
}
_SCENE_SCALARS = {"kind": (str,), "background": (str,), "pattern": (str,), "grid": (int,), "clutter": (int,),
                  "clutter_seed": (int,), "layout": (str,), "size": (int,), "bg_rgb": (str,), "bg_rgb2": (str,),
                  "noise": _F, "jpeg": (int,), "aa": (int,), "variety": _F}
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
            kw[key] = float(value) if float in _SCENE_SCALARS[key] else value
    if data.get("kind") not in ("shapes", "chart"):
        raise ValueError("kind")
    return Scene(**kw)


LAYOUTS = ("grid", "single", "few", "sign")


@dataclass(frozen=True)
class SceneConfig:
    """How scenes are sampled. 64-128 px suits CPU training, 384 px the real sizes.

    Beside the grid scenes (4-8 items, one per cell) and bar charts, a share `free_prob` of
    the pictures are everyday layouts: one shape drawn large anywhere (`single`), 2-5 shapes
    placed freely at varied sizes (`few`), or a written word, on a board or not, maybe above
    a shape (`sign`). Every picture may be drawn at its own size (`min_size`..`max_size`,
    log-uniform; 0 = always `image_size`), in shades of its colours, slightly rotated, on a
    plain, striped, dotted, gradient or mottled background, with hard or smoothed edges,
    pixel noise and JPEG artefacts.
    """

    image_size: int = 128
    min_objects: int = 4  # items (shapes + written marks) in a grid scene
    max_objects: int = 8
    max_texts: int = 2
    text_prob: float = 0.4  # chance that a grid scene has written marks
    chart_prob: float = 0.15  # chance that a scene is a bar chart instead
    clutter_prob: float = 0.5
    min_bars: int = 3
    max_bars: int = 5
    grid: int = 3
    supersample: int = 2  # draw at 2x and box-downsample: anti-aliasing at low cost
    free_prob: float = 0.45  # share of the non-chart pictures with an everyday layout
    single_weight: float = 0.4  # how those split between the three everyday layouts
    few_weight: float = 0.4
    sign_weight: float = 0.2
    min_size: int = 0  # per-picture size range in px (0: image_size for every picture)
    max_size: int = 0
    shade_prob: float = 0.85  # a shape drawn in one of its colour's shades (else the canonical RGB)
    max_rotation: float = 12.0  # degrees
    # Degrees for the shapes whose name does not depend on how they are turned (triangle,
    # pentagon, hexagon, star, heart, cross); 0: max_rotation. Squares, diamonds, rectangles
    # and ellipses keep max_rotation: turned 45 degrees a square is a diamond.
    max_turn: float = 0.0
    # How far each outline's proportions stray from the standard drawing (a star's inner
    # radius, a cross's arm width, an arrow's head...), 0..1; every one still plainly that shape.
    shape_variety: float = 0.0
    dark_prob: float = 0.15  # a dark background tint
    jpeg_prob: float = 0.3
    noise_prob: float = 0.3
    hard_edge_prob: float = 0.3  # drawn without anti-aliasing

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
        for name in ("text_prob", "chart_prob", "clutter_prob", "free_prob", "shade_prob", "dark_prob",
                     "jpeg_prob", "noise_prob", "hard_edge_prob"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"{name} must be in [0, 1], got {value}")
        weights = (self.single_weight, self.few_weight, self.sign_weight)
        if min(weights) < 0 or (self.free_prob > 0 and sum(weights) <= 0):
            raise ConfigError("layout weights must be >= 0 and not all 0")
        if (self.min_size == 0) != (self.max_size == 0) or (
                self.min_size and not 32 <= self.min_size <= self.max_size <= 2048):
            raise ConfigError(f"need 32 <= min_size <= max_size <= 2048 (or both 0), "
                              f"got {self.min_size}..{self.max_size}")
        if not 0.0 <= self.max_rotation <= 45.0:
            raise ConfigError(f"max_rotation must be in [0, 45] degrees, got {self.max_rotation}")
        if not 0.0 <= self.max_turn <= 180.0:
            raise ConfigError(f"max_turn must be in [0, 180] degrees, got {self.max_turn}")
        if not 0.0 <= self.shape_variety <= 1.0:
            raise ConfigError(f"shape_variety must be in [0, 1], got {self.shape_variety}")


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
    _validate_look(scene)
    values = [b.value for b in scene.bars]
    if len(set(values)) != len(values) or len({b.color for b in scene.bars}) != len(values):
        raise ConfigError("bar colours and values must be distinct")
    if scene.kind == "chart" and (scene.shapes or scene.texts or len(scene.bars) < 2):
        raise ConfigError("a chart scene has bars only, at least two")
    if scene.kind == "shapes" and scene.bars:
        raise ConfigError("a shapes scene has no bars")


_HEX = re.compile(r"^#[0-9a-f]{6}$")


def _validate_look(scene: Scene) -> None:
    """The everyday layouts' geometry and the rendering settings."""
    if scene.layout not in LAYOUTS:
        raise ConfigError(f"unknown layout {scene.layout!r}")
    free = scene.layout != "grid"
    if free and scene.grid != 3:
        raise ConfigError("everyday layouts use the 3x3 grid for place names")
    for s in scene.shapes:
        if free != (s.r > 0):
            raise ConfigError(f"a {scene.layout} scene's shapes {'need' if free else 'have no'} a radius: {s}")
        if free and not (0 < s.r < 0.5 and 0 <= s.x <= 1 and 0 <= s.y <= 1 and cell_of(s.x, s.y) == (s.row, s.col)):
            raise ConfigError(f"shape centre, radius or cell out of place: {s}")
        if s.rgb and not _HEX.match(s.rgb):
            raise ConfigError(f"bad shade {s.rgb!r}")
    for t in scene.texts:
        if free != (t.h > 0) or not 0 <= t.font < len(FONT_FILES) or (t.sign and t.sign not in SIGN_COLORS):
            raise ConfigError(f"bad text mark {t}")
        if free and cell_of(t.x, t.y) != (t.row, t.col):
            raise ConfigError(f"text centre and cell disagree: {t}")
    for value in (scene.bg_rgb, scene.bg_rgb2):
        if value and not _HEX.match(value):
            raise ConfigError(f"bad background tint {value!r}")
    if scene.size and not 16 <= scene.size <= 2048:
        raise ConfigError(f"picture size must be in 16..2048 px, got {scene.size}")
    if not (0 <= scene.jpeg <= 100 and 0 <= scene.aa <= 4 and 0 <= scene.noise <= 64):
        raise ConfigError(f"bad jpeg / aa / noise settings: {scene.jpeg}, {scene.aa}, {scene.noise}")


def cell_of(x: float, y: float, grid: int = 3) -> tuple[int, int]:
    """(row, col) of the grid cell a point (fractions of the image side) falls in."""
    return min(grid - 1, int(y * grid)), min(grid - 1, int(x * grid))


# Radius of a grid shape as a fraction of half a cell: small and large differ by 2x.
SIZE_SCALE = {"small": 0.45, "medium": 0.66, "large": 0.9}


def centre(s: Shape, grid: int = 3) -> tuple[float, float]:
    """A shape's centre as fractions of the image side (the renderer puts it there)."""
    if s.r > 0:
        return s.x, s.y
    cell = 1.0 / grid
    r = cell / 2 * SIZE_SCALE[s.size]
    room = max(0.0, cell / 2 - r - cell * 0.04)
    return (s.col + 0.5) * cell + s.dx * room, (s.row + 0.5) * cell + s.dy * room


def size_of_radius(r: float) -> str:
    """The size word of a freely placed shape (grid shapes: radius 0.075 / 0.11 / 0.15)."""
    return "small" if r < 0.09 else "medium" if r < 0.14 else "large"


def hex_rgb(value: str) -> tuple[int, int, int]:
    return int(value[1:3], 16), int(value[3:5], 16), int(value[5:7], 16)


def rgb_hex(rgb: tuple[int, int, int]) -> str:
    return "#" + "".join(f"{max(0, min(255, int(v))):02x}" for v in rgb)


def shape_rgb(s: Shape) -> tuple[int, int, int]:
    return hex_rgb(s.rgb) if s.rgb else COLORS[s.color]


def background_rgbs(scene: Scene) -> list[tuple[int, int, int]]:
    """The background's tints (two for a gradient)."""
    out = [hex_rgb(scene.bg_rgb) if scene.bg_rgb else BACKGROUNDS[scene.background]]
    if scene.bg_rgb2:
        out.append(hex_rgb(scene.bg_rgb2))
    return out
