"""How the held-out world says things: question templates, names, plurals, articles, casing.

Written apart from the training world's templates: plain, often lower-case wording without a
question mark ("is there a red circle", "what is the blue shape"), negations asked in a
form whose yes/no is fixed by logic ("is it true that there is no star"), questions that
refer to a shape by colour or to a colour by shape. Colours are asked about shapes only
("is there a green shape", never "is there anything green": the background is tinted).
"is there not a circle" is avoided on purpose: English speakers answer it both ways
("yes, there is" / "yes, there is not").
"""

from __future__ import annotations

import numpy as np

NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")
_IRREGULAR_PLURALS = {"cross": "crosses", "ellipse": "ellipses"}

EXISTS = (
    "is there {a} {d}", "is there {a} {d} here", "is there {a} {d} in this picture", "does the image contain {a} {d}",
    "does this picture have {a} {d} in it", "do you see {a} {d}", "can {a} {d} be seen", "is {a} {d} visible",
    "does the image show {a} {d}", "any {ds} in the picture",
)
NEGATION = (
    "is it true that there is no {d}", "is it true that the image has no {d}",
    "is it true that there is not {a} {d} in the picture", "is it correct that the picture does not contain {a} {d}",
    "is it true that no {d} can be seen", "true or not: there is no {d} in the image. answer yes or no",
)
VERIFY_COLOR = ("is the {ref} {c}", "is the colour of the {ref} {c}", "is the {ref} coloured {c}",
                "would you say the {ref} is {c}", "is the {ref} a {c} one")
VERIFY_SHAPE_SINGLE = ("is this a {s}", "is the shape a {s}", "is this shape a {s}", "is it a {s}",
                       "does the picture show a {s}")
VERIFY_SHAPE = ("is the {ref} a {s}", "is the {ref} shaped like a {s}", "would you call the {ref} a {s}")
COLOR = ("what color is the {ref}", "what colour is the {ref}", "which color is the {ref}", "the {ref} is what color",
         "what is the colour of the {ref}", "tell me the color of the {ref}.", "name the colour of the {ref}.",
         "color of the {ref}")
COLOR_SINGLE = ("what color is this shape", "what colour is it", "what color is the thing in the picture",
                "which colour is the shape", "what color is shown")
SHAPE = ("what is the {c} shape", "what shape is the {c} one", "which shape is {c}", "what kind of shape is the {c} thing",
         "name the {c} shape.", "the {c} shape is what shape", "what is the {c} thing")
SHAPE_SINGLE = ("what shape is this", "what is this shape", "what shape is shown", "what shape do you see",
                "name the shape.", "what kind of shape is in the picture", "what is the shape")
COUNT = ("how many {ds} are there", "how many {ds} do you see", "how many {ds} are in this picture", "count the {ds}.",
         "what is the number of {ds} here", "number of {ds} in the image", "how many {ds} can be seen")
SIDE = {
    "horizontal": ("is the {ref} on the left or on the right", "is the {ref} on the left or the right side",
                   "which side is the {ref} on, left or right", "is the {ref} in the left half or the right half"),
    "vertical": ("is the {ref} at the top or at the bottom", "is the {ref} near the top or the bottom",
                 "is the {ref} in the top half or the bottom half"),
}
RELATIVE = {
    "horizontal": ("is the {a} left or right of the {b}", "is the {a} to the left or to the right of the {b}",
                   "relative to the {b}, is the {a} on the left or the right"),
    "vertical": ("is the {a} above or below the {b}", "relative to the {b}, is the {a} above or below it",
                 "is the {a} higher or lower than the {b}, above or below"),
}
TEXT = ("what word is written", "what is written in the image", "what word do you see", "read the word.",
        "which word is shown", "what does the text say")
TEXT_SIGN = ("what does the sign say", "what word is on the sign")


def article(word: str) -> str:
    return "an" if word[:1] in "aeiou" else "a"


def plural(shape: str) -> str:
    return _IRREGULAR_PLURALS.get(shape, shape + "s")


def phrase(desc: dict[str, str], *, many: bool = False) -> str:
    """{"color": "red", "shape": "circle"} -> "red circle"; colour only -> "red shape"."""
    noun = desc.get("shape", "shape")
    noun = plural(noun) if many else noun
    return f"{desc['color']} {noun}" if "color" in desc else noun


def say(rng: np.random.Generator, templates: tuple[str, ...], **kw: str) -> str:
    """One template filled in, then cased the way people type: mostly lower case without a
    question mark, sometimes with one, sometimes capitalised. Templates ending in "." are
    requests ("count the stars.") and never get a question mark."""
    text = str(templates[int(rng.integers(len(templates)))]).format(**kw)
    request = text.endswith(".")
    text = text.rstrip(".")
    style = float(rng.random())
    if style < 0.5:
        return text
    if style < 0.75:
        return text if request else text + "?"
    return text[0].upper() + text[1:] + ("." if request else "?")
