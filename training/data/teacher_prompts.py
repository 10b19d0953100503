"""The teacher prompts of the visual-extraction pipeline (our wording, the paper's structure).

Step 1 (text only): every question-answer pair becomes one self-contained declarative
statement, one per line. Step 2 (with the image): a fine-grained description of the
image (scene, objects, relationships, instance locations, text) that works the statements
in. The prompts the *trained* models see live in `runtime/prompts.py`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from training.data.records import QAPair

STATEMENTS_PROMPT = """\
Below are questions about an image, each followed by its correct answer. Rewrite every \
question-answer pair as one self-contained declarative sentence that states the answer as \
a fact about the image, so that it can be understood without the question. If an answer \
is an option letter, state what that option says instead of the letter. Do not add \
anything that the pair does not say.

Write exactly one sentence per pair, one per line, in the same order, with no numbering \
and nothing else.

{pairs}"""

DESCRIPTION_PROMPT = """\
Describe the fine-grained content of this image in one or more paragraphs: the scene, the \
objects and their attributes, the relationships between objects, where each instance is \
located, and any text that appears in it.

The following facts about the image are true. Work every one of them naturally into your \
description, without saying that they were given to you and without contradicting them:
{statements}"""

DESCRIPTION_PROMPT_NO_FACTS = """\
Describe the fine-grained content of this image in one or more paragraphs: the scene, the \
objects and their attributes, the relationships between objects, where each instance is \
located, and any text that appears in it."""


def statements_prompt(qa: Sequence[QAPair]) -> str:
    pairs = "\n\n".join(f"Question {i}: {p.question.strip()}\nAnswer {i}: {p.answer.strip()}"
                        for i, p in enumerate(qa, 1))
    return STATEMENTS_PROMPT.format(pairs=pairs)


def description_prompt(statements: Sequence[str]) -> str:
    if not statements:
        return DESCRIPTION_PROMPT_NO_FACTS
    return DESCRIPTION_PROMPT.format(statements="\n".join(f"- {s}" for s in statements))


_BULLET = re.compile(r"^\s*(?:[-*\u2022]|\d+[.)]|statement\s*\d+\s*:)\s*", re.IGNORECASE)


def parse_statements(text: str) -> list[str]:
    """One statement per non-empty line, list markers and numbering removed."""
    out = []
    for line in text.splitlines():
        line = _BULLET.sub("", line).strip()
        if line:
            out.append(line)
    return out
