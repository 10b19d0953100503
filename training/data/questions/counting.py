"""Counting questions: how many shapes of a kind, what is left after removing some,
whether one exists, which of two kinds is more numerous, their difference and sum."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from training.data.language import (
    article,
    count_phrase,
    listing,
    named,
    ref_phrase,
    select,
    there_are,
)
from training.data.questions.core import GenContext, QueryRules, Question, QuestionTypes, yes_no
from training.data.questions.refs import filter_shapes, mentions_ok, near_numbers
from training.data.scene import Scene, Shape
from training.data.vocabulary import ATTR_VALUES, COLORS, SHAPES, SIZES, YES_NO

QUESTION_TYPES = QuestionTypes()


def _filters(ctx: GenContext, kinds: Sequence[str] = ("color", "shape", "size", "pair")) -> list[dict]:
    """Candidate filters (colour, shape, size or colour+shape), most of them non-empty."""
    kind = ctx.rng.choice(list(kinds))
    present = ctx.scene.shapes
    if kind == "pair":
        pool = [{"color": s.color, "shape": s.shape} for s in present]
        pool += [{"color": ctx.rng.choice(list(COLORS)), "shape": ctx.rng.choice(SHAPES)}]
    else:
        values = ATTR_VALUES[kind]
        pool = [{kind: getattr(s, kind)} for s in present] + [{kind: ctx.rng.choice(values)}]
    return [f for f in pool if mentions_ok(ctx, f)]


def _two_filters(ctx: GenContext, *, differ: bool) -> tuple[dict, dict] | None:
    kind = ctx.rng.choice(("color", "shape"))
    values = sorted({getattr(s, kind) for s in ctx.scene.shapes})
    if not values:
        return None
    extra = ctx.rng.choice(ATTR_VALUES[kind])
    values = sorted(set(values) | {extra})
    pairs = [(x, y) for x in values for y in values if x != y]
    ctx.rng.shuffle(pairs)
    for x, y in pairs:
        nx, ny = len(select(ctx.scene, {kind: x})), len(select(ctx.scene, {kind: y}))
        if nx + ny and (not differ or nx != ny):
            return {kind: x}, {kind: y}
    return None


@QUESTION_TYPES.add("count", "fine_grained_perception", scene="shapes")
def g_count(ctx: GenContext) -> Question:
    pool = _filters(ctx) + ([{}] if ctx.rng.random() < 0.3 else [])
    nonempty = [f for f in pool if select(ctx.scene, f)]
    flt = ctx.rng.choice(nonempty if nonempty and ctx.rng.random() < 0.85 else pool)
    n = len(select(ctx.scene, flt))
    things = ref_phrase(flt, many=True)
    text = ctx.say((
        "How many {t} are there?", "How many {t} are in the image?", "Count the {t}.",
        "What is the number of {t} in the picture?", "How many {t} can you see?",
        "How many {t} does the image contain?",
    ), t=things)
    return ctx.finish(text, {"type": "count", "filter": flt}, str(n), "number",
                       near_numbers(ctx.rng, n, hi=9))


@QUESTION_TYPES.add("remove_count", "logical_reasoning")
def g_remove_count(ctx: GenContext) -> Question | None:
    total = len(ctx.scene.shapes)
    pool = [f for f in _filters(ctx) if 0 < len(select(ctx.scene, f)) < total]
    if not pool:
        return None
    flt = ctx.rng.choice(pool)
    things = ref_phrase(flt, many=True)
    text = ctx.say((
        "If all the {t} were removed, how many shapes would be left?",
        "Suppose every one of the {t} disappeared. How many shapes would remain?",
        "After taking away the {t}, how many shapes are left?",
        "How many shapes would remain without the {t}?",
    ), t=things)
    n = total - len(select(ctx.scene, flt))
    return ctx.finish(text, {"type": "remove_count", "filter": flt}, str(n), "number",
                       near_numbers(ctx.rng, n, hi=9))


@QUESTION_TYPES.add("exists", "logical_reasoning", scene="shapes")
def g_exists(ctx: GenContext) -> Question | None:
    present = [{"color": s.color, "shape": s.shape} for s in ctx.scene.shapes]
    if ctx.rng.random() < 0.5:
        flt = ctx.rng.choice(present)
    else:
        flt = {"color": ctx.rng.choice(list(COLORS)), "shape": ctx.rng.choice(SHAPES)}
    if ctx.rng.random() < 0.3:
        flt = dict(flt, size=ctx.rng.choice(SIZES))
    if not mentions_ok(ctx, flt):
        return None
    thing = ref_phrase(flt)
    art = "an" if thing[0] in "aeiou" else "a"
    text = ctx.say((
        "Is there {a} {t} in the image?", "Does the picture contain {a} {t}?", "Can you see {a} {t}?",
        "Is any {t} shown?", "Does the image have at least one {t}?",
    ), a=art, t=thing)
    found = bool(select(ctx.scene, flt))
    return ctx.finish(text, {"type": "exists", "filter": flt}, yes_no(found), "yesno", YES_NO)


@QUESTION_TYPES.add("more_than", "logical_reasoning")
def g_more_than(ctx: GenContext) -> Question | None:
    picked = _two_filters(ctx, differ=True)
    if picked is None:
        return None
    fa, fb = picked
    ta, tb = ref_phrase(fa, many=True), ref_phrase(fb, many=True)
    text = ctx.say((
        "Are there more {a} than {b}?", "Does the image have more {a} than {b}?",
        "Are the {a} more numerous than the {b}?", "Is the number of {a} greater than the number of {b}?",
    ), a=ta, b=tb)
    more = len(select(ctx.scene, fa)) > len(select(ctx.scene, fb))
    return ctx.finish(text, {"type": "more_than", "a": fa, "b": fb}, yes_no(more), "yesno",
                       YES_NO)


@QUESTION_TYPES.add("count_diff", "math")
def g_count_diff(ctx: GenContext) -> Question | None:
    picked = _two_filters(ctx, differ=True)
    if picked is None:
        return None
    fa, fb = picked
    na, nb = len(select(ctx.scene, fa)), len(select(ctx.scene, fb))
    if na < nb:
        fa, fb, na, nb = fb, fa, nb, na
    ta, tb = ref_phrase(fa, many=True), ref_phrase(fb, many=True)
    text = ctx.say((
        "How many more {a} than {b} are there?", "By how many do the {a} outnumber the {b}?",
        "What is the difference between the number of {a} and the number of {b}?",
    ), a=ta, b=tb)
    return ctx.finish(text, {"type": "count_diff", "a": fa, "b": fb}, str(na - nb), "number",
                       near_numbers(ctx.rng, na - nb, hi=9))


@QUESTION_TYPES.add("count_sum", "math")
def g_count_sum(ctx: GenContext) -> Question | None:
    picked = _two_filters(ctx, differ=False)
    if picked is None:
        return None
    fa, fb = picked
    n = len(select(ctx.scene, fa)) + len(select(ctx.scene, fb))
    text = ctx.say((
        "How many {a} and {b} are there altogether?", "What is the total number of {a} and {b}?",
        "If you add the number of {a} to the number of {b}, what do you get?",
        "How many shapes are either {a} or {b}?",
    ), a=ref_phrase(fa, many=True), b=ref_phrase(fb, many=True))
    return ctx.finish(text, {"type": "count_sum", "a": fa, "b": fb}, str(n), "number",
                       near_numbers(ctx.rng, n, hi=9))


# ---------------------------------------------------------------------------------------
# Targets


def _enumerate(scene: Scene, items: Iterable[Shape], what: str) -> list[str]:
    """Trace steps that list the matching shapes from the description, then count them."""
    items = list(items)
    if not items:
        return [f"No shape in the description is one of the {what}, so there are 0."]
    return [f"The {what} in the description: {listing(named(s, scene) for s in items)}.", f"That makes {len(items)}."]


def _count_steps(scene: Scene, question: Question) -> list[str]:
    flt = question.query["filter"]
    return _enumerate(scene, select(scene, flt), ref_phrase(flt, many=True))


def _remove_count_steps(scene: Scene, question: Question) -> list[str]:
    flt = question.query["filter"]
    k, total = len(select(scene, flt)), len(scene.shapes)
    return [f"The description lists {total} shapes.", *_enumerate(scene, select(scene, flt), ref_phrase(flt, many=True)),
            f"{total} - {k} = {total - k}."]


def _exists_steps(scene: Scene, question: Question) -> list[str]:
    flt = question.query["filter"]
    found = select(scene, flt)
    if found:
        return [f"The description mentions {listing(named(s, scene) for s in found)}.",
                f"So there is {article(ref_phrase(flt))}."]
    return [f"No shape in the description is {article(ref_phrase(flt))}.", "So there is none."]


def _two_counts_statements(scene: Scene, q: dict) -> list[str]:
    na, nb = len(select(scene, q["a"])), len(select(scene, q["b"]))
    verb = "is" if na == 1 else "are"
    return [f"There {verb} {count_phrase(na, q['a'])} and {count_phrase(nb, q['b'])}."]


def _two_counts_steps(scene: Scene, question: Question) -> list[str]:
    q = question.query
    t, fa, fb = q["type"], q["a"], q["b"]
    na, nb = len(select(scene, fa)), len(select(scene, fb))
    steps = [*_enumerate(scene, select(scene, fa), ref_phrase(fa, many=True)),
             *_enumerate(scene, select(scene, fb), ref_phrase(fb, many=True))]
    if t == "more_than":
        rel = "more than" if na > nb else ("fewer than" if na < nb else "as many as")
        steps.append(f"{na} is {rel} {nb}.")
    elif t == "count_diff":
        steps.append(f"{na} - {nb} = {na - nb}.")
    else:
        steps.append(f"{na} + {nb} = {na + nb}.")
    return steps


TWO_COUNTS = QueryRules(
    focus=lambda q: f"the numbers of {ref_phrase(q['a'], many=True)} and {ref_phrase(q['b'], many=True)}",
    statements=_two_counts_statements,
    steps=_two_counts_steps,
    relevant=lambda scene, q: select(scene, q["a"]) + select(scene, q["b"]),
)

QUERY_RULES = {
    "count": QueryRules(
        focus=lambda q: f"the number of {ref_phrase(q['filter'], many=True)}",
        statements=lambda scene, q: [there_are(len(select(scene, q["filter"])), q["filter"])],
        steps=_count_steps,
        relevant=filter_shapes,
    ),
    "remove_count": QueryRules(
        focus=lambda q: f"the number of shapes and the number of {ref_phrase(q['filter'], many=True)}",
        statements=lambda scene, q: [there_are(len(scene.shapes), {}),
                                     there_are(len(select(scene, q["filter"])), q["filter"])],
        steps=_remove_count_steps,
        relevant=filter_shapes,
    ),
    "exists": QueryRules(
        focus=lambda q: f"whether there is {article(ref_phrase(q['filter']))}",
        statements=lambda scene, q: [there_are(len(select(scene, q["filter"])), q["filter"])],
        steps=_exists_steps,
        relevant=filter_shapes,
    ),
    "more_than": TWO_COUNTS,
    "count_diff": TWO_COUNTS,
    "count_sum": TWO_COUNTS,
}
