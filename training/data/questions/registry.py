"""Question generators over a scene graph, in MMStar-like categories.

Every question carries a structured `query` (JSON) next to its text: the answer is
computed from the scene graph through that query, the targets (focus, statements,
traces) are built from it, and the tests re-derive every answer from it with their own
checker. Referring expressions are only used when they pick out exactly one object;
multiple-choice distractors are drawn from values that are checked to be wrong.

Phrasing varies (several templates per type, "colour"/"color", varied referring
expressions) so that a model cannot answer by memorising templates.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import combinations

from training.data.language import (
    direction_phrase,
    ref_phrase,
    select,
    shape_name,
    text_name,
    where,
)
from training.data.scene import REGIONS, Scene, Shape, TextMark
from training.data.vocabulary import (
    BACKGROUNDS,
    COLORS,
    ORDINALS,
    PATTERNS,
    SHAPES,
    SIZES,
    TEXT_COLORS,
    WORDS,
)

CATEGORIES = (
    "coarse_perception",
    "fine_grained_perception",
    "instance_reasoning",
    "logical_reasoning",
    "math",
    "grounding",
)
SCENE_TYPES = ("a picture of shapes", "a bar chart", "a photograph", "a map", "a table", "a line chart")
PATTERN_CHOICES = (*PATTERNS, "checkered")  # "checkered" never occurs: a safe distractor
DIRECTIONS = {"left": (0, -1), "right": (0, 1), "above": (-1, 0), "below": (1, 0)}
SAME_SIZE = "they are the same size"

Pair = tuple[str, str]


@dataclass(frozen=True)
class Question:
    qtype: str
    category: str
    text: str
    query: dict
    answer: str  # the canonical open answer
    kind: str  # what the answer is: color, shape, size, number, yesno, region, object, ...
    aliases: tuple[str, ...] = ()  # other open answers that are equally right
    options: tuple[str, ...] | None = None  # multiple choice, shown as A, B, C, D
    answer_index: int | None = None

    @property
    def letter(self) -> str | None:
        return None if self.answer_index is None else "ABCDEFGHIJ"[self.answer_index]

    @property
    def target(self) -> str:
        """What a model should output: the letter for multiple choice, else the answer."""
        return self.letter or self.answer


@dataclass
class GenContext:
    scene: Scene
    rng: random.Random
    mc: bool = False
    forbidden: frozenset[Pair] = frozenset()  # colour-shape pairs never to mention
    prefer: frozenset[Pair] = frozenset()  # pairs to ask about when the scene has them
    n_options: int = 4


# ---------------------------------------------------------------------------------------
# Helpers


def _say(ctx: GenContext, templates: Sequence[str], **kw: str) -> str:
    text = ctx.rng.choice(templates).format(**kw)
    spelling = ctx.rng.choice(("colour", "color"))
    text = text.replace("<colour>", spelling)
    return text[0].upper() + text[1:]


def _finish(
    ctx: GenContext, qtype: str, text: str, query: dict, answer: str, kind: str,
    distractors: Sequence[str], aliases: Sequence[str] = (),
) -> Question:
    category = QTYPES[qtype][0]
    wrong = [d for d in dict.fromkeys(distractors) if d != answer and d not in aliases]
    if not ctx.mc or not wrong:
        return Question(qtype, category, text, query, answer, kind, tuple(a for a in aliases if a != answer))
    options = [answer, *ctx.rng.sample(wrong, min(ctx.n_options - 1, len(wrong)))]
    ctx.rng.shuffle(options)
    return Question(qtype, category, text, query, answer, kind,
                    tuple(a for a in aliases if a != answer), tuple(options), options.index(answer))


def _mentions_ok(ctx: GenContext, ref: dict) -> bool:
    """A question may not name a held-out colour-shape pair outside the held-out split."""
    return not ("color" in ref and "shape" in ref and (ref["color"], ref["shape"]) in ctx.forbidden)


def unique_refs(scene: Scene, target: Shape, exclude: Sequence[str] = ()) -> list[dict]:
    """Attribute-only refs (shortest first) that match `target` and no other shape."""
    keys = [k for k in ("shape", "color", "size") if k not in exclude]
    refs = []
    for n in range(1, len(keys) + 1):
        for combo in combinations(keys, n):
            ref = {k: getattr(target, k) for k in combo}
            if len(select(scene, ref)) == 1:
                refs.append(ref)
    return refs


def _pick_ref(ctx: GenContext, target: Shape, exclude: Sequence[str] = ()) -> dict | None:
    refs = [r for r in unique_refs(ctx.scene, target, exclude) if _mentions_ok(ctx, r)]
    if not refs:
        return None
    shortest = [r for r in refs if len(r) == len(refs[0])]
    return dict(ctx.rng.choice(shortest if ctx.rng.random() < 0.6 else refs))


def _pick_shape(ctx: GenContext, shapes: Sequence[Shape]) -> Shape | None:
    if not shapes:
        return None
    preferred = [s for s in shapes if (s.color, s.shape) in ctx.prefer]
    if preferred and ctx.rng.random() < 0.75:
        return ctx.rng.choice(preferred)
    return ctx.rng.choice(list(shapes))


def _near_numbers(rng: random.Random, n: int, lo: int = 0, hi: int = 200) -> list[str]:
    near = [n + d for d in (-3, -2, -1, 1, 2, 3) if lo <= n + d <= hi]
    rng.shuffle(near)
    return [str(v) for v in near]


def _object_distractors(ctx: GenContext, answer: Shape) -> list[str]:
    """Full descriptions of other shapes (in the scene first) that do not fit `answer`."""
    own = shape_name(answer)
    others = [shape_name(s) for s in ctx.scene.shapes if shape_name(s) != own]
    ctx.rng.shuffle(others)
    for _ in range(20):
        size, color, shape = ctx.rng.choice(SIZES), ctx.rng.choice(list(COLORS)), ctx.rng.choice(SHAPES)
        name = ref_phrase({"size": size, "color": color, "shape": shape})
        if name != own and (color, shape) not in ctx.forbidden:
            others.append(name)
    return list(dict.fromkeys(others))


def _aliases(ctx: GenContext, s: Shape) -> list[str]:
    return [ref_phrase(r) for r in unique_refs(ctx.scene, s)]


def _filters(ctx: GenContext, kinds: Sequence[str] = ("color", "shape", "size", "pair")) -> list[dict]:
    """Candidate filters (colour, shape, size or colour+shape), most of them non-empty."""
    kind = ctx.rng.choice(list(kinds))
    present = ctx.scene.shapes
    if kind == "pair":
        pool = [{"color": s.color, "shape": s.shape} for s in present]
        pool += [{"color": ctx.rng.choice(list(COLORS)), "shape": ctx.rng.choice(SHAPES)}]
    else:
        values = {"color": list(COLORS), "shape": list(SHAPES), "size": list(SIZES)}[kind]
        pool = [{kind: getattr(s, kind)} for s in present] + [{kind: ctx.rng.choice(values)}]
    return [f for f in pool if _mentions_ok(ctx, f)]


def _texts(scene: Scene, numbers: bool | None = None) -> list[TextMark]:
    return [t for t in scene.texts if numbers is None or t.is_number == numbers]


def _text_refs(scene: Scene, t: TextMark) -> list[dict]:
    """Ways to point at a written mark without saying what it says."""
    refs = [{"region": where(t, scene)}]
    if sum(1 for o in scene.texts if o.color == t.color) == 1:
        refs.append({"color": t.color})
    kind = "number" if t.is_number else "word"
    if sum(1 for o in scene.texts if o.is_number == t.is_number) == 1:
        refs.append({"kind": kind})
    return refs


def text_ref_phrase(tref: dict) -> str:
    if "region" in tref:
        return f"the text in the {tref['region']}"
    if "color" in tref:
        return f"the text written in {tref['color']}"
    return f"the {tref['kind']} written in the image"


def _neighbor(scene: Scene, s: Shape, direction: str) -> Shape | None:
    dr, dc = DIRECTIONS[direction]
    for o in scene.shapes:
        if o.row == s.row + dr and o.col == s.col + dc:
            return o
    return None


def _unique_name(scene: Scene, s: Shape) -> bool:
    return sum(1 for o in scene.shapes if shape_name(o) == shape_name(s)) == 1


def _yes_no(flag: bool) -> str:
    return "yes" if flag else "no"


# ---------------------------------------------------------------------------------------
# Coarse perception


def g_scene_type(ctx: GenContext) -> Question:
    answer = "a bar chart" if ctx.scene.kind == "chart" else "a picture of shapes"
    text = _say(ctx, (
        "What kind of image is this?", "What type of picture is shown?",
        "Which best describes this image?", "What sort of image are you looking at?",
        "How would you classify this image?",
    ))
    return _finish(ctx, "scene_type", text, {"type": "scene_type"}, answer, "scene_type", SCENE_TYPES)


def g_background_color(ctx: GenContext) -> Question:
    what = "chart" if ctx.scene.kind == "chart" else "shapes"
    text = _say(ctx, (
        "What <colour> is the background?", "What is the background <colour> of this image?",
        "Which <colour> fills the background?", f"On what <colour> of background are the {what} drawn?",
        "Name the <colour> of the background.",
    ))
    return _finish(ctx, "background_color", text, {"type": "background_color"}, ctx.scene.background,
                   "background", list(BACKGROUNDS))


def g_background_pattern(ctx: GenContext) -> Question | None:
    if ctx.scene.kind != "shapes":
        return None
    text = _say(ctx, (
        "What pattern does the background have?", "Is the background plain, striped or dotted?",
        "How is the background decorated?", "Which pattern can be seen on the background?",
        "What does the background look like: plain, striped or dotted?",
    ))
    return _finish(ctx, "background_pattern", text, {"type": "background_pattern"}, ctx.scene.pattern,
                   "pattern", PATTERN_CHOICES)


def g_has_text(ctx: GenContext) -> Question | None:
    if ctx.scene.kind != "shapes":
        return None
    text = _say(ctx, (
        "Is there any writing in the image?", "Does the image contain any text?",
        "Are there any words or numbers written in the picture?", "Is anything written in this image?",
    ))
    return _finish(ctx, "has_text", text, {"type": "has_text"}, _yes_no(bool(ctx.scene.texts)), "yesno",
                   ("yes", "no"))


def g_dominant_color(ctx: GenContext) -> Question | None:
    counts = Counter(s.color for s in ctx.scene.shapes).most_common()
    if not counts or counts[0][1] < 2 or (len(counts) > 1 and counts[1][1] == counts[0][1]):
        return None
    text = _say(ctx, (
        "Which <colour> is most common among the shapes?", "What is the most frequent shape <colour>?",
        "Which <colour> do more shapes have than any other?",
        "Which <colour> appears on the largest number of shapes?",
    ))
    return _finish(ctx, "dominant_color", text, {"type": "dominant_color"}, counts[0][0], "color", list(COLORS))


# ---------------------------------------------------------------------------------------
# Fine-grained perception

ATTR_TEMPLATES = {
    "color": ("What <colour> is the {ref}?", "Which <colour> is the {ref}?", "What is the <colour> of the {ref}?",
              "Tell me the <colour> of the {ref}.", "The {ref} is what <colour>?",
              "In what <colour> is the {ref} drawn?"),
    "shape": ("What shape is the {ref}?", "Which shape does the {ref} have?", "What kind of shape is the {ref}?",
              "The {ref} has what shape?", "Name the shape of the {ref}."),
    "size": ("What size is the {ref}?", "How big is the {ref}: small, medium or large?",
             "Is the {ref} small, medium or large?", "What is the size of the {ref}?", "How large is the {ref}?"),
}
ATTR_VALUES = {"color": list(COLORS), "shape": list(SHAPES), "size": list(SIZES)}


def g_attr(ctx: GenContext) -> Question | None:
    attr = ctx.rng.choice(("color", "shape", "size"))
    s = _pick_shape(ctx, ctx.scene.shapes)
    if s is None:
        return None
    ref = _pick_ref(ctx, s, exclude=(attr,))
    if ref is None:
        return None
    phrase = ref_phrase(ref, noun="object")
    text = _say(ctx, ATTR_TEMPLATES[attr], ref=phrase)
    query = {"type": "attr", "attr": attr, "target": ref}
    return _finish(ctx, "attr", text, query, getattr(s, attr), attr, ATTR_VALUES[attr])


def g_count(ctx: GenContext) -> Question | None:
    if ctx.scene.kind != "shapes":
        return None
    pool = _filters(ctx) + ([{}] if ctx.rng.random() < 0.3 else [])
    nonempty = [f for f in pool if select(ctx.scene, f)]
    flt = ctx.rng.choice(nonempty if nonempty and ctx.rng.random() < 0.85 else pool)
    n = len(select(ctx.scene, flt))
    things = ref_phrase(flt, many=True)
    text = _say(ctx, (
        "How many {t} are there?", "How many {t} are in the image?", "Count the {t}.",
        "What is the number of {t} in the picture?", "How many {t} can you see?",
        "How many {t} does the image contain?",
    ), t=things)
    return _finish(ctx, "count", text, {"type": "count", "filter": flt}, str(n), "number",
                   _near_numbers(ctx.rng, n, hi=9))


def g_read_text(ctx: GenContext) -> Question | None:
    if not ctx.scene.texts:
        return None
    t = ctx.rng.choice(ctx.scene.texts)
    tref = ctx.rng.choice(_text_refs(ctx.scene, t))
    if "region" in tref:
        templates = ("What is written in the {r}?", "What text appears in the {r} of the image?",
                     "Read the text in the {r}.", "What does the writing in the {r} say?")
    elif "color" in tref:
        templates = ("What is written in {c}?", "Which word or number is written in {c}?",
                     "Read the text that is written in {c}.", "What does the {c} writing say?")
    else:
        templates = (f"What {tref['kind']} is written in the image?", f"Which {tref['kind']} appears in the picture?",
                     f"Read the {tref['kind']} in the image.", f"What {tref['kind']} can you read in the image?")
    text = _say(ctx, templates, r=tref.get("region", ""), c=tref.get("color", ""))
    if t.is_number:
        distractors = _near_numbers(ctx.rng, int(t.text), hi=99) + [str(ctx.rng.randint(0, 99))]
    else:
        distractors = list(WORDS)
    return _finish(ctx, "read_text", text, {"type": "read_text", "target": tref}, t.text, "text", distractors)


def g_text_color(ctx: GenContext) -> Question | None:
    unique = [t for t in ctx.scene.texts if sum(1 for o in ctx.scene.texts if o.text == t.text) == 1]
    if not unique:
        return None
    t = ctx.rng.choice(unique)
    text = _say(ctx, (
        "What <colour> is {n} written in?", "In which <colour> is {n} written?",
        "What is the <colour> of {n}?", "Which <colour> was used to write {n}?",
    ), n=text_name(t))
    return _finish(ctx, "text_color", text, {"type": "text_color", "text": t.text}, t.color, "color",
                   list(TEXT_COLORS))


def g_chart_value(ctx: GenContext) -> Question | None:
    if ctx.scene.kind != "chart":
        return None
    bar = ctx.rng.choice(ctx.scene.bars)
    text = _say(ctx, (
        "What is the value of the {c} bar?", "How high is the {c} bar?", "What number does the {c} bar show?",
        "Read the value of the {c} bar.", "What value is shown for the {c} bar?",
    ), c=bar.color)
    return _finish(ctx, "chart_value", text, {"type": "chart_value", "color": bar.color}, str(bar.value),
                   "number", [str(v) for v in range(1, 10)])


# ---------------------------------------------------------------------------------------
# Instance reasoning


def _two_refs(ctx: GenContext, exclude: Sequence[str] = ()) -> tuple[Shape, dict, Shape, dict] | None:
    if len(ctx.scene.shapes) < 2:
        return None
    a = _pick_shape(ctx, ctx.scene.shapes)
    b = ctx.rng.choice([s for s in ctx.scene.shapes if s is not a])
    ra, rb = _pick_ref(ctx, a, exclude), _pick_ref(ctx, b, exclude)
    if ra is None or rb is None:
        return None
    return a, ra, b, rb


def relation_holds(a: Shape, b: Shape, rel: str) -> bool:
    return {"left": a.col < b.col, "right": a.col > b.col, "above": a.row < b.row, "below": a.row > b.row}[rel]


def g_relation(ctx: GenContext) -> Question | None:
    picked = _two_refs(ctx)
    if picked is None:
        return None
    a, ra, b, rb = picked
    true_rels = [r for r in DIRECTIONS if relation_holds(a, b, r)]
    false_rels = [r for r in DIRECTIONS if r not in true_rels]
    rel = ctx.rng.choice(true_rels if true_rels and ctx.rng.random() < 0.5 else false_rels)
    text = _say(ctx, (
        "Is the {a} {rel} the {b}?", "Is the {a} located {rel} the {b}?",
        "Would you say the {a} is {rel} the {b}?", "Does the {a} appear {rel} the {b}?",
    ), a=ref_phrase(ra), b=ref_phrase(rb), rel=direction_phrase(rel))
    query = {"type": "relation", "rel": rel, "a": ra, "b": rb}
    return _finish(ctx, "relation", text, query, _yes_no(relation_holds(a, b, rel)), "yesno", ("yes", "no"))


def _pick_neighbor(ctx: GenContext) -> tuple[Shape, dict, str, Shape] | None:
    options = [(s, d, n) for s in ctx.scene.shapes for d in DIRECTIONS
               if (n := _neighbor(ctx.scene, s, d)) is not None]
    ctx.rng.shuffle(options)
    for s, d, n in options:
        ref = _pick_ref(ctx, s)
        if ref is not None:
            return s, ref, d, n
    return None


def g_neighbor(ctx: GenContext) -> Question | None:
    picked = _pick_neighbor(ctx)
    if picked is None:
        return None
    _, ref, d, n = picked
    if not _unique_name(ctx.scene, n) or (n.color, n.shape) in ctx.forbidden:
        return None
    text = _say(ctx, (
        "Which shape is directly {d} the {r}?", "What shape sits directly {d} the {r}?",
        "Name the shape immediately {d} the {r}.", "What can be found directly {d} the {r}?",
    ), d=direction_phrase(d), r=ref_phrase(ref))
    query = {"type": "neighbor", "dir": d, "target": ref}
    return _finish(ctx, "neighbor", text, query, shape_name(n), "object", _object_distractors(ctx, n),
                   aliases=_aliases(ctx, n))


def g_neighbor_attr(ctx: GenContext) -> Question | None:
    picked = _pick_neighbor(ctx)
    if picked is None:
        return None
    _, ref, d, n = picked
    attr = ctx.rng.choice(("color", "shape", "size"))
    templates = {
        "color": ("What <colour> is the shape directly {d} the {r}?", "Which <colour> does the shape directly {d} the {r} have?"),
        "shape": ("What kind of shape is directly {d} the {r}?", "What shape is the object directly {d} the {r}?"),
        "size": ("What size is the shape directly {d} the {r}?", "How big is the shape directly {d} the {r}?"),
    }[attr]
    text = _say(ctx, templates, d=direction_phrase(d), r=ref_phrase(ref))
    query = {"type": "neighbor_attr", "dir": d, "attr": attr, "target": ref}
    return _finish(ctx, "neighbor_attr", text, query, getattr(n, attr), attr, ATTR_VALUES[attr])


def g_compare_size(ctx: GenContext) -> Question | None:
    picked = _two_refs(ctx, exclude=("size",))
    if picked is None:
        return None
    a, ra, b, rb = picked
    if a.size == b.size:
        return None
    which = ctx.rng.choice(("larger", "smaller"))
    word = {"larger": ("bigger", "larger"), "smaller": ("smaller",)}[which]
    pa, pb = ref_phrase(ra), ref_phrase(rb)
    text = _say(ctx, (
        "Which is {w}, the {a} or the {b}?", "Of the {a} and the {b}, which one is {w}?",
        "Which of the two is {w}: the {a} or the {b}?", "Which shape is {w}, the {a} or the {b}?",
    ), w=ctx.rng.choice(word), a=pa, b=pb)
    a_bigger = SIZES.index(a.size) > SIZES.index(b.size)
    answer = pa if a_bigger == (which == "larger") else pb
    other = pb if answer == pa else pa
    query = {"type": "compare_size", "which": which, "a": ra, "b": rb}
    target = a if answer == pa else b
    return _finish(ctx, "compare_size", text, query, answer, "choice", [other, SAME_SIZE],
                   aliases=_aliases(ctx, target))


def g_same_attr(ctx: GenContext) -> Question | None:
    attr = ctx.rng.choice(("color", "shape", "size"))
    picked = _two_refs(ctx, exclude=(attr,))
    if picked is None:
        return None
    a, ra, b, rb = picked
    word = {"color": "<colour>", "shape": "shape", "size": "size"}[attr]
    text = _say(ctx, (
        "Do the {a} and the {b} have the same {w}?", "Are the {a} and the {b} the same {w}?",
        "Is the {a} the same {w} as the {b}?", "Do the {a} and the {b} share the same {w}?",
    ), a=ref_phrase(ra, noun="object"), b=ref_phrase(rb, noun="object"), w=word)
    query = {"type": "same_attr", "attr": attr, "a": ra, "b": rb}
    same = getattr(a, attr) == getattr(b, attr)
    return _finish(ctx, "same_attr", text, query, _yes_no(same), "yesno", ("yes", "no"))


# ---------------------------------------------------------------------------------------
# Logical reasoning


def g_remove_count(ctx: GenContext) -> Question | None:
    total = len(ctx.scene.shapes)
    pool = [f for f in _filters(ctx) if 0 < len(select(ctx.scene, f)) < total]
    if not pool:
        return None
    flt = ctx.rng.choice(pool)
    things = ref_phrase(flt, many=True)
    text = _say(ctx, (
        "If all the {t} were removed, how many shapes would be left?",
        "Suppose every one of the {t} disappeared. How many shapes would remain?",
        "After taking away the {t}, how many shapes are left?",
        "How many shapes would remain without the {t}?",
    ), t=things)
    n = total - len(select(ctx.scene, flt))
    return _finish(ctx, "remove_count", text, {"type": "remove_count", "filter": flt}, str(n), "number",
                   _near_numbers(ctx.rng, n, hi=9))


def g_exists(ctx: GenContext) -> Question | None:
    if ctx.scene.kind != "shapes":
        return None
    present = [{"color": s.color, "shape": s.shape} for s in ctx.scene.shapes]
    if ctx.rng.random() < 0.5:
        flt = ctx.rng.choice(present)
    else:
        flt = {"color": ctx.rng.choice(list(COLORS)), "shape": ctx.rng.choice(SHAPES)}
    if ctx.rng.random() < 0.3:
        flt = dict(flt, size=ctx.rng.choice(SIZES))
    if not _mentions_ok(ctx, flt):
        return None
    thing = ref_phrase(flt)
    art = "an" if thing[0] in "aeiou" else "a"
    text = _say(ctx, (
        "Is there {a} {t} in the image?", "Does the picture contain {a} {t}?", "Can you see {a} {t}?",
        "Is any {t} shown?", "Does the image have at least one {t}?",
    ), a=art, t=thing)
    found = bool(select(ctx.scene, flt))
    return _finish(ctx, "exists", text, {"type": "exists", "filter": flt}, _yes_no(found), "yesno", ("yes", "no"))


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


def g_more_than(ctx: GenContext) -> Question | None:
    picked = _two_filters(ctx, differ=True)
    if picked is None:
        return None
    fa, fb = picked
    ta, tb = ref_phrase(fa, many=True), ref_phrase(fb, many=True)
    text = _say(ctx, (
        "Are there more {a} than {b}?", "Does the image have more {a} than {b}?",
        "Are the {a} more numerous than the {b}?", "Is the number of {a} greater than the number of {b}?",
    ), a=ta, b=tb)
    more = len(select(ctx.scene, fa)) > len(select(ctx.scene, fb))
    return _finish(ctx, "more_than", text, {"type": "more_than", "a": fa, "b": fb}, _yes_no(more), "yesno",
                   ("yes", "no"))


def g_all_same(ctx: GenContext) -> Question | None:
    kinds = [k for k, n in Counter(s.shape for s in ctx.scene.shapes).items() if n >= 2]
    if not kinds:
        return None
    shape = ctx.rng.choice(sorted(kinds))
    attr = ctx.rng.choice(("color", "size"))
    word = {"color": "<colour>", "size": "size"}[attr]
    text = _say(ctx, (
        "Are all the {s} the same {w}?", "Do all the {s} share the same {w}?",
        "Is every {one} the same {w}?", "Do the {s} all have one {w}?",
    ), s=ref_phrase({"shape": shape}, many=True), one=shape, w=word)
    values = {getattr(s, attr) for s in select(ctx.scene, {"shape": shape})}
    query = {"type": "all_same", "attr": attr, "filter": {"shape": shape}}
    return _finish(ctx, "all_same", text, query, _yes_no(len(values) == 1), "yesno", ("yes", "no"))


def g_chart_extreme(ctx: GenContext) -> Question | None:
    if ctx.scene.kind != "chart":
        return None
    which = ctx.rng.choice(("max", "min"))
    templates = {
        "max": ("Which bar is the tallest?", "Which bar has the highest value?", "What <colour> is the tallest bar?",
                "Which <colour> belongs to the bar with the largest value?"),
        "min": ("Which bar is the shortest?", "Which bar has the lowest value?", "What <colour> is the shortest bar?",
                "Which <colour> belongs to the bar with the smallest value?"),
    }[which]
    bars = sorted(ctx.scene.bars, key=lambda b: b.value)
    answer = (bars[-1] if which == "max" else bars[0]).color
    distractors = [b.color for b in bars] + list(COLORS)
    return _finish(ctx, "chart_extreme", _say(ctx, templates), {"type": "chart_extreme", "which": which},
                   answer, "color", distractors)


def _two_bars(ctx: GenContext) -> list | None:
    if ctx.scene.kind != "chart":
        return None
    return ctx.rng.sample(list(ctx.scene.bars), 2)


def g_chart_compare(ctx: GenContext) -> Question | None:
    picked = _two_bars(ctx)
    if picked is None:
        return None
    a, b = picked
    which = ctx.rng.choice(("taller", "shorter"))
    text = _say(ctx, (
        "Is the {a} bar {w} than the {b} bar?", "Is the {a} bar {w} than the {b} one?",
        "Compared with the {b} bar, is the {a} bar {w}?",
    ), a=a.color, b=b.color, w=which)
    holds = a.value > b.value if which == "taller" else a.value < b.value
    query = {"type": "chart_compare", "which": which, "a": a.color, "b": b.color}
    return _finish(ctx, "chart_compare", text, query, _yes_no(holds), "yesno", ("yes", "no"))


def g_number_extreme(ctx: GenContext) -> Question | None:
    numbers = _texts(ctx.scene, numbers=True)
    values = [int(t.text) for t in numbers]
    if len(values) < 2 or len(set(values)) != len(values):
        return None
    which = ctx.rng.choice(("max", "min"))
    w = {"max": ("largest", "biggest", "highest"), "min": ("smallest", "lowest")}[which]
    text = _say(ctx, (
        "Which number written in the image is the {w}?", "What is the {w} number in the picture?",
        "Of the numbers written in the image, which is the {w}?",
    ), w=ctx.rng.choice(w))
    answer = max(values) if which == "max" else min(values)
    distractors = [str(v) for v in values] + _near_numbers(ctx.rng, answer, hi=99)
    return _finish(ctx, "number_extreme", text, {"type": "number_extreme", "which": which}, str(answer),
                   "number", distractors)


# ---------------------------------------------------------------------------------------
# Math


def g_count_diff(ctx: GenContext) -> Question | None:
    picked = _two_filters(ctx, differ=True)
    if picked is None:
        return None
    fa, fb = picked
    na, nb = len(select(ctx.scene, fa)), len(select(ctx.scene, fb))
    if na < nb:
        fa, fb, na, nb = fb, fa, nb, na
    ta, tb = ref_phrase(fa, many=True), ref_phrase(fb, many=True)
    text = _say(ctx, (
        "How many more {a} than {b} are there?", "By how many do the {a} outnumber the {b}?",
        "What is the difference between the number of {a} and the number of {b}?",
    ), a=ta, b=tb)
    return _finish(ctx, "count_diff", text, {"type": "count_diff", "a": fa, "b": fb}, str(na - nb), "number",
                   _near_numbers(ctx.rng, na - nb, hi=9))


def g_count_sum(ctx: GenContext) -> Question | None:
    picked = _two_filters(ctx, differ=False)
    if picked is None:
        return None
    fa, fb = picked
    n = len(select(ctx.scene, fa)) + len(select(ctx.scene, fb))
    text = _say(ctx, (
        "How many {a} and {b} are there altogether?", "What is the total number of {a} and {b}?",
        "If you add the number of {a} to the number of {b}, what do you get?",
        "How many shapes are either {a} or {b}?",
    ), a=ref_phrase(fa, many=True), b=ref_phrase(fb, many=True))
    return _finish(ctx, "count_sum", text, {"type": "count_sum", "a": fa, "b": fb}, str(n), "number",
                   _near_numbers(ctx.rng, n, hi=9))


def g_number_sum(ctx: GenContext) -> Question | None:
    numbers = _texts(ctx.scene, numbers=True)
    if len(numbers) < 2:
        return None
    total = sum(int(t.text) for t in numbers)
    text = _say(ctx, (
        "What is the sum of the numbers written in the image?", "Add up all the numbers in the picture. What is the total?",
        "What do the numbers in the image add up to?", "What is the total of the numbers shown?",
    ))
    return _finish(ctx, "number_sum", text, {"type": "number_sum"}, str(total), "number",
                   _near_numbers(ctx.rng, total, hi=198) + [str(total + 10), str(max(0, total - 10))])


def g_number_arith(ctx: GenContext) -> Question | None:
    numbers = _texts(ctx.scene, numbers=True)
    if not numbers:
        return None
    t = ctx.rng.choice(numbers)
    tref = ctx.rng.choice([r for r in _text_refs(ctx.scene, t) if r.get("kind") != "word"])
    value = int(t.text)
    op = ctx.rng.choice(("add", "sub") if value >= 1 else ("add",))
    k = ctx.rng.randint(1, 9) if op == "add" else ctx.rng.randint(1, min(9, value))
    phrase = text_ref_phrase(tref).replace("the text", "the number")
    if op == "add":
        templates = ("What is {p} plus {k}?", "If you add {k} to {p}, what do you get?", "What do you get when {p} is increased by {k}?")
        answer = value + k
    else:
        templates = ("What is {p} minus {k}?", "If you subtract {k} from {p}, what do you get?", "What is left when {k} is taken away from {p}?")
        answer = value - k
    text = _say(ctx, templates, p=phrase, k=str(k))
    query = {"type": "number_arith", "op": op, "k": k, "target": tref}
    return _finish(ctx, "number_arith", text, query, str(answer), "number", _near_numbers(ctx.rng, answer, hi=120))


def g_chart_sum(ctx: GenContext) -> Question | None:
    if ctx.scene.kind != "chart":
        return None
    if ctx.rng.random() < 0.5:
        colors = [b.color for b in ctx.scene.bars]
        text = _say(ctx, (
            "What is the total of all the bar values?", "What do all the bars add up to?",
            "What is the sum of the values of every bar in the chart?",
        ))
    else:
        colors = [b.color for b in ctx.rng.sample(list(ctx.scene.bars), 2)]
        text = _say(ctx, (
            "What is the sum of the {a} bar and the {b} bar?", "Add the values of the {a} and {b} bars.",
            "What do the {a} bar and the {b} bar add up to?",
        ), a=colors[0], b=colors[1])
    total = sum(b.value for b in ctx.scene.bars if b.color in colors)
    everything = len(colors) == len(ctx.scene.bars)
    query = {"type": "chart_total"} if everything else {"type": "chart_sum", "colors": colors}
    return _finish(ctx, "chart_sum", text, query, str(total), "number", _near_numbers(ctx.rng, total, hi=45))


def g_chart_diff(ctx: GenContext) -> Question | None:
    if ctx.scene.kind != "chart":
        return None
    bars = sorted(ctx.scene.bars, key=lambda b: b.value)
    if ctx.rng.random() < 0.4:
        a, b = bars[-1], bars[0]
        text = _say(ctx, (
            "What is the difference between the tallest and the shortest bar?",
            "How much larger is the highest value than the lowest value?",
        ))
        query = {"type": "chart_range"}
    else:
        a, b = ctx.rng.sample(list(ctx.scene.bars), 2)
        if a.value < b.value:
            a, b = b, a
        text = _say(ctx, (
            "How much taller is the {a} bar than the {b} bar?", "What is the difference between the {a} bar and the {b} bar?",
            "By how much does the {a} bar exceed the {b} bar?",
        ), a=a.color, b=b.color)
        query = {"type": "chart_diff", "a": a.color, "b": b.color}
    diff = a.value - b.value
    return _finish(ctx, "chart_diff", text, query, str(diff), "number", _near_numbers(ctx.rng, diff, hi=9))


# ---------------------------------------------------------------------------------------
# Grounding

WHERE_TEMPLATES = (
    "Where is the {r}?", "Where is the {r} located in the image?", "In which part of the image is the {r}?",
    "Where in the picture can you find the {r}?", "Which region of the image contains the {r}?",
)


def g_where(ctx: GenContext) -> Question | None:
    if ctx.scene.kind != "shapes":
        return None
    unique_texts = [t for t in ctx.scene.texts if sum(1 for o in ctx.scene.texts if o.text == t.text) == 1]
    if unique_texts and ctx.rng.random() < 0.25:
        t = ctx.rng.choice(unique_texts)
        phrase = text_name(t)[len("the "):]
        target, region = {"text": t.text}, where(t, ctx.scene)
    else:
        s = _pick_shape(ctx, ctx.scene.shapes)
        ref = _pick_ref(ctx, s) if s else None
        if ref is None:
            return None
        phrase, target, region = ref_phrase(ref), ref, where(s, ctx.scene)
    text = _say(ctx, WHERE_TEMPLATES, r=phrase)
    return _finish(ctx, "where", text, {"type": "where", "target": target}, region, "region", REGIONS)


def g_which_at(ctx: GenContext) -> Question | None:
    candidates = [s for s in ctx.scene.shapes if _unique_name(ctx.scene, s)
                  and sum(1 for o in (*ctx.scene.shapes, *ctx.scene.texts) if where(o, ctx.scene) == where(s, ctx.scene)) == 1]
    s = _pick_shape(ctx, candidates)
    if s is None:
        return None
    region = where(s, ctx.scene)
    text = _say(ctx, (
        "Which shape is in the {g}?", "What is in the {g} of the image?", "What shape can be seen in the {g}?",
        "Describe the shape in the {g}.", "What object is located in the {g} of the picture?",
    ), g=region)
    return _finish(ctx, "which_at", text, {"type": "which_at", "region": region}, shape_name(s), "object",
                   _object_distractors(ctx, s), aliases=_aliases(ctx, s))


def g_chart_at(ctx: GenContext) -> Question | None:
    if ctx.scene.kind != "chart":
        return None
    n = len(ctx.scene.bars)
    pos = ctx.rng.randrange(n)
    side = ctx.rng.choice(("left", "right"))
    index = pos if side == "left" else n - 1 - pos
    text = _say(ctx, (
        "What <colour> is the {o} bar from the {s}?", "Counting from the {s}, what <colour> is the {o} bar?",
        "Which <colour> does the {o} bar from the {s} have?",
    ), o=ORDINALS[pos], s=side)
    distractors = [b.color for b in ctx.scene.bars] + list(COLORS)
    query = {"type": "chart_at", "position": pos + 1, "from": side}
    return _finish(ctx, "chart_at", text, query, ctx.scene.bars[index].color, "color", distractors)


def g_chart_position(ctx: GenContext) -> Question | None:
    if ctx.scene.kind != "chart":
        return None
    i = ctx.rng.randrange(len(ctx.scene.bars))
    color = ctx.scene.bars[i].color
    text = _say(ctx, (
        "Counting from the left, which position does the {c} bar have?",
        "Where is the {c} bar, counting from the left?", "Which bar from the left is the {c} one?",
    ), c=color)
    distractors = list(ORDINALS[: len(ctx.scene.bars) + 1])
    return _finish(ctx, "chart_position", text, {"type": "chart_position", "color": color}, ORDINALS[i],
                   "ordinal", distractors)


# ---------------------------------------------------------------------------------------
# Registry and sampling

Generator = Callable[[GenContext], "Question | None"]

QTYPES: dict[str, tuple[str, Generator]] = {
    "scene_type": ("coarse_perception", g_scene_type),
    "background_color": ("coarse_perception", g_background_color),
    "background_pattern": ("coarse_perception", g_background_pattern),
    "has_text": ("coarse_perception", g_has_text),
    "dominant_color": ("coarse_perception", g_dominant_color),
    "attr": ("fine_grained_perception", g_attr),
    "count": ("fine_grained_perception", g_count),
    "read_text": ("fine_grained_perception", g_read_text),
    "text_color": ("fine_grained_perception", g_text_color),
    "chart_value": ("fine_grained_perception", g_chart_value),
    "relation": ("instance_reasoning", g_relation),
    "neighbor": ("instance_reasoning", g_neighbor),
    "neighbor_attr": ("instance_reasoning", g_neighbor_attr),
    "compare_size": ("instance_reasoning", g_compare_size),
    "same_attr": ("instance_reasoning", g_same_attr),
    "remove_count": ("logical_reasoning", g_remove_count),
    "exists": ("logical_reasoning", g_exists),
    "more_than": ("logical_reasoning", g_more_than),
    "all_same": ("logical_reasoning", g_all_same),
    "chart_extreme": ("logical_reasoning", g_chart_extreme),
    "chart_compare": ("logical_reasoning", g_chart_compare),
    "number_extreme": ("logical_reasoning", g_number_extreme),
    "count_diff": ("math", g_count_diff),
    "count_sum": ("math", g_count_sum),
    "number_sum": ("math", g_number_sum),
    "number_arith": ("math", g_number_arith),
    "chart_sum": ("math", g_chart_sum),
    "chart_diff": ("math", g_chart_diff),
    "where": ("grounding", g_where),
    "which_at": ("grounding", g_which_at),
    "chart_at": ("grounding", g_chart_at),
    "chart_position": ("grounding", g_chart_position),
}


def generate_questions(
    scene: Scene, rng: random.Random, n: int, *, mc_prob: float = 0.5,
    forbidden: frozenset[Pair] = frozenset(), prefer: frozenset[Pair] = frozenset(),
    qtypes: Sequence[str] | None = None,
) -> list[Question]:
    """Up to `n` distinct questions about `scene`, spread over the categories."""
    allowed = list(qtypes) if qtypes is not None else list(QTYPES)
    by_cat: dict[str, list[str]] = {}
    for name in allowed:
        by_cat.setdefault(QTYPES[name][0], []).append(name)
    cats = [c for c in CATEGORIES if c in by_cat]
    rng.shuffle(cats)
    out: list[Question] = []
    seen: set[str] = set()
    attempts = 0
    while len(out) < n and attempts < n * 12 and cats:
        cat = cats[attempts % len(cats)]
        attempts += 1
        names = list(by_cat[cat])
        rng.shuffle(names)
        for name in names:
            ctx = GenContext(scene, rng, mc=rng.random() < mc_prob, forbidden=forbidden, prefer=prefer)
            q = QTYPES[name][1](ctx)
            if q is not None and q.text not in seen:
                seen.add(q.text)
                out.append(q)
                break
    return out
