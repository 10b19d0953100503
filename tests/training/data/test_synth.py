"""Writing and reading a dataset folder: determinism, atomicity, schema."""

from __future__ import annotations

import filecmp
import json

import pytest

from runtime.errors import ConfigError
from tests.support.folders import check_replaces_only_its_own
from training.data.scene import SceneConfig
from training.data.synth import SynthConfig, SynthDataset, write_dataset

TINY = SynthConfig(seed=11, scene=SceneConfig(image_size=64), train=30, val=5, test=8, questions_per_image=3)

RECORD_FIELDS = {
    "id": str, "image": str, "scene_id": str, "split": str, "category": str, "qtype": str, "question": str,
    "answer": str, "answer_text": str, "aliases": list, "kind": str, "query": dict, "heldout": bool,
    "focus": str, "statements": list, "extraction": str, "caption": str, "thinking": str, "answer_line": str,
}


def _tree(root):
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*"))


def test_same_config_same_bytes(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    write_dataset(a, TINY)
    write_dataset(b, TINY)
    assert _tree(a) == _tree(b)
    files = [p for p in _tree(a) if (a / p).is_file()]
    match, mismatch, errors = filecmp.cmpfiles(a, b, files, shallow=False)
    assert not mismatch and not errors and len(match) == len(files)


def test_another_seed_gives_other_images(tmp_path):
    write_dataset(tmp_path / "a", TINY)
    from dataclasses import replace

    write_dataset(tmp_path / "b", replace(TINY, seed=12))
    a = [p.read_bytes() for p in sorted((tmp_path / "a/images/train").iterdir())]
    b = [p.read_bytes() for p in sorted((tmp_path / "b/images/train").iterdir())]
    assert len(a) == len(b) == TINY.train and not set(a) & set(b)


def test_records_follow_the_schema(tmp_path):
    write_dataset(tmp_path / "d", TINY)
    ds = SynthDataset(tmp_path / "d")
    assert ds.config == TINY
    assert ds.splits == ["train", "val", "test"]
    for split in ds.splits:
        recs = list(ds.records(split))
        assert len(recs) == ds.meta["splits"][split]["records"]
        for rec in recs:
            for key, typ in RECORD_FIELDS.items():
                assert isinstance(rec[key], typ), (key, rec[key])
            assert rec["options"] is None or (isinstance(rec["options"], list) and 2 <= len(rec["options"]) <= 4)
            assert ds.image_path(rec).is_file()
    meta = json.loads((tmp_path / "d/dataset.json").read_text())
    assert meta["format"] == "edge-synth" and meta["held_out_pairs"]


def test_refuses_a_non_empty_folder_unless_told(tmp_path):
    check_replaces_only_its_own(lambda out, overwrite: write_dataset(out, TINY, overwrite=overwrite),
                                tmp_path / "d", "dataset.json")


def test_an_interrupted_run_leaves_nothing_that_looks_finished(tmp_path):
    def boom(done, total):
        if done == 10:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_dataset(tmp_path / "d", TINY, progress=boom)
    assert list(tmp_path.iterdir()) == []


def test_reading_something_else_fails_clearly(tmp_path):
    with pytest.raises(ConfigError, match="no dataset.json"):
        SynthDataset(tmp_path)
    (tmp_path / "dataset.json").write_text('{"format": "other"}')
    with pytest.raises(ConfigError, match="not a edge-synth"):
        SynthDataset(tmp_path)


@pytest.mark.parametrize("kw", [{"train": -1}, {"questions_per_image": 0}, {"mc_prob": 2.0},
                                {"held_out": (("red", "blob"),)}])
def test_bad_synth_configs_are_refused(kw):
    from dataclasses import replace

    with pytest.raises(ConfigError):
        replace(TINY, **kw)
