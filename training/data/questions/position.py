"""Questions about where things are: spatial relations between two shapes, the shape next
to another, where an item is, which shape is in a region."""

from __future__ import annotations

from training.data.language import (
    article,
    direction_phrase,
    ref_phrase,
    shape_name,
    text_name,
    text_ref_name,
    where,
)
from training.data.questions.core import GenContext, QueryRules, Question, QuestionTypes, yes_no
from training.data.questions.refs import (
    aliases_of,
    object_distractors,
    pair_shapes,
    pick_ref,
    pick_shape,
    resolve,
    resolve_text,
    two_refs,
)
from training.data.scene import REGIONS, Scene, Shape, TextMark
from training.data.vocabulary import (
    ATTR_VALUES,
    ATTR_WORD,
    COL_NAMES,
    DIRECTIONS,
    ROW_NAMES,
    YES_NO,
)

QUESTION_TYPES = QuestionTypes()


def _neighbor(scene: Scene, s: Shape, direction: str) -> Shape | None:
    dr, dc = DIRECTIONS[direction]
    for o in scene.shapes:
        if o.row == s.row + dr and o.col == s.col + dc:
            return o
    return None


def _unique_name(scene: Scene, s: Shape) -> bool:
    return sum(1 for o in scene.shapes if shape_name(o) == shape_name(s)) == 1


def relation_holds(a: Shape, b: Shape, rel: str) -> bool:
    return {"left": a.col < b.col, "right": a.col > b.col, "above": a.row < b.row, "below": a.row > b.row}[rel]


def _pick_neighbor(ctx: GenContext) -> tuple[dict, str, Shape] | None:
    """A shape with a neighbour: its ref, the direction, the neighbour."""
    options = [(s, d, n) for s in ctx.scene.shapes for d in DIRECTIONS
               if (n := _neighbor(ctx.scene, s, d)) is not None]
    ctx.rng.shuffle(options)
    for s, d, n in options:
        ref = pick_ref(ctx, s)
        if ref is not None:
            return ref, d, n
    return None


@QUESTION_TYPES.add("relation", "instance_reasoning")
def g_relation(ctx: GenContext) -> Question | None:
    picked = two_refs(ctx)
    if picked is None:
        return None
    a, ra, b, rb = picked
    true_rels = [r for r in DIRECTIONS if relation_holds(a, b, r)]
    false_rels = [r for r in DIRECTIONS if r not in true_rels]
    rel = ctx.rng.choice(true_rels if true_rels and ctx.rng.random() < 0.5 else false_rels)
    text = ctx.say((
        "Is the {a} {rel} the {b}?", "Is the {a} located {rel} the {b}?",
        "Would you say the {a} is {rel} the {b}?", "Does the {a} appear {rel} the {b}?",
    ), a=ref_phrase(ra), b=ref_phrase(rb), rel=direction_phrase(rel))
    query = {"type": "relation", "rel": rel, "a": ra, "b": rb}
    return ctx.finish(text, query, yes_no(relation_holds(a, b, rel)), "yesno", YES_NO)


@QUESTION_TYPES.add("neighbor", "instance_reasoning")
def g_neighbor(ctx: GenContext) -> Question | None:
    picked = _pick_neighbor(ctx)
    if picked is None:
        return None
    ref, d, n = picked
    if not _unique_name(ctx.scene, n) or (n.color, n.shape) in ctx.forbidden:
        return None
    text = ctx.say((
        "Which shape is directly {d} the {r}?", "What shape sits directly {d} the {r}?",
        "Name the shape immediately {d} the {r}.", "What can be found directly {d} the {r}?",
    ), d=direction_phrase(d), r=ref_phrase(ref))
    query = {"type": "neighbor", "dir": d, "target": ref}
    return ctx.finish(text, query, shape_name(n), "object", object_distractors(ctx, n),
                       aliases=aliases_of(ctx, n))


