"""The held-out world: a second synthetic world for testing generalisation, never trained on.

Written independently of the training world (`training/data/scene.py`, `questions.py`,
`targets.py`, `language.py`; nothing is imported from them): its own renderer (numpy
coverage masks, hard-edged or anti-aliased, tinted / gradient / blotchy backgrounds, noise,
JPEG), its own colours (pure and muted shades of 11 names), 12 shapes, 32-512 px images, single
large shapes and scenes of a few, written words, and its own question wording (lower case,
no question mark, negations, "what is the red shape", counting, position). See docs/heldout.md.

    from training.data.heldout import HeldoutConfig, write_split
    write_split("runs/heldout", HeldoutConfig(n=600, seed=1))
"""

from training.data.heldout.asking import CATEGORIES, FORMS, Asked
from training.data.heldout.split import (
    ITEMS_FILE,
    REFERENCE_FILE,
    SPLIT_FILE,
    HeldoutConfig,
    draw_item,
    item_record,
    read_split,
    write_split,
)

__all__ = [
    "CATEGORIES", "FORMS", "ITEMS_FILE", "REFERENCE_FILE", "SPLIT_FILE", "Asked", "HeldoutConfig", "draw_item",
    "item_record", "read_split", "write_split",
]
