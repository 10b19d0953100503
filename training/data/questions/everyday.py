"""Everyday questions, worded the way people ask them about a simple picture: is there a
red shape, is there no circle, is the star blue, what colour is the shape, what shape is
this, how many hearts, is it on the left or the right, is it above or below the square,
what word is written. Each answer has the form the question asks for: yes / no, a colour
word, a shape word, a number, a position word, the word.

Where a question means what an older query type means (is there = `exists`, what colour /
what shape = `attr`, how many = `count`, what is written = `read_text`) it uses that query
type and its target rules; the rest (`absent`, `verify`, `side`, `relative`) are here.
Synonyms people use (gray, oval, rhombus) appear in questions and are accepted answers.
"""

from __future__ import annotations

import dataclasses
import re

from training.data.language import (
    article,
    named,
    plural,
    ref_phrase,
    select,
    shape_name,
    where,
)
from training.data.questions import attributes, counting
from training.data.questions.core import GenContext, QueryRules, Question, QuestionTypes, yes_no
from training.data.questions.refs import (
    mentions_ok,
    near_numbers,
    pair_shapes,
    resolve,
    target_shape,
    unique_refs,
)
from training.data.scene import Scene, Shape, centre
from training.data.vocabulary import (
    ATTR_WORD,
    COLOR_ALIASES,
    COLORS,
    CONFUSABLE_SHAPES,
    SHAPE_ALIASES,
    SHAPE_NOUNS,
    SHAPES,
    WORDS,
    YES_NO,
)

QUESTION_TYPES = QuestionTypes()

MIN_APART = 0.12  # centres closer than this (fraction of the side) are not "above" / "left of"
_SYNONYMS = {**COLOR_ALIASES, **SHAPE_ALIASES}


def _noun(ctx: GenContext) -> str:
    return ctx.rng.choice(SHAPE_NOUNS) if ctx.rng.random() < 0.5 else "shape"


def _synonyms(ctx: GenContext, text: str) -> str:
    """Now and then the other word people use: gray for grey, oval for ellipse, rhombus."""
    for word, others in _SYNONYMS.items():
        if re.search(rf"\b{word}", text) and ctx.rng.random() < 0.35:
            other = ctx.rng.choice(others)  # "diamonds" -> "rhombuses", not "rhombuss"
            text = re.sub(rf"\b{word}(s?)\b", lambda m, o=other: plural(o) if m.group(1) else o, text)
    return text


def _ask(ctx: GenContext, templates: tuple[str, ...], **kw: str) -> str:
    return _synonyms(ctx, ctx.say(templates, **kw))


def _aliases(value: str) -> tuple[str, ...]:
    return _SYNONYMS.get(value, ())


def _target_ref(ctx: GenContext, s: Shape, exclude: tuple[str, ...] = ()) -> dict | None:
    """How to point at `s`: "the shape" when it is alone, else a ref only it matches."""
    refs = [r for r in unique_refs(ctx.scene, s, exclude) if mentions_ok(ctx, r)]
    if len(ctx.scene.shapes) == 1 and (not refs or ctx.rng.random() < 0.6):
        return {}
    if not refs:
        return None
    return dict(ctx.rng.choice(refs[:3] if ctx.rng.random() < 0.7 else refs))


def _pick(ctx: GenContext) -> Shape | None:
    shapes = ctx.scene.shapes
    if not shapes:
        return None
    preferred = [s for s in shapes if (s.color, s.shape) in ctx.prefer]
    return ctx.rng.choice(preferred if preferred and ctx.rng.random() < 0.75 else list(shapes))


def _shape_and_ref(ctx: GenContext, exclude: tuple[str, ...]) -> tuple[Shape, dict] | None:
    """A shape to ask about and how to point at it without its `exclude`d attributes."""
    s = _pick(ctx)
    ref = None if s is None else _target_ref(ctx, s, exclude)
    return None if ref is None else (s, ref)


