"""`edge eval`: per-category accuracy that matches a hand count, JSON output, resuming a
killed run, sweeps, and clear errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edge.cli import main
from tests.benchmarks.bundle import tiny_bundle, write_png
from tests.edge.helpers import run_edge
from tests.support.cli import edge_in_process as _edge

SMALL = ["--hint-budget", "3", "--extraction-budget", "6", "--thinking-budget", "6", "--answer-budget", "4",
         "--threads", "1"]


@pytest.fixture(scope="module")
def bundle_dir(request) -> Path:
    return tiny_bundle(request)


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _mc_rows(folder: Path, n: int) -> list[dict]:
    rows = []
    for i in range(n):
        write_png(folder / f"img{i}.png", seed=i)
        rows.append({"id": f"item{i}", "image": f"img{i}.png", "question": f"Which shape is at spot {i}?",
                     "options": ["circle", "square", "star", "cross"], "answer": "A", "category": "unknown"})
    return rows


def test_eval_json_matches_a_hand_count(bundle_dir, tmp_path, capsys):
    """First run: learn what the model answers. Second run on gold answers rewritten from
    those predictions (category 'right' = the prediction, 'wrong' = another letter): the
    per-category accuracy is known exactly, and the sampling is seeded per item."""
    rows = _mc_rows(tmp_path, 6)
    data = _jsonl(tmp_path / "set.jsonl", rows)
    rc, out, _ = _edge(capsys, "eval", "--bundle", str(bundle_dir), "--data", str(data), "--out",
                       str(tmp_path / "first"), "--json", *SMALL)
    assert rc == 0
    first = json.loads(out)
    preds = {json.loads(x)["id"]: json.loads(x)["prediction"]
             for x in Path(first["predictions"]).read_text().splitlines()}
    assert set(preds) == {r["id"] for r in rows} and all(p in "ABCD" for p in preds.values())

    for k, r in enumerate(rows):
        right = k < 4
        r["category"] = "right" if right else "wrong"
        r["answer"] = preds[r["id"]] if right else next(x for x in "ABCD" if x != preds[r["id"]])
    data = _jsonl(tmp_path / "known.jsonl", rows)
    rc, out, _ = _edge(capsys, "eval", "--bundle", str(bundle_dir), "--data", str(data), "--out",
                       str(tmp_path / "second"), "--json", *SMALL)
    assert rc == 0
    s = json.loads(out)
    assert s["n"] == 6 and s["accuracy"] == pytest.approx(4 / 6)
    assert s["categories"]["right"]["accuracy"] == 1.0 and s["categories"]["right"]["n"] == 4
    assert s["categories"]["wrong"]["accuracy"] == 0.0 and s["categories"]["wrong"]["n"] == 2
    lo, hi = s["categories"]["right"]["ci95"]
    assert 0 < lo < 1.0 == hi
    assert s["tokens_used"]["thinking"]["max"] <= 6 and s["latency_s"]["n"] == 6
    assert (tmp_path / "second" / "summary-extract-think-think6.md").is_file()


def test_eval_on_a_synthetic_test_set_matches_its_predictions(bundle_dir, tmp_path, capsys):
    assert main(["-q", "data", "synth", "--out", str(tmp_path / "synth"), "--train", "0", "--val", "0",
                 "--test", "4", "--image-size", "32", "--questions-per-image", "3"]) == 0
    capsys.readouterr()
    data = tmp_path / "synth" / "test.jsonl"
    rc, out, _ = _edge(capsys, "eval", "--bundle", str(bundle_dir), "--data", str(data), "--out",
                       str(tmp_path / "ev"), "--json", "--no-thinking", "--no-hint", "--sampling", "greedy",
                       "--extraction-budget", "6", "--answer-budget", "4", "--threads", "1")
    assert rc == 0
    s = json.loads(out)
    gold = {json.loads(x)["id"]: json.loads(x) for x in data.read_text().splitlines()}
    recs = [json.loads(x) for x in Path(s["predictions"]).read_text().splitlines()]
    assert s["n"] == len(gold) == len(recs) == 12 and not s["thinking"]
    # hand count per category, grading multiple choice by letter from the dataset itself
    hand: dict[str, list[bool]] = {}
    for r in recs:
        g = gold[r["id"]]
        ok = r["prediction"] == g["answer"] if g.get("options") else r["correct"]
        assert ok == r["correct"]
        hand.setdefault(g["category"], []).append(ok)
    assert set(s["categories"]) == set(hand)
    for cat, oks in hand.items():
        assert s["categories"][cat]["n"] == len(oks)
        assert s["categories"][cat]["accuracy"] == pytest.approx(sum(oks) / len(oks))
    assert s["accuracy"] == pytest.approx(sum(sum(v) for v in hand.values()) / 12)


def test_killed_eval_resumes_where_it_stopped(bundle_dir, tmp_path, capsys):
    rows = _mc_rows(tmp_path, 12)
    data = _jsonl(tmp_path / "set.jsonl", rows)
    out = tmp_path / "run"
    args = ["eval", "--bundle", str(bundle_dir), "--data", str(data), "--out", str(out), "--json",
            "--hint-budget", "8", "--extraction-budget", "24", "--thinking-budget", "48", "--answer-budget", "8",
            "--threads", "1"]
    pred = out / "predictions-extract-think-think48.jsonl"
    proc = subprocess.Popen([sys.executable, "-m", "edge", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None:
            if pred.is_file() and pred.read_text().count("\n") >= 2:
                break
            time.sleep(0.02)
        assert proc.poll() is None, "the eval finished (or died) before it could be killed"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    before = pred.read_text().splitlines()
    done_before = [json.loads(x)["id"] for x in before if x.endswith("}")]
    assert 2 <= len(done_before) < 12

    rc, stdout, _ = _edge(capsys, *args)
    assert rc == 0
    s = json.loads(stdout)
    assert s["resumed"] == len(done_before) and s["evaluated"] == 12 - len(done_before) and s["n"] == 12
    after = pred.read_text().splitlines()
    ids = [json.loads(x)["id"] for x in after]
    assert sorted(ids) == sorted(r["id"] for r in rows)  # each item exactly once
    assert after[: len(done_before)] == before[: len(done_before)]  # finished work was kept, not redone


def test_eval_sweep_writes_the_tradeoff(bundle_dir, tmp_path, capsys):
    data = _jsonl(tmp_path / "set.jsonl", _mc_rows(tmp_path, 3))
    rc, out, _ = _edge(capsys, "eval", "--bundle", str(bundle_dir), "--data", str(data), "--out",
                       str(tmp_path / "sw"), "--json", "--sweep-thinking", "off,0,8", "--hint-budget", "2",
                       "--extraction-budget", "4", "--answer-budget", "4", "--threads", "1")
    assert rc == 0
    res = json.loads(out)
    assert [p["label"] for p in res["sweep"]] == ["off", "0", "8"]
    assert all(p["n"] == 3 for p in res["sweep"])
    assert res["sweep"][0]["thinking_tokens_mean"] == 0 and res["sweep"][2]["thinking_tokens_mean"] <= 8
    for name in ("sweep.json", "sweep.md", "sweep.png", "predictions-extract-think-nothink.jsonl",
                 "predictions-extract-think-think0.jsonl", "predictions-extract-think-think8.jsonl"):
        assert (tmp_path / "sw" / name).stat().st_size > 0


def test_eval_errors_are_one_line(bundle_dir, tmp_path, capsys):
    rc, _, err = _edge(capsys, "eval", "--bundle", str(bundle_dir), "--data", str(tmp_path / "none.jsonl"))
    assert rc == 2 and "no such file" in err and err.count("\n") == 1
    data = _jsonl(tmp_path / "set.jsonl", _mc_rows(tmp_path, 2))
    rc, _, err = _edge(capsys, "eval", "--bundle", str(bundle_dir), "--data", str(data), "--limit", "0")
    assert rc == 2 and "--limit" in err
    rc, _, err = _edge(capsys, "eval", "--bundle", str(bundle_dir), "--data", str(data), "--sweep-thinking",
                       "0,x")
    assert rc == 2 and "sweep" in err
    # predictions of other settings in the same folder are never mixed in
    out = str(tmp_path / "o")
    assert _edge(capsys, "eval", "--bundle", str(bundle_dir), "--data", str(data), "--out", out, "--json",
                 *SMALL)[0] == 0
    rc, _, err = _edge(capsys, "eval", "--bundle", str(bundle_dir), "--data", str(data), "--out", out,
                       "--sampling", "greedy", *SMALL)
    assert rc == 2 and "other settings" in err


def test_two_files_with_the_same_ids_in_one_folder_get_their_own_accuracy(bundle_dir, tmp_path, capsys):
    """Regression: the second file was scored from the first file's rows (same ids, same
    settings): 100% without running the model. Rows are keyed by the data file and item."""
    rows = _mc_rows(tmp_path, 4)
    args = ["eval", "--bundle", str(bundle_dir), "--out", str(tmp_path / "o"), "--json", "--sampling", "greedy",
            *SMALL]
    first = _jsonl(tmp_path / "first.jsonl", rows)
    rc, out, _ = _edge(capsys, *args, "--data", str(first))
    assert rc == 0
    s1 = json.loads(out)
    preds = {json.loads(x)["id"]: json.loads(x)["prediction"] for x in Path(s1["predictions"]).read_text().splitlines()}
    # a second file, same ids, every gold answer one the model did not give
    second = _jsonl(tmp_path / "second.jsonl",
                    [dict(r, answer=next(x for x in "ABCD" if x != preds[r["id"]])) for r in rows])
    rc, out, err = _edge(capsys, *args, "--data", str(second))
    assert rc == 0
    s2 = json.loads(out)
    assert s2["accuracy"] == 0.0 and s2["evaluated"] == 4 and s2["resumed"] == 0
    assert "reusing" not in err
    # the first file again (the real command): its rows are reused, and it says so without -v
    proc = run_edge(*args, "--data", str(first))
    again = json.loads(proc.stdout)
    assert proc.returncode == 0 and again["accuracy"] == s1["accuracy"]
    assert again["resumed"] == 4 and again["evaluated"] == 0
    assert "reusing 4 of 4 rows" in proc.stderr


def test_an_undecodable_line_is_counted_as_malformed(bundle_dir, tmp_path, capsys):
    rows = _mc_rows(tmp_path, 2)
    data = tmp_path / "set.jsonl"
    data.write_bytes(json.dumps(rows[0]).encode() + b"\n" + b'{"id": "x", "question": "caf\xe9"}\n'
                     + json.dumps(rows[1]).encode() + b"\n")
    rc, out, err = _edge(capsys, "eval", "--bundle", str(bundle_dir), "--data", str(data), "--out",
                         str(tmp_path / "o"), "--json", *SMALL)
    assert rc == 0, err
    assert "Traceback" not in err and "2 items loaded, skipped 1 malformed" in err
    s = json.loads(out)
    assert s["n"] == 2 and s["skipped_rows"] == {"malformed": 1}


def test_eval_input_mode_and_token_cap_reach_the_pipeline(bundle_dir, tmp_path, capsys):
    """The tiny bundle with the paper's any-resolution layout (32 px views, 4 x 4 grid): a
    40 x 40 image is the base view + 2 x 2 tiles = 16 + 8 x (8 + 1) = 88 tokens; capped at
    40 one tile is left (16 + 4 x 5 = 36); single mode is one view (16). Other settings
    are other predictions: a run with another input mode does not reuse the rows."""
    from benchmarks.variants import anyres_variant
    from runtime.bundle import open_bundle

    anyres = anyres_variant(open_bundle(bundle_dir), tmp_path / "anyres")
    data = _jsonl(tmp_path / "set.jsonl", _mc_rows(tmp_path, 2))
    common = ["eval", "--bundle", str(anyres), "--data", str(data), "--json", "--no-thinking", "--no-hint",
              "--sampling", "greedy", "--extraction-budget", "3", "--answer-budget", "2", "--threads", "1"]
    seen = {}
    for name, flags in (("anyres", ["--input-mode", "anyres"]), ("single", ["--input-mode", "single"]),
                        ("capped", ["--max-image-tokens", "40"])):
        rc, out, _ = _edge(capsys, *common, "--out", str(tmp_path / name), *flags)
        assert rc == 0, name
        s = json.loads(out)
        seen[name] = {json.loads(x)["image_tokens"] for x in Path(s["predictions"]).read_text().splitlines()}
    assert seen == {"anyres": {88}, "single": {16}, "capped": {36}}
    rc, _, err = _edge(capsys, *common, "--out", str(tmp_path / "anyres"), "--input-mode", "single")
    assert rc != 0 and "other settings" in err
    rc, _, err = _edge(capsys, "eval", "--bundle", str(bundle_dir), "--data", str(data), "--input-mode", "anyres",
                       "--threads", "1")
    assert rc == 2 and "no any-resolution layout" in err
