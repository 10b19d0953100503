"""Train / validation / test splits of the synthetic world.

- Every image comes from its own seed, derived from (dataset seed, split, index) by a
  hash, so splits never draw the same scene; the writer also checks image hashes across
  splits and resamples on the (astronomically rare) collision.
- Train and val scenes never contain a held-out colour-shape pair, and no train/val
  question or option even names one. Every test scene contains at least one held-out
  pair and its questions prefer the held-out objects: test accuracy measures
  generalisation to unseen combinations, not memorisation.
- `test_iid` (optional) is an in-distribution test set drawn like val.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from runtime.errors import ConfigError
from training.data.sampling import PairRules
from training.data.vocabulary import COLORS, SHAPES

# One held-out shape per colour and one colour per shape: every colour and every shape
# is still seen in training, only these combinations are not.
DEFAULT_HELD_OUT: tuple[tuple[str, str], ...] = (
    ("red", "star"),
    ("blue", "triangle"),
    ("green", "circle"),
    ("yellow", "square"),
    ("purple", "hexagon"),
    ("orange", "diamond"),
    ("brown", "cross"),
)
SPLITS = ("train", "val", "test", "test_iid")


@dataclass(frozen=True)
class SplitRules:
    scene: PairRules  # what scenes of the split may / must contain
    forbidden: frozenset[tuple[str, str]]  # pairs its questions may not name
    prefer: frozenset[tuple[str, str]]  # pairs its questions should ask about


def check_held_out(pairs: tuple[tuple[str, str], ...]) -> None:
    for color, shape in pairs:
        if color not in COLORS or shape not in SHAPES:
            raise ConfigError(f"held-out pair ({color}, {shape}) is not a colour and a shape of the world")
    if len(set(pairs)) != len(pairs):
        raise ConfigError("held-out pairs repeat")
    if len(pairs) >= len(COLORS) * len(SHAPES):
        raise ConfigError("holding out every colour-shape pair leaves nothing to train on")


def rules_for(split: str, held_out: tuple[tuple[str, str], ...]) -> SplitRules:
    pairs = frozenset(held_out)
    if split in ("train", "val", "test_iid"):
        return SplitRules(PairRules(forbidden=pairs), forbidden=pairs, prefer=frozenset())
    if split == "test":
        if not held_out:
            return SplitRules(PairRules(), frozenset(), frozenset())
        return SplitRules(PairRules(required=tuple(held_out)), forbidden=frozenset(), prefer=pairs)
    raise ConfigError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")


def derive_seed(base: int, split: str, index: int, purpose: str = "scene", attempt: int = 0) -> int:
    """A 63-bit seed that differs for every (split, index, purpose, attempt)."""
    key = f"{base}:{split}:{index}:{purpose}:{attempt}".encode()
    return int.from_bytes(hashlib.sha256(key).digest()[:8], "big") >> 1