def _confused(scene: Scene, flt: dict) -> bool:
    """A shape name whose look-alike is in the picture (a strict reader might say yes)."""
    return "shape" in flt and any((flt["shape"], s.shape) in CONFUSABLE_SHAPES for s in scene.shapes)


def _filter(ctx: GenContext, present: bool) -> dict | None:
    """A colour, shape or colour + shape filter that matches some shape, or none."""
    kind = ctx.rng.choice(("pair", "pair", "color", "shape"))
    keys = ("color", "shape") if kind == "pair" else (kind,)
    for _ in range(12):
        if present:
            s = _pick(ctx)
            if s is None:
                return None
            flt = {k: getattr(s, k) for k in keys}
        else:
            flt = {"color": ctx.rng.choice(list(COLORS)), "shape": ctx.rng.choice(SHAPES)}
            flt = {k: flt[k] for k in keys}
        if (bool(select(ctx.scene, flt)) == present and mentions_ok(ctx, flt)
                and not (not present and _confused(ctx.scene, flt))):
            return flt
    return None


# ---------------------------------------------------------------------------------------
# Generators


def _presence(ctx: GenContext, templates: tuple[str, ...], query_type: str) -> Question | None:
    """Is there an X (`exists`) / is there no X (`absent`), for an X present at even odds."""
    flt = _filter(ctx, present=ctx.rng.random() < 0.5)
    if flt is None:
        return None
    t = ref_phrase(flt, noun=_noun(ctx))
    text = _ask(ctx, templates, a=article(t).split()[0], t=t, ts=plural(t))
    found = bool(select(ctx.scene, flt))
    answer = yes_no(found if query_type == "exists" else not found)
    return ctx.finish(text, {"type": query_type, "filter": flt}, answer, "yesno", YES_NO)


@QUESTION_TYPES.add("is_there", "logical_reasoning", scene="shapes")
def g_is_there(ctx: GenContext) -> Question | None:
    return _presence(ctx, (
        "Is there {a} {t}?", "Is there {a} {t} in the image?", "Is there {a} {t} in the picture?",
        "Do you see {a} {t}?", "Can you see {a} {t} here?", "Does the image contain {a} {t}?",
        "Does the picture show {a} {t}?", "Does this picture have {a} {t} in it?", "Is {a} {t} visible?",
        "Is there {a} {t} anywhere in the image?", "Is {a} {t} present in the picture?",
        "Does the image include {a} {t}?", "Are there any {ts}?", "Is {a} {t} shown?",
        "Any {ts} in the image?", "Any {ts} here?", "Are any {ts} visible?", "Is there at least one {t}?",
        "Can {a} {t} be seen in the picture?", "Does the picture have {a} {t}?", "Do you notice {a} {t}?",
        "Is {a} {t} in the image?", "Is there {a} {t} or not?", "Does this image contain any {ts}?",
        "Is {a} {t} drawn in the picture?", "Can you find {a} {t}?",
    ), "exists")


# "is it true that" + "the picture does not contain a red star": negations are asked through
# many frames and clauses, and a reasoner that keys on one of them drops the "not".
ABSENT_FRAMES = ("Is it true that ", "Is it correct that ", "Is it right that ", "True or false: ",
                 "Would you agree that ", "Can you confirm that ", "Am I correct that ")
ABSENT_CLAUSES = ("there is no {t}?", "the image has no {t}?", "the picture does not contain {a} {t}?",
                  "no {t} can be seen?", "the image shows no {ts}?", "there isn't {a} {t} here?",
                  "no {t} is in the picture?", "the picture lacks {a} {t}?", "the image does not have {a} {t}?")


@QUESTION_TYPES.add("absent", "logical_reasoning", scene="shapes")
def g_absent(ctx: GenContext) -> Question | None:
    return _presence(ctx, (
        "Is it true that there is no {t}?", "Is there no {t} in the image?", "Is there no {t} in this picture?",
        "Is it true that the picture has no {t}?", "Is it correct that there is no {t} here?",
        "Is it right that the image contains no {t}?", "Is it true that the image does not show {a} {t}?",
        "Am I right that there is no {t}?", "Is the picture without {a} {t}?", "Is {a} {t} missing from the image?",
        "Is it the case that no {t} appears in the picture?", "Does the image have no {t}?",
        *(frame + clause for frame in ABSENT_FRAMES for clause in ABSENT_CLAUSES),
    ), "absent")