@QUESTION_TYPES.add("neighbor_attr", "instance_reasoning")
def g_neighbor_attr(ctx: GenContext) -> Question | None:
    picked = _pick_neighbor(ctx)
    if picked is None:
        return None
    ref, d, n = picked
    attr = ctx.rng.choice(("color", "shape", "size"))
    templates = {
        "color": ("What <colour> is the shape directly {d} the {r}?", "Which <colour> does the shape directly {d} the {r} have?"),
        "shape": ("What kind of shape is directly {d} the {r}?", "What shape is the object directly {d} the {r}?"),
        "size": ("What size is the shape directly {d} the {r}?", "How big is the shape directly {d} the {r}?"),
    }[attr]
    text = ctx.say(templates, d=direction_phrase(d), r=ref_phrase(ref))
    query = {"type": "neighbor_attr", "dir": d, "attr": attr, "target": ref}
    return ctx.finish(text, query, getattr(n, attr), attr, ATTR_VALUES[attr])


WHERE_TEMPLATES = (
    "Where is the {r}?", "Where is the {r} located in the image?", "In which part of the image is the {r}?",
    "Where in the picture can you find the {r}?", "Which region of the image contains the {r}?",
)


@QUESTION_TYPES.add("where", "grounding", scene="shapes")
def g_where(ctx: GenContext) -> Question | None:
    unique_texts = [t for t in ctx.scene.texts if sum(1 for o in ctx.scene.texts if o.text == t.text) == 1]
    if unique_texts and ctx.rng.random() < 0.25:
        t = ctx.rng.choice(unique_texts)
        phrase = text_name(t)[len("the "):]
        target, region = {"text": t.text}, where(t, ctx.scene)
    else:
        s = pick_shape(ctx, ctx.scene.shapes)
        ref = pick_ref(ctx, s) if s else None
        if ref is None:
            return None
        phrase, target, region = ref_phrase(ref), ref, where(s, ctx.scene)
    text = ctx.say(WHERE_TEMPLATES, r=phrase)
    return ctx.finish(text, {"type": "where", "target": target}, region, "region", REGIONS)


@QUESTION_TYPES.add("which_at", "grounding")
def g_which_at(ctx: GenContext) -> Question | None:
    candidates = [s for s in ctx.scene.shapes if _unique_name(ctx.scene, s)
                  and sum(1 for o in (*ctx.scene.shapes, *ctx.scene.texts) if where(o, ctx.scene) == where(s, ctx.scene)) == 1]
    s = pick_shape(ctx, candidates)
    if s is None:
        return None
    region = where(s, ctx.scene)
    text = ctx.say((
        "Which shape is in the {g}?", "What is in the {g} of the image?", "What shape can be seen in the {g}?",
        "Describe the shape in the {g}.", "What object is located in the {g} of the picture?",
    ), g=region)
    return ctx.finish(text, {"type": "which_at", "region": region}, shape_name(s), "object",
                       object_distractors(ctx, s), aliases=aliases_of(ctx, s))


# ---------------------------------------------------------------------------------------
# Targets


def _loc(scene: Scene, item: Shape | TextMark) -> str:
    """"the top left (top row, left column)": the row and column spelled out for comparing."""
    if scene.grid != 3:
        return f"the {where(item, scene)}"
    return f"the {where(item, scene)} ({ROW_NAMES[item.row]} row, {COL_NAMES[item.col]} column)"


def _neighbor_of(scene: Scene, s: Shape, direction: str) -> Shape:
    n = _neighbor(scene, s, direction)
    if n is None:
        raise ValueError(f"nothing {direction} {s}")
    return n


def _shape_at(scene: Scene, region: str) -> Shape:
    found = [s for s in scene.shapes if where(s, scene) == region]
    if len(found) != 1:
        raise ValueError(f"{len(found)} shapes in the {region}")
    return found[0]


def _target_phrase(target: dict) -> str:
    if "text" in target:
        return text_ref_name(target["text"])[len("the "):]
    return ref_phrase(target)


def _target_item(scene: Scene, target: dict) -> Shape | TextMark:
    return resolve_text(scene, target) if "text" in target else resolve(scene, target)


