"""What every question family defines: questions, their generators and their target rules.

A family module (image, attributes, counting, text, charts, position) holds, for each of
its question types, the generator (scene -> a `Question` with a structured `query`, or
None when the scene cannot support one) and, for each query type its generators emit,
the rules that build the training targets from the scene graph (`QueryRules`). Its
generators register in its `QUESTION_TYPES` (`@QUESTION_TYPES.add(name, category)`), its
rules are its `QUERY_RULES`; `registry.py` collects the families.

Adding a question type: write its generator (registered) and its rules in the family it
belongs to (or a new family module) and add its name to `registry.SAMPLING_ORDER`.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from training.data.scene import Scene, Shape, TextMark
from training.data.vocabulary import COLOUR_SPELLINGS

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
    """What a generator asks about and draws from; `say` words a question, `finish` makes it."""

    scene: Scene
    rng: random.Random
    mc: bool = False
    forbidden: frozenset[Pair] = frozenset()  # colour-shape pairs never to mention
    prefer: frozenset[Pair] = frozenset()  # pairs to ask about when the scene has them
    n_options: int = 4
    qtype: str = ""  # the question type being generated, and its category (set by the registry)
    category: str = ""

    def say(self, templates: Sequence[str], **kw: str) -> str:
        """One of `templates`, filled in, with `<colour>` spelled either way, typed as people
        type (`casual`)."""
        text = self.rng.choice(templates).format(**kw)
        spelling = self.rng.choice(COLOUR_SPELLINGS)
        return casual(self.rng, text.replace("<colour>", spelling))

    def finish(self, text: str, query: dict, answer: str, kind: str, distractors: Sequence[str],
               aliases: Sequence[str] = ()) -> Question:
        """The question, as multiple choice (answer + checked-wrong distractors) when asked for."""
        wrong = [d for d in dict.fromkeys(distractors) if d != answer and d not in aliases]
        others = tuple(a for a in aliases if a != answer)
        if not self.mc or not wrong:
            return Question(self.qtype, self.category, text, query, answer, kind, others)
        options = [answer, *self.rng.sample(wrong, min(self.n_options - 1, len(wrong)))]
        self.rng.shuffle(options)
        return Question(self.qtype, self.category, text, query, answer, kind, others, tuple(options),
                        options.index(answer))


Generator = Callable[[GenContext], "Question | None"]


@dataclass(frozen=True)
class QuestionType:
    name: str
    category: str  # MMStar-style category (registry.CATEGORIES)
    generate: Generator
    scene: str | None = None  # the scene kind it asks about ("shapes", "chart"); None: any

    def ask(self, ctx: GenContext) -> Question | None:
        """A question about `ctx.scene`, or None when the scene cannot support one."""
        return self.generate(ctx) if self.scene in (None, ctx.scene.kind) else None


class QuestionTypes:
    """A family's question types: each generator registers itself with `add`."""

    def __init__(self) -> None:
        self._types: list[QuestionType] = []

    def add(self, name: str, category: str, scene: str | None = None) -> Callable[[Generator], Generator]:
        """Decorator: the generator asks question type `name`, in `category`, about scenes
        of kind `scene` (None: any)."""

        def register(generate: Generator) -> Generator:
            self._types.append(QuestionType(name, category, generate, scene))
            return generate

        return register

    def __iter__(self) -> Iterator[QuestionType]:
        return iter(self._types)


def _no_objects(scene: Scene, query: dict) -> list[Shape | TextMark]:
    return []


@dataclass(frozen=True)
class QueryRules:
    """How one query type's targets follow from the scene graph (docs: training.data.targets).

    focus       what to pay attention to, from the query alone (the hint target)
    statements  declarative facts that settle the question (depend on scene + focus only)
    steps       the reasoning trace after its first line ("The question asks about ..."),
                working from the description to the answer (the answer line is added after)
    relevant    the scene items the question is about
    """

    focus: Callable[[dict], str]
    statements: Callable[[Scene, dict], list[str]]
    steps: Callable[[Scene, Question], list[str]]
    relevant: Callable[[Scene, dict], list[Shape | TextMark]] = _no_objects


def casual(rng: random.Random, text: str) -> str:
    """Half the questions capitalised with their mark, a quarter in lower case with it, a
    quarter in lower case without it ("is there a red star")."""
    u = rng.random()
    if u < 0.5:
        return text[0].upper() + text[1:]
    text = text[0].lower() + text[1:]
    return text if u < 0.75 else text.rstrip("?.").rstrip()


def yes_no(flag: bool) -> str:
    return "yes" if flag else "no"
