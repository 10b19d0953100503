"""Question generators over a scene graph, in MMStar-like categories: the registry.

Every question carries a structured `query` (JSON) next to its text: the answer is
computed from the scene graph through that query, the targets (focus, statements,
traces) are built from it, and the tests re-derive every answer from it with their own
checker. Referring expressions are only used when they pick out exactly one object;
multiple-choice distractors are drawn from values that are checked to be wrong.

Phrasing varies (several templates per type, "colour"/"color", varied referring
expressions) so that a model cannot answer by memorising templates.

One module per question family, each with its generators and target rules (core.py says
what a family defines):

    image       scene_type, background_color, background_pattern
    attributes  attr, dominant_color, compare_size, same_attr, all_same
    counting    count, remove_count, exists, more_than, count_diff, count_sum
    text        has_text, read_text, text_color, number_extreme, number_sum, number_arith
    charts      chart_value, chart_extreme, chart_compare, chart_sum, chart_diff, chart_at,
                chart_position
    position    relation, neighbor, neighbor_attr, where, which_at
    everyday    is_there, absent, verify, name_color, name_shape, how_many, what_word, side,
                relative (plainly worded; the only types asked about the everyday layouts)
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import training.data.questions.attributes as attributes
import training.data.questions.charts as charts
import training.data.questions.counting as counting
import training.data.questions.everyday as everyday
import training.data.questions.image as image
import training.data.questions.position as position
import training.data.questions.text as text
from training.data.questions.core import GenContext, Pair, QueryRules, Question, QuestionType
from training.data.scene import Scene

CATEGORIES = (
    "coarse_perception",
    "fine_grained_perception",
    "instance_reasoning",
    "logical_reasoning",
    "math",
    "grounding",
)
FAMILIES = (image, attributes, counting, text, charts, position, everyday)

# The order question types are tried in: the sampler shuffles each category's types from it
# with the dataset's RNG, so a dataset is a pure function of its seed and this order (this is
# the order the shipped default bundle's data was generated with). A new type changes what
# every seed generates, as a new word in the vocabulary does.
SAMPLING_ORDER = (
    "scene_type", "background_color", "background_pattern", "has_text", "dominant_color",
    "attr", "count", "read_text", "text_color", "chart_value",
    "relation", "neighbor", "neighbor_attr", "compare_size", "same_attr",
    "remove_count", "exists", "more_than", "all_same", "chart_extreme", "chart_compare", "number_extreme",
    "count_diff", "count_sum", "number_sum", "number_arith", "chart_sum", "chart_diff",
    "where", "which_at", "chart_at", "chart_position",
    "is_there", "absent", "verify", "name_color", "name_shape", "how_many", "what_word", "side", "relative",
)
# What is asked about a picture with an everyday layout (one shape, a few placed freely, a
# sign): grid relations such as "directly above" need the grid, so only these.
EVERYDAY_TYPES = ("is_there", "absent", "verify", "name_color", "name_shape", "how_many", "what_word", "side",
                  "relative")


def _collect() -> tuple[dict[str, QuestionType], dict[str, QueryRules]]:
    types = {qt.name: qt for family in FAMILIES for qt in family.QUESTION_TYPES}
    rules = {name: r for family in FAMILIES for name, r in family.QUERY_RULES.items()}
    if sorted(types) != sorted(SAMPLING_ORDER):
        raise RuntimeError(f"SAMPLING_ORDER and the families' question types differ: "
                           f"{sorted(set(types) ^ set(SAMPLING_ORDER))}")
    for qt in types.values():
        if qt.category not in CATEGORIES:
            raise RuntimeError(f"question type {qt.name!r} has an unknown category {qt.category!r}")
    return {name: types[name] for name in SAMPLING_ORDER}, rules


QTYPES, QUERY_RULES = _collect()  # name -> QuestionType; query type -> QueryRules


def generate_questions(
    scene: Scene, rng: random.Random, n: int, *, mc_prob: float = 0.5,
    forbidden: frozenset[Pair] = frozenset(), prefer: frozenset[Pair] = frozenset(),
    qtypes: Sequence[str] | None = None, by_type: bool = False,
) -> list[Question]:
    """Up to `n` distinct questions about `scene`, spread over the categories (`by_type`:
    over the question types, each its own group)."""
    allowed = list(qtypes) if qtypes is not None else list(QTYPES)
    by_cat: dict[str, list[str]] = {}
    for name in allowed:
        by_cat.setdefault(name if by_type else QTYPES[name].category, []).append(name)
    cats = list(by_cat) if by_type else [c for c in CATEGORIES if c in by_cat]
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
            qt = QTYPES[name]
            ctx = GenContext(scene, rng, mc=rng.random() < mc_prob, forbidden=forbidden, prefer=prefer,
                             qtype=name, category=qt.category)
            q = qt.ask(ctx)
            if q is not None and q.text not in seen:
                seen.add(q.text)
                out.append(q)
                break
    return out
