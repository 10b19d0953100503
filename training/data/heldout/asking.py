"""Questions about a held-out picture, each with its gold answer in the form it asks for.

Eight question types (the item's `category`): `exists`, `negation` and `verify` are answered
yes or no; `color` with a colour word, `shape` with a shape word, `count` with a number,
`position` with a position word (left, right, top, bottom, above, below), `text` with the
written word. An asker returns None when the picture cannot support an unambiguous question
of its type (the caller draws another picture): a referring expression must pick out
exactly one shape, a shape name is never used while a shape it could be mistaken for
(square / rectangle, circle / ellipse) is in the picture, and positions are only asked
when the shape is clearly in one half, or clearly apart from the other shape.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from training.data.heldout import wording as w
from training.data.heldout.geometry import CONFUSABLE, SHAPE_ALIASES, SHAPE_NAMES
from training.data.heldout.palette import COLOR_ALIASES, COLOR_NAMES
from training.data.heldout.picture import REACH, WORDS, Figure, Picture

CATEGORIES = ("exists", "negation", "verify", "color", "shape", "count", "position", "text")
FORMS = {"exists": "yesno", "negation": "yesno", "verify": "yesno", "color": "color", "shape": "shape",
         "count": "number", "position": "position", "text": "text"}
MAX_COUNT_OPTION = 6


@dataclass(frozen=True)
class Asked:
    category: str
    question: str
    answer: str
    aliases: tuple[str, ...] = ()
    distractors: tuple[str, ...] = ()  # answers checked to be wrong (multiple-choice options)
    concepts: tuple[str, ...] = ()  # the colour and shape words the item rests on

    @property
    def form(self) -> str:
        return FORMS[self.category]


def _pick(rng: np.random.Generator, seq):
    return seq[int(rng.integers(len(seq)))]


def _yes_no(flag: bool) -> str:
    return "yes" if flag else "no"


def matches(fig: Figure, desc: dict[str, str]) -> bool:
    return all(getattr(fig, k) == v for k, v in desc.items())


def select(pic: Picture, desc: dict[str, str]) -> list[Figure]:
    return [f for f in pic.figures if matches(f, desc)]


def safe(pic: Picture, desc: dict[str, str]) -> bool:
    """A description may name a shape only if nothing it could be confused with is drawn."""
    shape = desc.get("shape")
    return shape is None or not any(f.shape in CONFUSABLE.get(shape, ()) for f in pic.figures)


def _concepts(desc: dict[str, str], *extra: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys([*(desc[k] for k in ("color", "shape") if k in desc), *extra]))


def _describe(pic: Picture, rng: np.random.Generator, present: bool) -> dict[str, str] | None:
    """A description that matches some shape (present) or none; None if no safe one was found."""
    keys = _pick(rng, (("color", "shape"), ("color", "shape"), ("shape",), ("shape",), ("color",)))
    for _ in range(20):
        if present:
            f = _pick(rng, pic.figures)
            desc = {k: getattr(f, k) for k in keys}
        elif pic.figures and rng.random() < 0.5:  # a near miss: one attribute of a real shape changed
            f = _pick(rng, pic.figures)
            desc = {k: getattr(f, k) for k in keys}
            k = _pick(rng, keys)
            desc[k] = str(_pick(rng, COLOR_NAMES if k == "color" else SHAPE_NAMES))
        else:
            desc = {"color": str(_pick(rng, COLOR_NAMES)), "shape": str(_pick(rng, SHAPE_NAMES))}
            desc = {k: desc[k] for k in keys}
        if bool(select(pic, desc)) == present and safe(pic, desc):
            return desc
    return None


def _presence(pic: Picture, rng: np.random.Generator, category: str, templates: tuple[str, ...]) -> Asked | None:
    """Is there a D (`exists`) / is there no D (`negation`), for a D present at even odds."""
    present = bool(rng.random() < 0.5)
    desc = _describe(pic, rng, present)
    if desc is None:
        return None
    d = w.phrase(desc)
    q = w.say(rng, templates, a=w.article(d), d=d, ds=w.phrase(desc, many=True))
    yes = present if category == "exists" else not present
    return Asked(category, q, _yes_no(yes), distractors=(_yes_no(not yes),), concepts=_concepts(desc))


def ask_exists(pic: Picture, rng: np.random.Generator) -> Asked | None:
    return _presence(pic, rng, "exists", w.EXISTS)


def ask_negation(pic: Picture, rng: np.random.Generator) -> Asked | None:
    return _presence(pic, rng, "negation", w.NEGATION)


def _referent(pic: Picture, rng: np.random.Generator, by: tuple[str, ...],
              among: tuple[Figure, ...] | None = None) -> tuple[Figure, str, dict] | None:
    """A shape (of `among`, default any) and a phrase that picks it out alone in the whole
    picture ("star", "red shape", "red star"); the lone shape of a single-shape picture is
    just "shape"."""
    if among is None and len(pic.figures) == 1 and pic.kind != "sign":
        return pic.figures[0], "shape", {}
    order = list(pic.figures if among is None else among)
    rng.shuffle(order)
    for f in order:
        for keys in (by, ("color", "shape")):
            desc = {k: getattr(f, k) for k in keys}
            if len(select(pic, desc)) == 1 and safe(pic, desc):
                return f, w.phrase(desc), desc
    return None


def ask_verify(pic: Picture, rng: np.random.Generator) -> Asked | None:
    attr = "color" if rng.random() < 0.5 else "shape"
    ref = _referent(pic, rng, ("shape",) if attr == "color" else ("color",))
    if ref is None:
        return None
    fig, name, desc = ref
    if attr in desc:
        return None  # "is the red star red" answers itself
    truth = bool(rng.random() < 0.5)
    actual = getattr(fig, attr)
    if attr == "color":
        value = actual if truth else str(_pick(rng, [c for c in COLOR_NAMES if c != actual]))
        q = w.say(rng, w.VERIFY_COLOR, ref=name, c=value)
    else:
        wrong = [s for s in SHAPE_NAMES if s != actual and s not in CONFUSABLE.get(actual, ())]
        value = actual if truth else str(_pick(rng, wrong))
        q = w.say(rng, w.VERIFY_SHAPE_SINGLE if not desc else w.VERIFY_SHAPE, ref=name, s=value)
    return Asked("verify", q, _yes_no(truth), distractors=(_yes_no(not truth),), concepts=_concepts(desc, value))


def _referent_not_saying(pic: Picture, rng: np.random.Generator, attr: str) -> tuple[Figure, str, dict] | None:
    """A figure to ask the `attr` of, pointed at by its other attribute or not at all (never
    by `attr`: "what colour is the red star" answers itself)."""
    ref = _referent(pic, rng, ("shape",) if attr == "color" else ("color",))
    return None if ref is None or attr in ref[2] else ref


def ask_color(pic: Picture, rng: np.random.Generator) -> Asked | None:
    ref = _referent_not_saying(pic, rng, "color")
    if ref is None:
        return None
    fig, name, desc = ref
    q = w.say(rng, w.COLOR_SINGLE) if not desc else w.say(rng, w.COLOR, ref=name)
    wrong = tuple(c for c in COLOR_NAMES if c != fig.color)
    return Asked("color", q, fig.color, COLOR_ALIASES.get(fig.color, ()), wrong, _concepts(desc, fig.color))


def ask_shape(pic: Picture, rng: np.random.Generator) -> Asked | None:
    ref = _referent_not_saying(pic, rng, "shape")
    if ref is None:
        return None
    fig, _, desc = ref
    q = w.say(rng, w.SHAPE_SINGLE) if not desc else w.say(rng, w.SHAPE, c=desc["color"])
    wrong = tuple(s for s in SHAPE_NAMES if s != fig.shape and s not in CONFUSABLE.get(fig.shape, ()))
    return Asked("shape", q, fig.shape, SHAPE_ALIASES.get(fig.shape, ()), wrong, _concepts(desc, fig.shape))


def ask_count(pic: Picture, rng: np.random.Generator) -> Asked | None:
    if rng.random() < 0.15:
        desc: dict[str, str] = {}  # every shape
    else:
        desc = _describe(pic, rng, present=bool(rng.random() < 0.85)) or {}
        if not desc:
            return None
    n = len(select(pic, desc))
    things = w.phrase(desc, many=True) if desc else "shapes"
    q = w.say(rng, w.COUNT, ds=things)
    aliases = (w.NUMBER_WORDS[n], *(("none",) if n == 0 else ()))
    wrong = tuple(str(k) for k in range(MAX_COUNT_OPTION + 1) if k != n)
    return Asked("count", q, str(n), aliases, wrong, _concepts(desc))


def _clear_side(pic: Picture, fig: Figure, axis: str) -> str | None:
    centre = fig.cx if axis == "horizontal" else fig.cy
    if centre <= pic.size * 0.35:
        return "left" if axis == "horizontal" else "top"
    if centre >= pic.size * 0.65:
        return "right" if axis == "horizontal" else "bottom"
    return None


def ask_position(pic: Picture, rng: np.random.Generator) -> Asked | None:
    axis = "horizontal" if rng.random() < 0.5 else "vertical"
    if len(pic.figures) >= 2 and rng.random() < 0.6:
        return _ask_relative(pic, rng, axis)
    ref = _referent(pic, rng, ("shape",) if rng.random() < 0.5 else ("color",))
    if ref is None:
        return None
    fig, name, desc = ref
    side = _clear_side(pic, fig, axis)
    if side is None:
        return None
    q = w.say(rng, w.SIDE[axis], ref=name)
    other = {"left": "right", "right": "left", "top": "bottom", "bottom": "top"}[side]
    return Asked("position", q, side, distractors=(other,), concepts=_concepts(desc))


def _ask_relative(pic: Picture, rng: np.random.Generator, axis: str) -> Asked | None:
    a = _referent(pic, rng, ("shape",) if rng.random() < 0.5 else ("color",), among=pic.figures)
    if a is None:
        return None
    others = tuple(f for f in pic.figures if f is not a[0])
    b = _referent(pic, rng, ("shape",) if rng.random() < 0.5 else ("color",), among=others)
    if b is None or b[1] == a[1]:
        return None
    (fa, na, da), (fb, nb, db) = a, b
    delta = fa.cx - fb.cx if axis == "horizontal" else fa.cy - fb.cy
    if abs(delta) < (fa.radius + fb.radius) * REACH:
        return None  # not clearly apart along the asked direction
    if axis == "horizontal":
        answer, other = ("left", "right") if delta < 0 else ("right", "left")
    else:
        answer, other = ("above", "below") if delta < 0 else ("below", "above")
    q = w.say(rng, w.RELATIVE[axis], a=na, b=nb)
    return Asked("position", q, answer, distractors=(other,), concepts=_concepts(da, *_concepts(db)))


def ask_text(pic: Picture, rng: np.random.Generator) -> Asked | None:
    if pic.word is None:
        return None
    q = w.say(rng, w.TEXT + (w.TEXT_SIGN if pic.sign else ()))
    return Asked("text", q, pic.word, distractors=tuple(x for x in WORDS if x != pic.word))


ASKERS: dict[str, Callable[[Picture, np.random.Generator], Asked | None]] = {
    "exists": ask_exists, "negation": ask_negation, "verify": ask_verify, "color": ask_color,
    "shape": ask_shape, "count": ask_count, "position": ask_position, "text": ask_text,
}
