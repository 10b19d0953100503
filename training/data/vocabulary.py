"""Every word list of the synthetic world, in one place.

The scene sampler draws from these, the renderer colours with them, the question
families ask with them, and the descriptions and traces answer with them. Widening the
world (another shape, colour shade, background or word) starts here; a new shape also
needs a drawing in `training.data.render`.

The world uses the words people use: eleven basic colour names, each drawn in several
shades (pure, muted, lighter and darker ones, all still called by that one name), twelve
everyday shape names, pale and dark background tints, everyday written words. Order
matters: samplers draw by index from a seeded RNG, so reordering a list changes every
dataset generated from a given seed.
"""

from __future__ import annotations

# The canonical RGB of each colour name (charts and grid text use it as is).
COLORS: dict[str, tuple[int, int, int]] = {
    "red": (215, 38, 38),
    "orange": (245, 133, 24),
    "yellow": (236, 196, 16),
    "green": (34, 150, 60),
    "blue": (35, 85, 210),
    "purple": (135, 60, 175),
    "brown": (125, 80, 40),
    "black": (25, 25, 25),
    "pink": (238, 110, 170),
    "white": (250, 250, 250),
    "grey": (128, 128, 128),
}
# Shades a shape of that colour may be drawn in: every one is still plainly that colour
# (kept away from the neighbouring names: no red-orange, no blue-purple, no pink-purple).
# The sampler also jitters each channel by a few steps.
SHADES: dict[str, tuple[tuple[int, int, int], ...]] = {
    "red": ((215, 38, 38), (200, 10, 20), (235, 55, 50), (170, 25, 35), (190, 70, 70)),
    "orange": ((245, 133, 24), (255, 150, 10), (232, 115, 35), (225, 145, 80)),
    "yellow": ((236, 196, 16), (250, 220, 10), (240, 210, 90), (222, 190, 45)),
    "green": ((34, 150, 60), (10, 175, 20), (70, 135, 70), (20, 105, 40), (100, 185, 80)),
    "blue": ((35, 85, 210), (10, 60, 235), (70, 105, 175), (30, 45, 140), (80, 140, 235)),
    "purple": ((135, 60, 175), (115, 35, 160), (140, 95, 170), (95, 40, 125), (165, 85, 205)),
    "brown": ((125, 80, 40), (145, 95, 50), (105, 65, 40), (150, 105, 70), (95, 55, 25)),
    "black": ((25, 25, 25), (0, 0, 0), (45, 45, 50)),
    "pink": ((238, 110, 170), (255, 105, 180), (230, 150, 190), (215, 90, 150)),
    "white": ((250, 250, 250), (238, 238, 232), (255, 255, 255)),
    "grey": ((128, 128, 128), (150, 150, 150), (105, 105, 110), (165, 165, 160)),
}
# Text is only written in colours that read well on the pale backgrounds (dark ones get white).
TEXT_COLORS = ("black", "red", "blue", "green", "purple", "brown")
SHAPES = ("circle", "square", "triangle", "star", "hexagon", "diamond", "cross",
          "rectangle", "pentagon", "ellipse", "heart", "arrow")
