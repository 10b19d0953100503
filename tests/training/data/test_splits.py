"""Splits never share an image; held-out colour-shape pairs appear only in the test split."""

from __future__ import annotations

import hashlib
import re

from training.data.scene import SceneConfig
from training.data.splits import DEFAULT_HELD_OUT, derive_seed
from training.data.synth import SynthConfig, make_example

HELD = {tuple(p) for p in DEFAULT_HELD_OUT}


def test_no_image_is_shared_between_or_within_splits(synth_ds):
    by_split: dict[str, set[str]] = {}
    n = 0
    for row in synth_ds.scene_rows():
        data = (synth_ds.root / row["image"]).read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        assert digest == row["sha256"]
        by_split.setdefault(row["split"], set()).add(digest)
        n += 1
    assert sum(len(s) for s in by_split.values()) == n  # all distinct
    assert set(by_split) == {"train", "val", "test", "test_iid"}


def test_records_only_point_at_images_of_their_own_split(synth_ds):
    for split in synth_ds.splits:
        for rec in synth_ds.records(split):
            assert rec["split"] == split
            assert rec["image"].startswith(f"images/{split}/")
            assert rec["scene_id"].startswith(f"{split}-")


def test_held_out_pairs_never_appear_in_train_or_val(synth_ds):
    pattern = re.compile("|".join(rf"\b{c} {s}" for c, s in HELD))
    for row in synth_ds.scene_rows():
        pairs = {(s["color"], s["shape"]) for s in row["scene"]["shapes"]}
        if row["split"] == "test" and row["scene"]["kind"] == "shapes":
            assert pairs & HELD, row["scene_id"]
        else:
            assert not pairs & HELD, row["scene_id"]
    for split in ("train", "val", "test_iid"):
        for rec in synth_ds.records(split):
            # " | ": a question ending in a colour ("which shape is orange") next to an option
            # ("diamond") is no mention of the pair
            text = " | ".join([rec["question"], *(rec["options"] or []), *rec["aliases"], rec["extraction"],
                             rec["caption"], rec["thinking"], rec["focus"]])
            assert not pattern.search(text), (rec["id"], pattern.search(text).group(0))


def test_test_questions_are_mostly_about_held_out_objects(synth_ds):
    recs = list(synth_ds.records("test"))
    assert any(r["qtype"].startswith("chart") for r in recs)  # charts are tested too
    share = sum(r["heldout"] for r in recs) / len(recs)
    assert share > 0.35
    assert not any(r["heldout"] for r in synth_ds.records("train"))


def test_split_sizes_do_not_change_other_splits():
    """Image i of a split depends only on (seed, split, i): growing train keeps test fixed."""
    small = SynthConfig(seed=3, scene=SceneConfig(image_size=64), train=5, test=5)
    big = SynthConfig(seed=3, scene=SceneConfig(image_size=64), train=50, test=5)
    for i in range(5):
        assert make_example(small, "test", i).data == make_example(big, "test", i).data


def test_derived_seeds_differ_by_split_index_and_purpose():
    seeds = {derive_seed(0, s, i, p) for s in ("train", "val", "test") for i in range(200) for p in ("scene", "questions")}
    assert len(seeds) == 3 * 200 * 2