VERIFY_TEMPLATES = {
    "color": ("Is the {r} {v}?", "Is the {r} coloured {v}?", "Is the <colour> of the {r} {v}?",
              "Is the {r} {v} in <colour>?", "Does the {r} look {v}?", "Would you say the {r} is {v}?",
              "Is this {r} {v}?", "Is the {r} painted {v}?", "Is the {r} {v} or not?", "Is the {r} a {v} one?",
              "Is it true that the {r} is {v}?", "Is the {r} drawn in {v}?", "Does the {r} have a {v} <colour>?"),
    "shape": ("Is the {r} {a} {v}?", "Is the {r} shaped like {a} {v}?", "Is the shape of the {r} {a} {v}?",
              "Does the {r} look like {a} {v}?", "Would you call the {r} {a} {v}?", "Is the {r} {a} {v} shape?",
              "Is this {r} {a} {v}?", "Is the {r} {a} {v} or not?", "Is it true that the {r} is {a} {v}?",
              "Is the {r} drawn as {a} {v}?", "Does the {r} have the shape of {a} {v}?"),
}


@QUESTION_TYPES.add("verify", "fine_grained_perception")
def g_verify(ctx: GenContext) -> Question | None:
    s = _pick(ctx)
    if s is None:
        return None
    attr = ctx.rng.choice(("color", "shape"))
    ref = _target_ref(ctx, s, exclude=(attr,))
    if ref is None:
        return None
    actual = getattr(s, attr)
    if ctx.rng.random() < 0.5:
        value = actual
    else:
        pool = [v for v in (COLORS if attr == "color" else SHAPES)
                if v != actual and (actual, v) not in CONFUSABLE_SHAPES]
        value = ctx.rng.choice(pool)
    if not mentions_ok(ctx, {**ref, attr: value}):
        return None
    r = ref_phrase(ref, noun=_noun(ctx))
    text = _ask(ctx, VERIFY_TEMPLATES[attr], r=r, v=value, a=article(value).split()[0])
    query = {"type": "verify", "attr": attr, "value": value, "target": ref}
    return ctx.finish(text, query, yes_no(value == actual), "yesno", YES_NO)


COLOR_TEMPLATES = (
    "What <colour> is the {r}?", "What is the <colour> of the {r}?", "Which <colour> is the {r}?",
    "Name the <colour> of the {r}.", "The {r} is what <colour>?", "What <colour> does the {r} have?",
    "Tell me the <colour> of the {r}.", "What <colour> is this {r}?", "What's the <colour> of the {r}?",
    "What <colour> is the {r} in the picture?", "Which <colour> was the {r} painted?",
    "<colour> of the {r}?", "Which <colour> does the {r} have?", "What <colour> is the {r} drawn in?",
    "In what <colour> is the {r} drawn?", "What <colour> has the {r}?", "Say the <colour> of the {r}.",
    "What is the {r}'s <colour>?", "The <colour> of the {r}?",
)
# A lone shape asked about without naming it ("what colour is it"): without these the
# reasoner read "it" as a text mark and looked for "the colour of the number 1".
ALONE_COLOR_TEMPLATES = (
    "What <colour> is it?", "What <colour> is this?", "What <colour> is shown?", "What <colour> is shown here?",
    "What <colour> do you see?", "Which <colour> is it?", "Name the <colour>.", "What <colour> is drawn?",
    "What <colour> is in the picture?", "Tell me the <colour>.", "What is the <colour> here?",
    "Which <colour> can you see?",
)
SHAPE_TEMPLATES = (
    "What shape is the {r}?", "What is the {r}?", "Which shape is the {r}?", "What kind of shape is the {r}?",
    "What is the shape of the {r}?", "The {r} is what shape?", "What shape does the {r} have?",
    "Name the shape of the {r}.", "What sort of shape is the {r}?",
    "Shape of the {r}?", "What shape is the {r} drawn as?", "What does the {r} look like?",
    "What form does the {r} have?", "What is the {r}'s shape?", "The shape of the {r}?",
)
# When the shape is pointed at by its colour alone: "which shape is red".
COLOR_REF_SHAPE_TEMPLATES = (
    "Which shape is {c}?", "What shape is {c}?", "Which of the shapes is {c}?", "What is the {c} one?",
    "Which shape is drawn in {c}?", "Which shape has the <colour> {c}?",
)
ALONE_SHAPE_TEMPLATES = (
    "What shape is this?", "What shape is shown?", "What shape do you see?", "Name the shape.",
    "What shape is in the picture?", "What is drawn in the image?", "What kind of shape is shown here?",
    "Which shape can you see?", "What shape is drawn?", "What is the shape in the image?",
    "What shape is it?", "Which shape is it?", "What is this shape?", "What shape is here?",
)


