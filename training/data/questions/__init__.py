"""Question generators over a scene graph, in MMStar-like categories (see registry.py)."""

from training.data.questions.registry import (
    CATEGORIES,
    DIRECTIONS,
    QTYPES,
    GenContext,
    Question,
    generate_questions,
    relation_holds,
    text_ref_phrase,
)

__all__ = ["CATEGORIES", "DIRECTIONS", "QTYPES", "GenContext", "Question", "generate_questions",
           "relation_holds", "text_ref_phrase"]
