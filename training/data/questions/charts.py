"""Questions about bar charts: a bar's value, the tallest or shortest bar, comparisons,
sums and differences of values, which bar is where."""

from __future__ import annotations

from collections.abc import Callable

from training.data.language import cap, listing
from training.data.questions.core import GenContext, QueryRules, Question, QuestionTypes, yes_no
from training.data.questions.refs import near_numbers
from training.data.scene import Bar, Scene
from training.data.vocabulary import COLORS, ORDINALS, YES_NO

QUESTION_TYPES = QuestionTypes()


@QUESTION_TYPES.add("chart_value", "fine_grained_perception", scene="chart")
def g_chart_value(ctx: GenContext) -> Question:
    bar = ctx.rng.choice(ctx.scene.bars)
    text = ctx.say((
        "What is the value of the {c} bar?", "How high is the {c} bar?", "What number does the {c} bar show?",
        "Read the value of the {c} bar.", "What value is shown for the {c} bar?",
    ), c=bar.color)
    return ctx.finish(text, {"type": "chart_value", "color": bar.color}, str(bar.value),
                       "number", [str(v) for v in range(1, 10)])


@QUESTION_TYPES.add("chart_extreme", "logical_reasoning", scene="chart")
def g_chart_extreme(ctx: GenContext) -> Question:
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
    return ctx.finish(ctx.say(templates), {"type": "chart_extreme", "which": which},
                      answer, "color", distractors)


@QUESTION_TYPES.add("chart_compare", "logical_reasoning", scene="chart")
def g_chart_compare(ctx: GenContext) -> Question:
    a, b = ctx.rng.sample(list(ctx.scene.bars), 2)
    which = ctx.rng.choice(("taller", "shorter"))
    text = ctx.say((
        "Is the {a} bar {w} than the {b} bar?", "Is the {a} bar {w} than the {b} one?",
        "Compared with the {b} bar, is the {a} bar {w}?",
    ), a=a.color, b=b.color, w=which)
    holds = a.value > b.value if which == "taller" else a.value < b.value
    query = {"type": "chart_compare", "which": which, "a": a.color, "b": b.color}
    return ctx.finish(text, query, yes_no(holds), "yesno", YES_NO)


@QUESTION_TYPES.add("chart_sum", "math", scene="chart")  # asks query types chart_sum and chart_total
def g_chart_sum(ctx: GenContext) -> Question:
    if ctx.rng.random() < 0.5:
        colors = [b.color for b in ctx.scene.bars]
        text = ctx.say((
            "What is the total of all the bar values?", "What do all the bars add up to?",
            "What is the sum of the values of every bar in the chart?",
        ))
    else:
        colors = [b.color for b in ctx.rng.sample(list(ctx.scene.bars), 2)]
        text = ctx.say((
            "What is the sum of the {a} bar and the {b} bar?", "Add the values of the {a} and {b} bars.",
            "What do the {a} bar and the {b} bar add up to?",
        ), a=colors[0], b=colors[1])
    total = sum(b.value for b in ctx.scene.bars if b.color in colors)
    everything = len(colors) == len(ctx.scene.bars)
    query = {"type": "chart_total"} if everything else {"type": "chart_sum", "colors": colors}
    return ctx.finish(text, query, str(total), "number", near_numbers(ctx.rng, total, hi=45))


@QUESTION_TYPES.add("chart_diff", "math", scene="chart")  # asks query types chart_diff and chart_range
def g_chart_diff(ctx: GenContext) -> Question:
    bars = sorted(ctx.scene.bars, key=lambda b: b.value)
    if ctx.rng.random() < 0.4:
        a, b = bars[-1], bars[0]
        text = ctx.say((
            "What is the difference between the tallest and the shortest bar?",
            "How much larger is the highest value than the lowest value?",
        ))
        query = {"type": "chart_range"}
    else:
        a, b = ctx.rng.sample(list(ctx.scene.bars), 2)
        if a.value < b.value:
            a, b = b, a
        text = ctx.say((
            "How much taller is the {a} bar than the {b} bar?", "What is the difference between the {a} bar and the {b} bar?",
            "By how much does the {a} bar exceed the {b} bar?",
        ), a=a.color, b=b.color)
        query = {"type": "chart_diff", "a": a.color, "b": b.color}
    diff = a.value - b.value
    return ctx.finish(text, query, str(diff), "number", near_numbers(ctx.rng, diff, hi=9))


@QUESTION_TYPES.add("chart_at", "grounding", scene="chart")
def g_chart_at(ctx: GenContext) -> Question:
    n = len(ctx.scene.bars)
    pos = ctx.rng.randrange(n)
    side = ctx.rng.choice(("left", "right"))
    index = pos if side == "left" else n - 1 - pos
    text = ctx.say((
        "What <colour> is the {o} bar from the {s}?", "Counting from the {s}, what <colour> is the {o} bar?",
        "Which <colour> does the {o} bar from the {s} have?",
    ), o=ORDINALS[pos], s=side)
    distractors = [b.color for b in ctx.scene.bars] + list(COLORS)
    query = {"type": "chart_at", "position": pos + 1, "from": side}
    return ctx.finish(text, query, ctx.scene.bars[index].color, "color", distractors)


