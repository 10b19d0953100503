"""Every word list of the synthetic world, in one place.

The scene sampler draws from these, the renderer colours with them, the question
families ask with them, and the descriptions and traces answer with them. Widening the
world (another shape, colour shade, background or word) starts here; a new shape also
needs a drawing in `training.data.render`.

The lists are kept small on purpose: the default bundle's tokenizer is trained on the
world's text. Order matters: samplers draw by index from a seeded RNG, so reordering a
list changes every dataset generated from a given seed.
"""

from __future__ import annotations

# Object colours, chosen to stay distinct after downscaling to 64 px.
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
SIZES = ("small", "medium", "large")  # in increasing order
BACKGROUNDS: dict[str, tuple[int, int, int]] = {
    "white": (250, 250, 250),
    "grey": (206, 206, 206),
    "cream": (245, 235, 205),
    "pale blue": (204, 224, 246),
    "pale green": (208, 238, 208),
}
CHART_BACKGROUNDS = ("white", "cream", "pale blue")
PATTERNS = ("plain", "striped", "dotted")
WORDS = ("CAT", "DOG", "SUN", "CAR", "BUS", "HAT", "KEY", "CUP", "PEN", "MAP", "OWL", "FOX")

# Places: a 3x3 grid of regions ("top left" ... "center" ... "bottom right").
ROW_NAMES = ("top", "middle", "bottom")
COL_NAMES = ("left", "center", "right")
ORDINALS = ("first", "second", "third", "fourth", "fifth", "sixth")
DIRECTIONS: dict[str, tuple[int, int]] = {"left": (0, -1), "right": (0, 1), "above": (-1, 0), "below": (1, 0)}
DIRECTION_PHRASES = {"left": "to the left of", "right": "to the right of", "above": "above", "below": "below"}

# What a shape's attributes are called, and the values each can take.
ATTR_WORD = {"color": "colour", "shape": "shape", "size": "size"}
ATTR_VALUES: dict[str, list[str]] = {"color": list(COLORS), "shape": list(SHAPES), "size": list(SIZES)}
COLOUR_SPELLINGS = ("colour", "color")  # questions use both; `<colour>` in a template picks one

# Answers and distractors that are not attributes of a scene item.
SCENE_TYPES = ("a picture of shapes", "a bar chart", "a photograph", "a map", "a table", "a line chart")
PATTERN_CHOICES = (*PATTERNS, "checkered")  # "checkered" never occurs: a safe distractor
PATTERN_PHRASE = {"plain": "plain {bg} background", "striped": "{bg} background with stripes",
                  "dotted": "{bg} background with dots"}
SAME_SIZE = "they are the same size"
YES_NO = ("yes", "no")
