"""Questions about what shapes look like: a shape's colour, shape or size, the most common
colour, which of two shapes is larger, whether shapes share an attribute."""

from __future__ import annotations

from collections import Counter

from training.data.language import (
    article,
    cap,
    listing,
    named,
    ref_phrase,
    select,
    shape_name,
    where,
)
from training.data.questions.core import GenContext, QueryRules, Question, QuestionTypes, yes_no
from training.data.questions.refs import (
    aliases_of,
    filter_shapes,
    pair_shapes,
    pick_ref,
    pick_shape,
    resolve,
    target_shape,
    two_refs,
)
from training.data.scene import Scene
from training.data.vocabulary import ATTR_VALUES, ATTR_WORD, COLORS, SAME_SIZE, SIZES, YES_NO

QUESTION_TYPES = QuestionTypes()

ATTR_TEMPLATES = {
    "color": ("What <colour> is the {ref}?", "Which <colour> is the {ref}?", "What is the <colour> of the {ref}?",
              "Tell me the <colour> of the {ref}.", "The {ref} is what <colour>?",
              "In what <colour> is the {ref} drawn?"),
    "shape": ("What shape is the {ref}?", "Which shape does the {ref} have?", "What kind of shape is the {ref}?",
              "The {ref} has what shape?", "Name the shape of the {ref}."),
    "size": ("What size is the {ref}?", "How big is the {ref}: small, medium or large?",
             "Is the {ref} small, medium or large?", "What is the size of the {ref}?", "How large is the {ref}?"),
}


@QUESTION_TYPES.add("attr", "fine_grained_perception")
def g_attr(ctx: GenContext) -> Question | None:
    attr = ctx.rng.choice(("color", "shape", "size"))
    s = pick_shape(ctx, ctx.scene.shapes)
    if s is None:
        return None
    ref = pick_ref(ctx, s, exclude=(attr,))
    if ref is None:
        return None
    phrase = ref_phrase(ref, noun="object")
    text = ctx.say(ATTR_TEMPLATES[attr], ref=phrase)
    query = {"type": "attr", "attr": attr, "target": ref}
    return ctx.finish(text, query, getattr(s, attr), attr, ATTR_VALUES[attr])


@QUESTION_TYPES.add("dominant_color", "coarse_perception")
def g_dominant_color(ctx: GenContext) -> Question | None:
    counts = Counter(s.color for s in ctx.scene.shapes).most_common()
    if not counts or counts[0][1] < 2 or (len(counts) > 1 and counts[1][1] == counts[0][1]):
        return None
    text = ctx.say((
        "Which <colour> is most common among the shapes?", "What is the most frequent shape <colour>?",
        "Which <colour> do more shapes have than any other?",
        "Which <colour> appears on the largest number of shapes?",
    ))
    return ctx.finish(text, {"type": "dominant_color"}, counts[0][0], "color", list(COLORS))


@QUESTION_TYPES.add("compare_size", "instance_reasoning")
def g_compare_size(ctx: GenContext) -> Question | None:
    picked = two_refs(ctx, exclude=("size",))
    if picked is None:
        return None
    a, ra, b, rb = picked
    if a.size == b.size:
        return None
    which = ctx.rng.choice(("larger", "smaller"))
    word = {"larger": ("bigger", "larger"), "smaller": ("smaller",)}[which]
    pa, pb = ref_phrase(ra), ref_phrase(rb)
    text = ctx.say((
        "Which is {w}, the {a} or the {b}?", "Of the {a} and the {b}, which one is {w}?",
        "Which of the two is {w}: the {a} or the {b}?", "Which shape is {w}, the {a} or the {b}?",
    ), w=ctx.rng.choice(word), a=pa, b=pb)
    a_bigger = SIZES.index(a.size) > SIZES.index(b.size)
    answer = pa if a_bigger == (which == "larger") else pb
    other = pb if answer == pa else pa
    query = {"type": "compare_size", "which": which, "a": ra, "b": rb}
    target = a if answer == pa else b
    return ctx.finish(text, query, answer, "choice", [other, SAME_SIZE],
                       aliases=aliases_of(ctx, target))


@QUESTION_TYPES.add("same_attr", "instance_reasoning")
def g_same_attr(ctx: GenContext) -> Question | None:
    attr = ctx.rng.choice(("color", "shape", "size"))
    picked = two_refs(ctx, exclude=(attr,))
    if picked is None:
        return None
    a, ra, b, rb = picked
    word = {"color": "<colour>", "shape": "shape", "size": "size"}[attr]
    text = ctx.say((
        "Do the {a} and the {b} have the same {w}?", "Are the {a} and the {b} the same {w}?",
        "Is the {a} the same {w} as the {b}?", "Do the {a} and the {b} share the same {w}?",
    ), a=ref_phrase(ra, noun="object"), b=ref_phrase(rb, noun="object"), w=word)
    query = {"type": "same_attr", "attr": attr, "a": ra, "b": rb}
    same = getattr(a, attr) == getattr(b, attr)
    return ctx.finish(text, query, yes_no(same), "yesno", YES_NO)


@QUESTION_TYPES.add("all_same", "logical_reasoning")
def g_all_same(ctx: GenContext) -> Question | None:
    kinds = [k for k, n in Counter(s.shape for s in ctx.scene.shapes).items() if n >= 2]
    if not kinds:
        return None
    shape = ctx.rng.choice(sorted(kinds))
    attr = ctx.rng.choice(("color", "size"))
    word = {"color": "<colour>", "size": "size"}[attr]
    text = ctx.say((
        "Are all the {s} the same {w}?", "Do all the {s} share the same {w}?",
        "Is every {one} the same {w}?", "Do the {s} all have one {w}?",
    ), s=ref_phrase({"shape": shape}, many=True), one=shape, w=word)
    values = {getattr(s, attr) for s in select(ctx.scene, {"shape": shape})}
    query = {"type": "all_same", "attr": attr, "filter": {"shape": shape}}
    return ctx.finish(text, query, yes_no(len(values) == 1), "yesno", YES_NO)


