"""Writing held-out splits: the format `edge eval` reads, determinism, atomic writes."""

from __future__ import annotations

import json

import pytest

from benchmarks.eval_items import load_items
from benchmarks.open_answer import score
from runtime.errors import ConfigError
from tests.support.folders import check_replaces_only_its_own
from training.data.heldout import HeldoutConfig, read_split, write_split
from training.data.heldout.geometry import CONFUSABLE

N = 24


@pytest.fixture(scope="module")
def splits(tmp_path_factory):
    root = tmp_path_factory.mktemp("heldout")
    open_dir, mc_dir = root / "open", root / "mc"
    write_split(open_dir, HeldoutConfig(n=N, seed=5, reference=80))
    write_split(mc_dir, HeldoutConfig(n=N, seed=5, reference=80, multiple_choice=True))
    return open_dir, mc_dir


def _rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_edge_eval_reads_both_forms(splits):
    open_dir, mc_dir = splits
    meta, items_path, ref_path = read_split(open_dir)
    items, report = load_items(items_path)
    assert len(items) == N and report.loaded == N and not report.problems
    assert all(it.options is None and it.image.is_file() for it in items)
    assert meta["counts"] == {c: 3 for c in meta["counts"]} and len(meta["counts"]) == 8
    mc, _ = load_items(read_split(mc_dir)[1])
    assert all(it.options and it.answer in "ABCD"[: len(it.options)] for it in mc)
    reference, _ = load_items(ref_path, need_image=False)
    assert len(reference) == 80 and all(it.image is None for it in reference)


def test_multiple_choice_asks_the_same_questions_with_one_right_option(splits):
    open_dir, mc_dir = splits
    open_rows, mc_rows = _rows(open_dir / "heldout.jsonl"), _rows(mc_dir / "heldout.jsonl")
    for o, m in zip(open_rows, mc_rows, strict=True):
        assert (o["id"], o["question"], o["image"]) == (m["id"], m["question"], m["image"])
        assert m["options"]["ABCD".index(m["answer"])] == o["answer"]
        right = [opt for opt in m["options"] if score(opt, o)]
        assert right == [o["answer"]], (o["question"], m["options"])
        assert not CONFUSABLE.get(o["answer"], frozenset()) & set(m["options"])
        expected = 2 if o["form"] in ("yesno", "position") else 4
        assert len(m["options"]) == expected
    for name in ("heldout.jsonl", "reference.jsonl"):
        assert (open_dir / name).read_text() != (mc_dir / name).read_text()
    assert [p.read_bytes() for p in sorted((open_dir / "images").iterdir())] == \
        [p.read_bytes() for p in sorted((mc_dir / "images").iterdir())]


def test_same_seed_same_bytes(splits, tmp_path):
    open_dir, _ = splits
    again = tmp_path / "again"
    write_split(again, HeldoutConfig(n=N, seed=5, reference=80))
    for name in ("heldout.jsonl", "reference.jsonl", "split.json"):
        assert (again / name).read_bytes() == (open_dir / name).read_bytes()
    for p in (open_dir / "images").iterdir():
        assert (again / "images" / p.name).read_bytes() == p.read_bytes()


def test_the_reference_draw_is_another_seed(splits):
    open_dir, _ = splits
    items, ref = _rows(open_dir / "heldout.jsonl"), _rows(open_dir / "reference.jsonl")
    assert not {r["id"] for r in items} & {r["id"] for r in ref}
    assert sum(a["question"] == b["question"] for a, b in zip(items, ref, strict=False)) < N // 3
    assert all("image" not in r for r in ref)


def test_refuses_a_non_empty_folder_and_leaves_nothing_when_interrupted(tmp_path):
    check_replaces_only_its_own(
        lambda out, overwrite: write_split(out, HeldoutConfig(n=2, reference=2), overwrite=overwrite),
        tmp_path / "full", "split.json", written="heldout.jsonl")

    def stop(stage: str, fraction: float) -> None:
        if fraction > 0.3:
            raise KeyboardInterrupt

    out = tmp_path / "split"
    with pytest.raises(KeyboardInterrupt):
        write_split(out, HeldoutConfig(n=8, reference=4), progress=stop)
    assert not out.exists() and [p.name for p in tmp_path.iterdir()] == ["full"]


def test_progress_reaches_the_end(tmp_path):
    seen = []
    write_split(tmp_path / "s", HeldoutConfig(n=4, reference=4), progress=lambda s, f: seen.append(f))
    assert seen == sorted(seen) and seen[-1] == 1.0 and len(seen) >= 5


@pytest.mark.parametrize("bad", [{"n": 0}, {"seed": -1}, {"n_options": 1}, {"reference": -2}, {"n": True}])
def test_bad_settings_are_refused(bad):
    with pytest.raises(ConfigError):
        HeldoutConfig(**bad)


def test_read_split_names_what_is_wrong(tmp_path, splits):
    with pytest.raises(ConfigError, match="not a held-out split"):
        read_split(tmp_path)
    (tmp_path / "split.json").write_text('{"format": "edge-synth"}')
    with pytest.raises(ConfigError, match="not an edge-heldout split"):
        read_split(tmp_path)
