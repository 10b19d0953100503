"""`edge heldout`: write a split, evaluate the shipped bundle on it with `edge eval`, score it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.open_answer import normalise
from edge.cli import main
from tests.support.cli import edge_in_process as _edge


@pytest.fixture(scope="module")
def split(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cli") / "heldout"
    assert main(["-q", "heldout", "--out", str(out), "--n", "16", "--seed", "2"]) == 0
    return out


def test_write_prints_counts_and_json(split, tmp_path, capsys):
    assert sorted(p.name for p in split.iterdir()) == ["heldout.jsonl", "images", "reference.jsonl", "split.json"]
    rc, out, _ = _edge(capsys, "heldout", "--out", str(tmp_path / "mc"), "--n", "8", "--seed", "2",
                       "--multiple-choice", "--json")
    assert rc == 0
    meta = json.loads(out)
    assert meta["config"]["multiple_choice"] is True and sum(meta["counts"].values()) == 8
    assert (tmp_path / "mc" / "split.json").is_file()


@pytest.mark.parametrize(("argv", "message"), [
    (["heldout", "--score", "p.jsonl"], "--score needs --data"),
    (["heldout", "--out", "X", "--data", "Y"], "--data goes with --score"),
    (["heldout", "--out", "{tmp}/s", "--n", "0"], "n must be an integer >= 1"),
    (["heldout", "--score", "{tmp}/none.jsonl", "--data", "{split}"], "no such predictions file"),
    (["heldout", "--score", "{tmp}/p.jsonl", "--data", "{tmp}"], "not a held-out split folder"),
])
def test_errors_are_one_line(split, tmp_path, capsys, argv, message):
    argv = [a.format(tmp=tmp_path, split=split) for a in argv]
    rc, _, err = _edge(capsys, *argv)
    assert rc != 0 and message in err and err.count("\n") == 1 and err.startswith("edge heldout: error:")


def test_the_shipped_bundle_evaluated_and_scored(split, tmp_path, capsys):
    rc, _, _ = _edge(capsys, "-q", "eval", "--data", str(split / "heldout.jsonl"), "--out", str(tmp_path / "ev"),
                     "--sampling", "greedy", "--threads", "1", "--mode", "end-to-end")
    assert rc == 0
    preds = tmp_path / "ev" / "predictions-end-to-end-nothink.jsonl"
    rc, out, _ = _edge(capsys, "heldout", "--score", str(preds), "--data", str(split), "--json")
    assert rc == 0
    summary = json.loads(out)
    items = {json.loads(x)["id"]: json.loads(x) for x in (split / "heldout.jsonl").read_text().splitlines()}
    records = [json.loads(x) for x in preds.read_text().splitlines()]
    by_hand = sum(1 for r in records if r["prediction"] is not None and normalise(r["prediction"])
                  in {normalise(a) for a in (items[r["id"]]["answer"], *items[r["id"]]["aliases"])})
    assert summary["overall"]["n"] == 16 and summary["overall"]["correct"] == by_hand
    assert set(summary["categories"]) == {"exists", "negation", "verify", "color", "shape", "count", "position",
                                          "text"}
    assert summary["baseline"]["reference_n"] == 2000
    assert json.loads((tmp_path / "ev" / "predictions-end-to-end-nothink.open-scores.json").read_text()) == summary
    assert "| **overall** | 16 |" in (tmp_path / "ev" / "predictions-end-to-end-nothink.open-scores.md").read_text()
