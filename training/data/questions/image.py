"""Questions about the whole image: what kind of image it is, its background."""

from __future__ import annotations

from training.data.questions.core import GenContext, QueryRules, Question, QuestionTypes
from training.data.scene import Scene
from training.data.vocabulary import BACKGROUNDS, PATTERN_CHOICES, PATTERN_PHRASE, SCENE_TYPES

QUESTION_TYPES = QuestionTypes()


def _kind(scene: Scene) -> str:
    return "a bar chart" if scene.kind == "chart" else "a picture of shapes"


@QUESTION_TYPES.add("scene_type", "coarse_perception")
def g_scene_type(ctx: GenContext) -> Question:
    text = ctx.say((
        "What kind of image is this?", "What type of picture is shown?",
        "Which best describes this image?", "What sort of image are you looking at?",
        "How would you classify this image?",
    ))
    return ctx.finish(text, {"type": "scene_type"}, _kind(ctx.scene), "scene_type", SCENE_TYPES)


@QUESTION_TYPES.add("background_color", "coarse_perception")
def g_background_color(ctx: GenContext) -> Question:
    what = "chart" if ctx.scene.kind == "chart" else "shapes"
    text = ctx.say((
        "What <colour> is the background?", "What is the background <colour> of this image?",
        "Which <colour> fills the background?", f"On what <colour> of background are the {what} drawn?",
        "Name the <colour> of the background.",
    ))
    return ctx.finish(text, {"type": "background_color"}, ctx.scene.background, "background", list(BACKGROUNDS))


@QUESTION_TYPES.add("background_pattern", "coarse_perception", scene="shapes")
def g_background_pattern(ctx: GenContext) -> Question:
    text = ctx.say((
        "What pattern does the background have?", "How is the background decorated?",
        "Which pattern can be seen on the background?", "What kind of background does the picture have?",
    ))
    return ctx.finish(text, {"type": "background_pattern"}, ctx.scene.pattern, "pattern", PATTERN_CHOICES)


PATTERN_FACT = {"plain": "The background is plain.", "striped": "The background has stripes.",
                "dotted": "The background has dots.", "gradient": "The background fades in tone.",
                "mottled": "The background is mottled."}

QUERY_RULES = {
    "scene_type": QueryRules(
        focus=lambda q: "what kind of image this is",
        statements=lambda scene, q: [f"This image is {_kind(scene)}."],
        steps=lambda scene, q: [f"The description says the image is {_kind(scene)}."],
    ),
    "background_color": QueryRules(
        focus=lambda q: "the colour of the background",
        statements=lambda scene, q: [f"The background is {scene.background}."],
        steps=lambda scene, q: [f"The description says the background is {scene.background}."],
    ),
    "background_pattern": QueryRules(
        focus=lambda q: "the pattern of the background",
        statements=lambda scene, q: [PATTERN_FACT[scene.pattern]],
        steps=lambda scene, q: [
            f"The description mentions a {PATTERN_PHRASE[scene.pattern].format(bg=scene.background)}.",
            f"So the pattern is {scene.pattern}."],
    ),
}
