"""Referring to scene items: picking unambiguous references while generating questions,
and resolving them again while building targets.

A *ref* such as {"color": "red", "shape": "circle"} is only used when it picks out exactly
one shape; a question may never name a held-out colour-shape pair outside the held-out
split (`GenContext.forbidden`).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from itertools import combinations

from training.data.language import ref_phrase, select, shape_name, where
from training.data.questions.core import GenContext
from training.data.scene import Scene, Shape, TextMark
from training.data.vocabulary import COLORS, SHAPES, SIZES

# ---------------------------------------------------------------------------------------
# Picking (generators)


def mentions_ok(ctx: GenContext, ref: dict) -> bool:
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


def pick_ref(ctx: GenContext, target: Shape, exclude: Sequence[str] = ()) -> dict | None:
    refs = [r for r in unique_refs(ctx.scene, target, exclude) if mentions_ok(ctx, r)]
    if not refs:
        return None
    shortest = [r for r in refs if len(r) == len(refs[0])]
    return dict(ctx.rng.choice(shortest if ctx.rng.random() < 0.6 else refs))


def pick_shape(ctx: GenContext, shapes: Sequence[Shape]) -> Shape | None:
    """A shape to ask about, preferring the split's preferred pairs when the scene has them."""
    if not shapes:
        return None
    preferred = [s for s in shapes if (s.color, s.shape) in ctx.prefer]
    if preferred and ctx.rng.random() < 0.75:
        return ctx.rng.choice(preferred)
    return ctx.rng.choice(list(shapes))


def two_refs(ctx: GenContext, exclude: Sequence[str] = ()) -> tuple[Shape, dict, Shape, dict] | None:
    """Two different shapes, each with a unique ref (not using the `exclude`d attributes)."""
    if len(ctx.scene.shapes) < 2:
        return None
    a = pick_shape(ctx, ctx.scene.shapes)
    b = ctx.rng.choice([s for s in ctx.scene.shapes if s is not a])
    ra, rb = pick_ref(ctx, a, exclude), pick_ref(ctx, b, exclude)
    if ra is None or rb is None:
        return None
    return a, ra, b, rb


def near_numbers(rng: random.Random, n: int, lo: int = 0, hi: int = 200) -> list[str]:
    """Wrong numbers close to `n` (distractors for counts and sums)."""
    near = [n + d for d in (-3, -2, -1, 1, 2, 3) if lo <= n + d <= hi]
    rng.shuffle(near)
    return [str(v) for v in near]


def object_distractors(ctx: GenContext, answer: Shape) -> list[str]:
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


def aliases_of(ctx: GenContext, s: Shape) -> list[str]:
    """Every unique way to name `s` in its scene (equally right open answers)."""
    return [ref_phrase(r) for r in unique_refs(ctx.scene, s)]


# ---------------------------------------------------------------------------------------
# Resolving (targets)


def resolve(scene: Scene, ref: dict) -> Shape:
    found = select(scene, ref)
    if len(found) != 1:
        raise ValueError(f"ref {ref} matches {len(found)} shapes")
    return found[0]


def target_shape(scene: Scene, q: dict) -> list[Shape]:
    """The shape `q["target"]` names (what a target query is about)."""
    return [resolve(scene, q["target"])]


def pair_shapes(scene: Scene, q: dict) -> list[Shape]:
    """The shapes `q["a"]` and `q["b"]` name (what a two-shape query is about)."""
    return [resolve(scene, q["a"]), resolve(scene, q["b"])]


def filter_shapes(scene: Scene, q: dict) -> list[Shape]:
    """The shapes `q["filter"]` selects (what a filter query is about)."""
    return select(scene, q["filter"])


def resolve_text(scene: Scene, tref: dict) -> TextMark:
    found = [t for t in scene.texts if
             ("region" not in tref or where(t, scene) == tref["region"])
             and ("color" not in tref or t.color == tref["color"])
             and ("kind" not in tref or t.is_number == (tref["kind"] == "number"))
             and ("text" not in tref or t.text == tref["text"])]
    if len(found) != 1:
        raise ValueError(f"text ref {tref} matches {len(found)} marks")
    return found[0]