# ---------------------------------------------------------------------------------------
# Targets


def _color_counts(scene: Scene) -> list[tuple[str, int]]:
    """(colour, number of shapes) most first, ties by name."""
    return sorted(Counter(s.color for s in scene.shapes).items(), key=lambda kv: (-kv[1], kv[0]))


def _attr_statements(scene: Scene, q: dict) -> list[str]:
    s = resolve(scene, q["target"])
    name = cap(f"the {ref_phrase(q['target'], noun='object')}")
    value = getattr(s, q["attr"])
    return [f"{name} is {article(value) if q['attr'] == 'shape' else value}."]


def _attr_steps(scene: Scene, question: Question) -> list[str]:
    q = question.query
    s = resolve(scene, q["target"])
    return [f"The description mentions {article(shape_name(s))} in the {where(s, scene)}; "
            f"it is the {ref_phrase(q['target'], noun='object')}.",
            f"Its {ATTR_WORD[q['attr']]} is {getattr(s, q['attr'])}."]


def _dominant_steps(scene: Scene, question: Question) -> list[str]:
    counts = _color_counts(scene)
    return ["Counting the shapes by colour in the description: " + listing(f"{n} {c}" for c, n in counts) + ".",
            f"{cap(counts[0][0])} has the most, with {counts[0][1]}."]


def _compare_size_statements(scene: Scene, q: dict) -> list[str]:
    a, b = pair_shapes(scene, q)
    return [f"The {ref_phrase(q['a'])} is {a.size} and the {ref_phrase(q['b'])} is {b.size}."]


def _compare_size_steps(scene: Scene, question: Question) -> list[str]:
    q = question.query
    a, b = pair_shapes(scene, q)
    pa, pb = ref_phrase(q["a"]), ref_phrase(q["b"])
    big, small = (pa, pb) if SIZES.index(a.size) > SIZES.index(b.size) else (pb, pa)
    return [f"The {pa} is {a.size} and the {pb} is {b.size}.", f"So the {big} is larger and the {small} is smaller."]


def _same_attr_focus(q: dict) -> str:
    a, b = ref_phrase(q["a"], noun="object"), ref_phrase(q["b"], noun="object")
    return f"the {ATTR_WORD[q['attr']]}s of the {a} and the {b}"


def _same_attr_statements(scene: Scene, q: dict) -> list[str]:
    attr = q["attr"]
    a, b = pair_shapes(scene, q)
    va, vb = getattr(a, attr), getattr(b, attr)
    if attr == "shape":
        va, vb = article(va), article(vb)
    pa, pb = ref_phrase(q["a"], noun="object"), ref_phrase(q["b"], noun="object")
    return [f"The {pa} is {va} and the {pb} is {vb}."]


def _same_attr_steps(scene: Scene, question: Question) -> list[str]:
    q = question.query
    attr = q["attr"]
    a, b = pair_shapes(scene, q)
    va, vb = getattr(a, attr), getattr(b, attr)
    pa, pb = ref_phrase(q["a"], noun="object"), ref_phrase(q["b"], noun="object")
    return [f"The description mentions {article(shape_name(a))} (the {pa}) and {article(shape_name(b))} (the {pb}).",
            f"Their {ATTR_WORD[attr]}s are {va} and {vb}, which are {'the same' if va == vb else 'different'}."]


def _all_same_statements(scene: Scene, q: dict) -> list[str]:
    flt, attr = q["filter"], q["attr"]
    values = [getattr(s, attr) for s in select(scene, flt)]
    return [f"The {ref_phrase(flt, many=True)} are {listing(values)}."]


def _all_same_steps(scene: Scene, question: Question) -> list[str]:
    q = question.query
    flt, attr = q["filter"], q["attr"]
    items = select(scene, flt)
    values = [getattr(s, attr) for s in items]
    same = len(set(values)) == 1
    return [f"The {ref_phrase(flt, many=True)} in the description: {listing(named(s, scene) for s in items)}.",
            f"Their {ATTR_WORD[attr]}s are {listing(values)}, so they are "
            f"{'all the same' if same else 'not all the same'}."]


QUERY_RULES = {
    "dominant_color": QueryRules(
        focus=lambda q: "the colours of all the shapes",
        statements=lambda scene, q: [
            f"The shapes have these colours: {listing(f'{n} {c}' for c, n in _color_counts(scene))}."],
        steps=_dominant_steps,
    ),
    "attr": QueryRules(
        focus=lambda q: f"the {ATTR_WORD[q['attr']]} of the {ref_phrase(q['target'], noun='object')}",
        statements=_attr_statements,
        steps=_attr_steps,
        relevant=target_shape,
    ),
    "compare_size": QueryRules(
        focus=lambda q: f"the sizes of the {ref_phrase(q['a'])} and the {ref_phrase(q['b'])}",
        statements=_compare_size_statements,
        steps=_compare_size_steps,
        relevant=pair_shapes,
    ),
    "same_attr": QueryRules(
        focus=_same_attr_focus,
        statements=_same_attr_statements,
        steps=_same_attr_steps,
        relevant=pair_shapes,
    ),
    "all_same": QueryRules(
        focus=lambda q: f"the {ATTR_WORD[q['attr']]}s of the {ref_phrase(q['filter'], many=True)}",
        statements=_all_same_statements,
        steps=_all_same_steps,
        relevant=filter_shapes,
    ),
}