def _relation_statements(scene: Scene, q: dict) -> list[str]:
    a, b = pair_shapes(scene, q)
    return [f"The {ref_phrase(q['a'])} is in the {where(a, scene)} and the "
            f"{ref_phrase(q['b'])} is in the {where(b, scene)}."]


def _relation_steps(scene: Scene, question: Question) -> list[str]:
    q = question.query
    a, b = pair_shapes(scene, q)
    pa, pb = ref_phrase(q["a"]), ref_phrase(q["b"])
    rel = q["rel"]
    holds = relation_holds(a, b, rel)
    if rel in ("left", "right"):
        side = "the same as" if a.col == b.col else ("left of" if a.col < b.col else "right of")
        cmp = f"the {COL_NAMES[a.col]} column is {side} the {COL_NAMES[b.col]} column"
    else:
        side = "the same as" if a.row == b.row else ("above" if a.row < b.row else "below")
        cmp = f"the {ROW_NAMES[a.row]} row is {side} the {ROW_NAMES[b.row]} row"
    return [f"The {pa} is in {_loc(scene, a)}.", f"The {pb} is in {_loc(scene, b)}.", f"Comparing them, {cmp}.",
            f"So the {pa} is {'' if holds else 'not '}{direction_phrase(rel)} the {pb}."]


def _neighbor_statements(scene: Scene, q: dict) -> list[str]:
    n = _neighbor_of(scene, resolve(scene, q["target"]), q["dir"])
    return [f"Directly {direction_phrase(q['dir'])} the {ref_phrase(q['target'])} there is "
            f"{article(shape_name(n))}."]


def _neighbor_steps(scene: Scene, question: Question) -> list[str]:
    q = question.query
    s = resolve(scene, q["target"])
    n = _neighbor_of(scene, s, q["dir"])
    steps = [f"The {ref_phrase(q['target'])} is in {_loc(scene, s)}.",
             f"Directly {direction_phrase(q['dir'])} it is {_loc(scene, n)}.",
             f"The description puts {article(shape_name(n))} there."]
    if q["type"] == "neighbor_attr":
        steps.append(f"Its {ATTR_WORD[q['attr']]} is {getattr(n, q['attr'])}.")
    return steps


def _neighbor_pair(scene: Scene, q: dict) -> list[Shape]:
    s = resolve(scene, q["target"])
    return [s, _neighbor_of(scene, s, q["dir"])]


NEIGHBOR = QueryRules(
    focus=lambda q: f"the shape directly {direction_phrase(q['dir'])} the {ref_phrase(q['target'])}",
    statements=_neighbor_statements,
    steps=_neighbor_steps,
    relevant=_neighbor_pair,
)

QUERY_RULES = {
    "relation": QueryRules(
        focus=lambda q: f"the spatial relationship between the {ref_phrase(q['a'])} and the {ref_phrase(q['b'])}",
        statements=_relation_statements,
        steps=_relation_steps,
        relevant=pair_shapes,
    ),
    "neighbor": NEIGHBOR,
    "neighbor_attr": NEIGHBOR,
    "where": QueryRules(
        focus=lambda q: f"where the {_target_phrase(q['target'])} is located in the image",
        statements=lambda scene, q: [
            f"The {_target_phrase(q['target'])} is in the {where(_target_item(scene, q['target']), scene)}."],
        steps=lambda scene, question: [
            f"The description places the {_target_phrase(question.query['target'])} in the "
            f"{where(_target_item(scene, question.query['target']), scene)}."],
        relevant=lambda scene, q: [_target_item(scene, q["target"])],
    ),
    "which_at": QueryRules(
        focus=lambda q: f"the shape in the {q['region']} of the image",
        statements=lambda scene, q: [f"In the {q['region']} there is {article(shape_name(_shape_at(scene, q['region'])))}."],
        steps=lambda scene, question: [
            f"The description says there is {article(shape_name(_shape_at(scene, question.query['region'])))} "
            f"in the {question.query['region']}."],
        relevant=lambda scene, q: [_shape_at(scene, q["region"])],
    ),
}
