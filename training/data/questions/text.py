"""Questions about what is written: whether there is text, what it says, its colour, and
arithmetic on the numbers written in the image."""

from __future__ import annotations

from training.data.language import (
    cap,
    listing,
    reading_order,
    text_name,
    text_ref_name,
    text_ref_phrase,
    where,
)
from training.data.questions.core import GenContext, QueryRules, Question, QuestionTypes, yes_no
from training.data.questions.refs import near_numbers, resolve_text
from training.data.scene import Scene, TextMark
from training.data.vocabulary import TEXT_COLORS, WORDS, YES_NO

QUESTION_TYPES = QuestionTypes()


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


@QUESTION_TYPES.add("has_text", "coarse_perception", scene="shapes")
def g_has_text(ctx: GenContext) -> Question:
    text = ctx.say((
        "Is there any writing in the image?", "Does the image contain any text?",
        "Are there any words or numbers written in the picture?", "Is anything written in this image?",
    ))
    return ctx.finish(text, {"type": "has_text"}, yes_no(bool(ctx.scene.texts)), "yesno",
                       YES_NO)


@QUESTION_TYPES.add("read_text", "fine_grained_perception")
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
    text = ctx.say(templates, r=tref.get("region", ""), c=tref.get("color", ""))
    if t.is_number:
        distractors = near_numbers(ctx.rng, int(t.text), hi=99) + [str(ctx.rng.randint(0, 99))]
    else:
        distractors = list(WORDS)
    return ctx.finish(text, {"type": "read_text", "target": tref}, t.word, "text", distractors)


@QUESTION_TYPES.add("text_color", "fine_grained_perception")
def g_text_color(ctx: GenContext) -> Question | None:
    unique = [t for t in ctx.scene.texts if sum(1 for o in ctx.scene.texts if o.text == t.text) == 1]
    if not unique:
        return None
    t = ctx.rng.choice(unique)
    text = ctx.say((
        "What <colour> is {n} written in?", "In which <colour> is {n} written?",
        "What is the <colour> of {n}?", "Which <colour> was used to write {n}?",
    ), n=text_name(t))
    return ctx.finish(text, {"type": "text_color", "text": t.text}, t.color, "color",
                       list(TEXT_COLORS))


@QUESTION_TYPES.add("number_extreme", "logical_reasoning")
def g_number_extreme(ctx: GenContext) -> Question | None:
    numbers = _texts(ctx.scene, numbers=True)
    values = [int(t.text) for t in numbers]
    if len(values) < 2 or len(set(values)) != len(values):
        return None
    which = ctx.rng.choice(("max", "min"))
    w = {"max": ("largest", "biggest", "highest"), "min": ("smallest", "lowest")}[which]
    text = ctx.say((
        "Which number written in the image is the {w}?", "What is the {w} number in the picture?",
        "Of the numbers written in the image, which is the {w}?",
    ), w=ctx.rng.choice(w))
    answer = max(values) if which == "max" else min(values)
    distractors = [str(v) for v in values] + near_numbers(ctx.rng, answer, hi=99)
    return ctx.finish(text, {"type": "number_extreme", "which": which}, str(answer),
                       "number", distractors)


@QUESTION_TYPES.add("number_sum", "math")
def g_number_sum(ctx: GenContext) -> Question | None:
    numbers = _texts(ctx.scene, numbers=True)
    if len(numbers) < 2:
        return None
    total = sum(int(t.text) for t in numbers)
    text = ctx.say((
        "What is the sum of the numbers written in the image?", "Add up all the numbers in the picture. What is the total?",
        "What do the numbers in the image add up to?", "What is the total of the numbers shown?",
    ))
    return ctx.finish(text, {"type": "number_sum"}, str(total), "number",
                       near_numbers(ctx.rng, total, hi=198) + [str(total + 10), str(max(0, total - 10))])


@QUESTION_TYPES.add("number_arith", "math")
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
    text = ctx.say(templates, p=phrase, k=str(k))
    query = {"type": "number_arith", "op": op, "k": k, "target": tref}
    return ctx.finish(text, query, str(answer), "number", near_numbers(ctx.rng, answer, hi=120))


# ---------------------------------------------------------------------------------------
# Targets