@QUESTION_TYPES.add("name_color", "fine_grained_perception")
def g_name_color(ctx: GenContext) -> Question | None:
    picked = _shape_and_ref(ctx, ("color",))
    if picked is None:
        return None
    s, ref = picked
    if not ref and ctx.rng.random() < 0.5:
        text = _ask(ctx, ALONE_COLOR_TEMPLATES)
    else:
        text = _ask(ctx, COLOR_TEMPLATES, r=ref_phrase(ref, noun=_noun(ctx)))
    return ctx.finish(text, {"type": "attr", "attr": "color", "target": ref}, s.color, "color", list(COLORS),
                      aliases=_aliases(s.color))


@QUESTION_TYPES.add("name_shape", "fine_grained_perception")
def g_name_shape(ctx: GenContext) -> Question | None:
    picked = _shape_and_ref(ctx, ("shape",))
    if picked is None:
        return None
    s, ref = picked
    if not ref and ctx.rng.random() < 0.6:
        text = _ask(ctx, ALONE_SHAPE_TEMPLATES)
    elif set(ref) == {"color"} and ctx.rng.random() < 0.4:
        text = _ask(ctx, COLOR_REF_SHAPE_TEMPLATES, c=ref["color"])
    else:  # never "what shape is the shape"
        noun = _noun(ctx) if ref else ctx.rng.choice([n for n in SHAPE_NOUNS if n != "shape"])
        text = _ask(ctx, SHAPE_TEMPLATES, r=ref_phrase(ref, noun=noun))
    wrong = [v for v in SHAPES if (s.shape, v) not in CONFUSABLE_SHAPES]
    return ctx.finish(text, {"type": "attr", "attr": "shape", "target": ref}, s.shape, "shape", wrong,
                      aliases=_aliases(s.shape))


@QUESTION_TYPES.add("how_many", "fine_grained_perception", scene="shapes")
def g_how_many(ctx: GenContext) -> Question | None:
    if not ctx.scene.shapes:
        return None
    if ctx.rng.random() < 0.2:
        flt = {}
    else:
        flt = _filter(ctx, present=ctx.rng.random() < 0.8)
        if flt is None:
            return None
    ts = ref_phrase(flt, many=True, noun=_noun(ctx))
    text = _ask(ctx, (
        "How many {ts} are there?", "How many {ts} are in the picture?", "How many {ts} can you see?",
        "How many {ts} do you see?", "Count the {ts}.", "What is the number of {ts}?", "How many {ts}?",
        "How many {ts} does the image show?", "How many {ts} are visible?", "How many {ts} can be seen?",
        "Count how many {ts} there are.", "How many {ts} are in this image?",
        "Number of {ts} in the image?", "How many {ts} are shown?", "How many {ts} appear in the picture?",
        "What is the count of {ts}?", "How many {ts} are drawn?", "Total number of {ts}?",
        "How many {ts} does the picture have?", "Give the number of {ts}.",
    ), ts=ts)
    n = len(select(ctx.scene, flt))
    return ctx.finish(text, {"type": "count", "filter": flt}, str(n), "number", near_numbers(ctx.rng, n, hi=9))