@QUESTION_TYPES.add("chart_position", "grounding", scene="chart")
def g_chart_position(ctx: GenContext) -> Question:
    i = ctx.rng.randrange(len(ctx.scene.bars))
    color = ctx.scene.bars[i].color
    text = ctx.say((
        "Counting from the left, which position does the {c} bar have?",
        "Where is the {c} bar, counting from the left?", "Which bar from the left is the {c} one?",
    ), c=color)
    distractors = list(ORDINALS[: len(ctx.scene.bars) + 1])
    return ctx.finish(text, {"type": "chart_position", "color": color}, ORDINALS[i],
                       "ordinal", distractors)


# ---------------------------------------------------------------------------------------
# Targets


def _bar(scene: Scene, color: str) -> Bar:
    return next(b for b in scene.bars if b.color == color)


def _bars_cited(scene: Scene) -> str:
    parts = [f"{b.color} with the value {b.value}" for b in scene.bars]
    return f"The description lists the bars from left to right: {listing(parts)}."


def _values_of(scene: Scene, colors: list[str]) -> list[str]:
    parts = [f"the {c} bar has the value {_bar(scene, c).value}" for c in colors]
    return [cap(listing(parts)) + "."]


def _extreme(scene: Scene, q: dict) -> list[str]:
    bars = list(scene.bars)
    best = max(bars, key=lambda b: b.value) if q["which"] == "max" else min(bars, key=lambda b: b.value)
    word = "highest" if q["which"] == "max" else "lowest"
    return [f"The {word} value is {best.value}, which belongs to the {best.color} bar."]


def _range(scene: Scene, q: dict) -> list[str]:
    hi, lo = max(b.value for b in scene.bars), min(b.value for b in scene.bars)
    return [f"The highest value is {hi} and the lowest is {lo}.", f"{hi} - {lo} = {hi - lo}."]


def _sum(scene: Scene, q: dict) -> list[str]:
    if q["type"] == "chart_total":
        values = [b.value for b in scene.bars]
    else:
        values = [_bar(scene, c).value for c in q["colors"]]
    return [f"{' + '.join(str(v) for v in values)} = {sum(values)}."]


def _compare(scene: Scene, q: dict) -> list[str]:
    a, b = _bar(scene, q["a"]), _bar(scene, q["b"])
    holds = a.value > b.value if q["which"] == "taller" else a.value < b.value
    return [f"The {a.color} bar is {a.value} and the {b.color} bar is {b.value}.",
            f"So the {a.color} bar is {'' if holds else 'not '}{q['which']} than the {b.color} bar."]


def _diff(scene: Scene, q: dict) -> list[str]:
    a, b = _bar(scene, q["a"]), _bar(scene, q["b"])
    return [f"The {a.color} bar is {a.value} and the {b.color} bar is {b.value}.",
            f"{a.value} - {b.value} = {a.value - b.value}."]


def _at(scene: Scene, q: dict) -> list[str]:
    bars = list(scene.bars)
    n, pos = len(bars), q["position"]
    if q["from"] == "left":
        return [f"The {ORDINALS[pos - 1]} bar from the left is {bars[pos - 1].color}."]
    index = n - pos
    return [f"There are {n} bars, so the {ORDINALS[pos - 1]} from the right is the "
            f"{ORDINALS[index]} from the left.", f"That bar is {bars[index].color}."]


def _position(scene: Scene, q: dict) -> list[str]:
    i = next(k for k, b in enumerate(scene.bars) if b.color == q["color"])
    return [f"The {q['color']} bar is number {i + 1} from the left, the {ORDINALS[i]}."]


def _rules(focus: Callable[[dict], str], statements: Callable[[Scene, dict], list[str]],
           compute: Callable[[Scene, dict], list[str]]) -> QueryRules:
    """Chart traces cite every bar from the description, then compute."""
    return QueryRules(focus=focus, statements=statements,
                      steps=lambda scene, question: [_bars_cited(scene), *compute(scene, question.query)])


def _all_values(scene: Scene, q: dict) -> list[str]:
    return [f"The bars have these values: {listing(f'{b.color} {b.value}' for b in scene.bars)}."]


def _order(scene: Scene, q: dict) -> list[str]:
    return [f"From left to right, the bars are {listing(b.color for b in scene.bars)}."]


def _all_bars(q: dict) -> str:
    return "the values of all the bars"


def _two_bars_focus(q: dict) -> str:
    return f"the values of the {q['a']} and {q['b']} bars"


def _pair_values(scene: Scene, q: dict) -> list[str]:
    return _values_of(scene, [q["a"], q["b"]])


def _order_focus(q: dict) -> str:
    return "the order of the bars from left to right"


QUERY_RULES = {
    "chart_value": QueryRules(
        focus=lambda q: f"the value of the {q['color']} bar",
        statements=lambda scene, q: [f"The {q['color']} bar has the value {_bar(scene, q['color']).value}."],
        steps=lambda scene, question: [
            _bars_cited(scene),
            f"The {question.query['color']} bar has the value {_bar(scene, question.query['color']).value}."],
    ),
    "chart_extreme": _rules(_all_bars, _all_values, _extreme),
    "chart_range": _rules(_all_bars, _all_values, _range),
    "chart_total": _rules(_all_bars, _all_values, _sum),
    "chart_sum": _rules(lambda q: f"the values of the {' and '.join(q['colors'])} bars",
                        lambda scene, q: _values_of(scene, q["colors"]), _sum),
    "chart_compare": _rules(_two_bars_focus, _pair_values, _compare),
    "chart_diff": _rules(_two_bars_focus, _pair_values, _diff),
    "chart_at": _rules(_order_focus, _order, _at),
    "chart_position": _rules(_order_focus, _order, _position),
}