def _marks(scene: Scene) -> list[TextMark]:
    """Written marks in reading order."""
    return [o for o in reading_order(scene) if isinstance(o, TextMark)]


def _numbers(scene: Scene) -> list[TextMark]:
    return [t for t in _marks(scene) if t.is_number]


def _has_text_statements(scene: Scene, q: dict) -> list[str]:
    if not scene.texts:
        return ["There is no text in the image."]
    return [f"Text is written in the image: {listing(text_name(o) for o in _marks(scene))}."]


def _has_text_steps(scene: Scene, question: Question) -> list[str]:
    marks = _marks(scene)
    if not marks:
        return ["The description mentions no words or numbers."]
    return [f"The description mentions {listing(text_name(m) for m in marks)}.", "So there is text."]


def _read_text_steps(scene: Scene, question: Question) -> list[str]:
    m = resolve_text(scene, question.query["target"])
    return [f"The description says {text_name(m)} is written in {m.color} in the {where(m, scene)}.",
            f"So the text reads {m.word}."]


def _text_color_statements(scene: Scene, q: dict) -> list[str]:
    mark = resolve_text(scene, {"text": q["text"]})
    return [f"{cap(text_ref_name(mark.text))} is written in {mark.color}."]


def _text_color_steps(scene: Scene, question: Question) -> list[str]:
    m = resolve_text(scene, {"text": question.query["text"]})
    return [f"The description says {text_name(m)} is written in {m.color}."]


def _number_list_steps(scene: Scene, question: Question) -> list[str]:
    q = question.query
    values = [int(m.text) for m in _numbers(scene)]
    steps = [f"The description mentions the numbers {listing(str(v) for v in values)}."]
    if q["type"] == "number_sum":
        steps.append(f"{' + '.join(str(v) for v in values)} = {sum(values)}.")
    else:
        steps.append(f"The {'largest' if q['which'] == 'max' else 'smallest'} is "
                     f"{max(values) if q['which'] == 'max' else min(values)}.")
    return steps


def _arith_focus(q: dict) -> str:
    return text_ref_phrase(q["target"]).replace("the text", "the number")


def _arith_steps(scene: Scene, question: Question) -> list[str]:
    q = question.query
    m = resolve_text(scene, q["target"])
    op = "+" if q["op"] == "add" else "-"
    value = int(m.text) + q["k"] if op == "+" else int(m.text) - q["k"]
    return [f"The description says {text_name(m)} is written in {m.color} in the {where(m, scene)}.",
            f"{m.text} {op} {q['k']} = {value}."]


def _target_mark(scene: Scene, q: dict) -> list[TextMark]:
    return [resolve_text(scene, q["target"])]


NUMBER_LIST = QueryRules(
    focus=lambda q: "the numbers written in the image",
    statements=lambda scene, q: [f"The numbers written in the image are {listing(t.text for t in _numbers(scene))}."],
    steps=_number_list_steps,
    relevant=lambda scene, q: _numbers(scene),
)

QUERY_RULES = {
    "has_text": QueryRules(
        focus=lambda q: "any text written in the image",
        statements=_has_text_statements,
        steps=_has_text_steps,
        relevant=lambda scene, q: _marks(scene),
    ),
    "read_text": QueryRules(
        focus=lambda q: text_ref_phrase(q["target"]),
        statements=lambda scene, q: [
            f"{cap(text_ref_phrase(q['target']))} says {resolve_text(scene, q['target']).word}."],
        steps=_read_text_steps,
        relevant=_target_mark,
    ),
    "text_color": QueryRules(
        focus=lambda q: f"the colour of {text_ref_name(q['text'])}",
        statements=_text_color_statements,
        steps=_text_color_steps,
        relevant=lambda scene, q: [resolve_text(scene, {"text": q["text"]})],
    ),
    "number_extreme": NUMBER_LIST,
    "number_sum": NUMBER_LIST,
    "number_arith": QueryRules(
        focus=_arith_focus,
        # worded as read_text's statement: the same focus can come from either type
        statements=lambda scene, q: [f"{cap(_arith_focus(q))} says {resolve_text(scene, q['target']).text}."],
        steps=_arith_steps,
        relevant=_target_mark,
    ),
}