SIDE_TEMPLATES = {
    "h": ("Is the {r} on the left or the right?", "Is the {r} on the left or on the right side?",
          "Is the {r} left or right?", "Which side is the {r} on, left or right?",
          "Is the {r} in the left or the right part of the image?", "Where is the {r}: left or right?",
          "Is the {r} closer to the left or the right edge?", "On which side of the picture is the {r}?"),
    "v": ("Is the {r} at the top or the bottom?", "Is the {r} near the top or the bottom?",
          "Is the {r} at the top or at the bottom of the image?", "Where is the {r}: top or bottom?",
          "Is the {r} toward the top or the bottom of the picture?", "Is the {r} in the top or the bottom part?"),
}
RELATIVE_TEMPLATES = {
    "v": ("Is the {a} above or below the {b}?", "Is the {a} above the {b} or below it?",
          "Relative to the {b}, is the {a} above or below?", "Is the {a} placed above or below the {b}?",
          "Is the {a} located above or below the {b}?"),
    "h": ("Is the {a} to the left or to the right of the {b}?", "Is the {a} left or right of the {b}?",
          "Is the {a} on the left or the right of the {b}?", "Which side of the {b} is the {a} on?",
          "Relative to the {b}, is the {a} on the left or the right?"),
}


def side_of(s: Shape, axis: str) -> str | None:
    """left / right / top / bottom when the centre is in that outer third, else None."""
    index = s.col if axis == "h" else s.row
    names = ("left", None, "right") if axis == "h" else ("top", None, "bottom")
    return names[index]


def relative_of(a: Shape, b: Shape, axis: str) -> str | None:
    """Where `a` is from `b` (above / below / left / right), None when not clearly apart."""
    (ax, ay), (bx, by) = centre(a), centre(b)
    if axis == "v":
        if a.row == b.row or abs(ay - by) < MIN_APART:
            return None
        return "above" if ay < by else "below"
    if a.col == b.col or abs(ax - bx) < MIN_APART:
        return None
    return "left" if ax < bx else "right"


@QUESTION_TYPES.add("side", "grounding")
def g_side(ctx: GenContext) -> Question | None:
    s = _pick(ctx)
    if s is None:
        return None
    axis = ctx.rng.choice(("h", "v"))
    answer = side_of(s, axis)
    ref = _target_ref(ctx, s)
    if answer is None or ref is None:
        return None
    text = _ask(ctx, SIDE_TEMPLATES[axis], r=ref_phrase(ref, noun=_noun(ctx)))
    other = {"left": "right", "right": "left", "top": "bottom", "bottom": "top"}[answer]
    return ctx.finish(text, {"type": "side", "axis": axis, "target": ref}, answer, "position", [other])


@QUESTION_TYPES.add("relative", "instance_reasoning")
def g_relative(ctx: GenContext) -> Question | None:
    if len(ctx.scene.shapes) < 2:
        return None
    a = _pick(ctx)
    b = ctx.rng.choice([s for s in ctx.scene.shapes if s is not a])
    axis = ctx.rng.choice(("h", "v"))
    answer = relative_of(a, b, axis)
    ra, rb = _target_ref(ctx, a), _target_ref(ctx, b)
    if answer is None or not ra or not rb:
        return None
    text = _ask(ctx, RELATIVE_TEMPLATES[axis], a=ref_phrase(ra, noun=_noun(ctx)), b=ref_phrase(rb, noun=_noun(ctx)))
    other = {"left": "right", "right": "left", "above": "below", "below": "above"}[answer]
    return ctx.finish(text, {"type": "relative", "axis": axis, "a": ra, "b": rb}, answer, "position", [other])