SIZES = ("small", "medium", "large")  # in increasing order
# Background names -> their RGB. The pale ones are where text and every colour but white
# can go; on the dark ones, shapes must stand out (see `scene.contrast_ok`).
BACKGROUNDS: dict[str, tuple[int, int, int]] = {
    "white": (250, 250, 250),
    "grey": (206, 206, 206),
    "cream": (245, 235, 205),
    "pale blue": (204, 224, 246),
    "pale green": (208, 238, 208),
    "pale pink": (247, 215, 228),
    "pale yellow": (249, 243, 196),
    "pale purple": (228, 216, 244),
    "pale orange": (251, 224, 196),
    "dark blue": (28, 38, 82),
    "dark green": (26, 64, 40),
    "dark grey": (58, 58, 62),
}
DARK_BACKGROUNDS = ("dark blue", "dark green", "dark grey")
CHART_BACKGROUNDS = ("white", "cream", "pale blue")
# striped / dotted: lines or dots a shade darker; gradient: the tint fades to a lighter or
# darker version of itself; mottled: soft blotches of the tint.
PATTERNS = ("plain", "striped", "dotted", "gradient", "mottled")
# Everyday words (lower case; a picture may write them in lower, Capitalised or UPPER case).
# No colour, shape, position or yes/no words: an answer must not read as another kind.
WORDS = (
    "cat", "dog", "sun", "car", "bus", "hat", "key", "cup", "pen", "map", "owl", "fox",
    "bird", "fish", "tree", "book", "door", "home", "milk", "cake", "ball", "boat", "bike", "moon",
    "rain", "snow", "wind", "fire", "lamp", "desk", "shop", "park", "road", "ship", "train", "plane",
    "apple", "bread", "water", "house", "chair", "table", "phone", "clock", "bell", "king", "frog", "bear",
    "lion", "duck", "goat", "horse", "mouse", "cow", "pig", "egg", "tea", "jam", "bag", "bed",
    "sock", "shoe", "coat", "song", "game", "stop", "open", "exit", "sale", "help", "hello", "gift",
    "farm", "lake", "hill", "leaf", "rose", "nut", "corn", "rice", "soup", "salt", "pear", "plum",
    "bean", "seed", "nest", "wolf", "deer", "crab", "bee", "ant", "jar", "mug", "pot", "pan",
    "fork", "rope", "tent", "flag", "drum", "piano", "radio", "robot", "candy", "honey", "pizza", "lemon",
    "grape", "melon", "soap", "sand", "rock", "wave", "beach", "city", "town", "zoo", "bank", "cafe",
    "menu", "taxi", "van", "truck", "boot", "glove", "scarf", "belt", "music", "party", "happy", "smile",
    "love", "peace", "dream", "night", "day", "sky", "cloud", "storm", "baby", "girl", "boy", "friend",
)
# Signs (a word on a board): light boards with dark letters.
SIGN_COLORS = ("white", "pale yellow", "cream", "pale blue")
# Font files tried for written words (any that is missing falls back to Pillow's own font).
FONT_FILES = (
    "",  # Pillow's built-in font
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf",
    "/usr/share/fonts/truetype/dejavu/DejaVuSerif.ttf",
    "/usr/share/fonts/truetype/dejavu/DejaVuSansMono-Bold.ttf",
    "/usr/share/fonts/truetype/dejavu/DejaVuSansCondensed-Bold.ttf",
)

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
# Other words for the same thing, accepted as open answers and used in questions.
COLOR_ALIASES: dict[str, tuple[str, ...]] = {"grey": ("gray",)}
SHAPE_ALIASES: dict[str, tuple[str, ...]] = {"ellipse": ("oval",), "diamond": ("rhombus",)}
# Names a strict reader could apply to both (a square is a rectangle, a circle an ellipse):
# a question never asks about one of them as a wrong answer for the other.
CONFUSABLE_SHAPES = frozenset({("square", "rectangle"), ("rectangle", "square"), ("circle", "ellipse"),
                               ("ellipse", "circle"), ("diamond", "square"), ("square", "diamond")})
# What a question may call a shape whose kind it does not name.
SHAPE_NOUNS = ("shape", "object", "thing", "figure")

# Answers and distractors that are not attributes of a scene item.
SCENE_TYPES = ("a picture of shapes", "a bar chart", "a photograph", "a map", "a table", "a line chart")
PATTERN_CHOICES = (*PATTERNS, "checkered")  # "checkered" never occurs: a safe distractor
PATTERN_PHRASE = {"plain": "plain {bg} background", "striped": "{bg} background with stripes",
                  "dotted": "{bg} background with dots", "gradient": "{bg} background that fades in tone",
                  "mottled": "mottled {bg} background"}
SAME_SIZE = "they are the same size"
YES_NO = ("yes", "no")
POSITION_ANSWERS = ("left", "right", "top", "bottom", "above", "below")