@QUESTION_TYPES.add("what_word", "fine_grained_perception")
def g_what_word(ctx: GenContext) -> Question | None:
    words = [t for t in ctx.scene.texts if not t.is_number]
    if len(words) != 1:
        return None
    t = words[0]
    templates = ["What word is written?", "What is written in the image?", "What does the text say?",
                 "What word can you read?", "Read the word.", "What word is shown?", "What does it say?",
                 "Which word appears in the picture?", "What is the word in the image?", "What text is shown?"]
    if t.sign:
        templates += ["What does the sign say?", "What is written on the sign?", "What word is on the sign?",
                      "Read the sign."]
    text = _ask(ctx, tuple(templates))
    return ctx.finish(text, {"type": "read_text", "target": {"kind": "word"}}, t.word, "text", list(WORDS))


# ---------------------------------------------------------------------------------------
# Targets of the query types defined here


def _absent_steps(scene: Scene, question: Question) -> list[str]:
    flt = question.query["filter"]
    found = select(scene, flt)
    thing = article(ref_phrase(flt))
    if found:
        return [f"The description mentions {', '.join(named(s, scene) for s in found)}.",
                f"So there is {thing}, and it is not true that there is none."]
    return [f"No shape in the description is {thing}.", "So it is true that there is none."]


def _verify_steps(scene: Scene, question: Question) -> list[str]:
    q = question.query
    s = resolve(scene, q["target"])
    actual, value = getattr(s, q["attr"]), q["value"]
    if q["attr"] == "shape":
        actual, value = article(actual), article(value)
    verdict = "so it is" if getattr(s, q["attr"]) == q["value"] else "so it is not"
    return [f"The description mentions {article(shape_name(s))} in the {where(s, scene)}; it is the "
            f"{ref_phrase(q['target'], noun='object')}.",
            f"Its {ATTR_WORD[q['attr']]}: it is {actual}, {verdict} {value}."]


def _side_fact(scene: Scene, q: dict) -> str:
    s = resolve(scene, q["target"])
    return f"The {ref_phrase(q['target'], noun='object')} is in the {where(s, scene)}, {_side_word(s, q)}."


def _side_steps(scene: Scene, question: Question) -> list[str]:
    q = question.query
    s = resolve(scene, q["target"])
    return [f"The description places {named(s, scene)}.", f"The {where(s, scene)} is {_side_word(s, q)}."]


def _side_word(s: Shape, q: dict) -> str:
    side = side_of(s, q["axis"])
    return f"on the {side}" if q["axis"] == "h" else f"at the {side}"


def _relative_how(scene: Scene, q: dict) -> str:
    """How the shape `a` lies from `b`: "to the left of", "above", ..."""
    rel = relative_of(*pair_shapes(scene, q), q["axis"])
    return {"left": "to the left of", "right": "to the right of"}.get(rel, rel)


def _relative_fact(scene: Scene, q: dict) -> str:
    return f"The {ref_phrase(q['a'])} is {_relative_how(scene, q)} the {ref_phrase(q['b'])}."


def _relative_steps(scene: Scene, question: Question) -> list[str]:
    q = question.query
    a, b = pair_shapes(scene, q)
    word = "row" if q["axis"] == "v" else "column"
    return [f"The description places {named(a, scene)} and {named(b, scene)}.",
            f"Comparing their {word}s, the {ref_phrase(q['a'])} is {_relative_how(scene, q)} the "
            f"{ref_phrase(q['b'])}."]


QUERY_RULES = {
    # is it true that there is no X / is the X red: the facts of exists / attr, own steps
    "absent": dataclasses.replace(counting.QUERY_RULES["exists"], steps=_absent_steps),
    "verify": dataclasses.replace(attributes.QUERY_RULES["attr"], steps=_verify_steps),
    "side": QueryRules(
        focus=lambda q: f"where the {ref_phrase(q['target'], noun='object')} is in the image",
        statements=lambda scene, q: [_side_fact(scene, q)],
        steps=_side_steps,
        relevant=target_shape,
    ),
    "relative": QueryRules(
        focus=lambda q: f"the positions of the {ref_phrase(q['a'])} and the {ref_phrase(q['b'])}",
        statements=lambda scene, q: [_relative_fact(scene, q)],
        steps=_relative_steps,
        relevant=pair_shapes,
    ),
}
