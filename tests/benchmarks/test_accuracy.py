"""The accuracy harness: loading, grading, aggregation, resuming, and a run whose
expected accuracy is known item by item."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.accuracy import EvalConfig, item_seed, run_eval, summarize_records
from benchmarks.eval_items import EvalItem, load_items
from benchmarks.eval_report import parse_sweep
from benchmarks.grading import normalize_answer
from benchmarks.predictions import item_key, read_rows
from runtime.errors import ConfigError
from runtime.pipeline import ExtractThink
from tests.benchmarks.bundle import write_png


def _write_jsonl(path: Path, rows: list) -> Path:
    path.write_bytes(b"".join((r if isinstance(r, bytes) else (r if isinstance(r, str) else json.dumps(r)).encode())
                              + b"\n" for r in rows))
    return path


def test_load_items_reports_and_skips_bad_rows(tmp_path):
    write_png(tmp_path / "a.png")
    rows = [
        {"id": "1", "image": "a.png", "question": "Colour?", "answer": "blue", "options": ["red", "blue"],
         "category": "color", "scene_id": "ignored"},
        {"id": 2, "image": "a.png", "question": "How many?", "answer": "two", "aliases": ["2"]},
        {"id": "3", "image": "missing.png", "question": "Q?", "answer": "A", "options": ["x", "y"]},
        "{not json",
        {"id": "5", "image": "a.png", "question": "Q?", "answer": "E", "options": ["x", "y"]},
        {"id": "6", "image": "a.png", "question": "", "answer": "x"},
    ]
    items, report = load_items(_write_jsonl(tmp_path / "d.jsonl", rows))
    assert [it.id for it in items] == ["1", "2"]
    assert items[0].answer == "B" and items[0].options == ("red", "blue") and items[0].category == "color"
    assert items[1].options is None and items[1].category == "all" and items[1].aliases == ("2",)
    assert report.loaded == 2 and report.total == 6
    assert report.problems == {"missing image": 1, "malformed": 3}


def test_undecodable_and_unencodable_lines_are_counted_as_malformed(tmp_path):
    """Invalid UTF-8 on one line (and text JSON can carry but UTF-8 cannot: a lone
    surrogate) is one bad line among good ones, not a traceback."""
    write_png(tmp_path / "a.png")
    good = {"id": "1", "image": "a.png", "question": "Colour?", "answer": "red", "options": ["red", "blue"]}
    rows = [good, b'{"id": "2", "question": "Caf\xe9?", "answer": "x"}', b"\xff\xfe\x00garbage",
            '{"id": "4", "image": "a.png", "question": "\\ud800?", "answer": "x"}', dict(good, id="5")]
    items, report = load_items(_write_jsonl(tmp_path / "d.jsonl", rows))
    assert [it.id for it in items] == ["1", "5"]
    assert report.total == 5 and report.problems == {"malformed": 3}


def test_load_items_limit_duplicates_and_empty(tmp_path):
    write_png(tmp_path / "a.png")
    row = {"image": "a.png", "question": "Q?", "answer": "x"}
    items, _ = load_items(_write_jsonl(tmp_path / "d.jsonl", [dict(row, id=i) for i in range(5)]), limit=2)
    assert len(items) == 2
    with pytest.raises(ConfigError, match="appears twice"):
        load_items(_write_jsonl(tmp_path / "dup.jsonl", [dict(row, id=1), dict(row, id=1)]))
    with pytest.raises(ConfigError, match="no usable items"):
        load_items(_write_jsonl(tmp_path / "bad.jsonl", ["[]"]))
    # blind evaluations do not need images
    items, _ = load_items(_write_jsonl(tmp_path / "blind.jsonl", [{"id": 1, "question": "Q?", "answer": "x"}]),
                          need_image=False)
    assert items[0].image is None


def test_grading():
    mc = EvalItem("1", "q", "C", ("a", "b", "c"))
    assert mc.grade("C") and mc.grade("c") and not mc.grade("B") and not mc.grade(None)
    op = EvalItem("2", "q", "2", aliases=("a pair",))
    assert op.grade("Two.") and op.grade("2") and op.grade("A pair")
    assert not op.grade("3") and not op.grade("")
    assert normalize_answer("The Blue  square!") == "blue square"


def test_summary_matches_a_hand_count():
    recs = [{"id": str(i), "category": c, "correct": ok, "answer_found": True, "seconds": 1.0,
             "tokens": {"thinking": t}} for i, (c, ok, t) in enumerate(
                 [("a", True, 10), ("a", False, 20), ("a", True, 30), ("b", False, 40), ("b", False, 50)])]
    s = summarize_records(recs)
    assert s["n"] == 5 and s["correct"] == 2 and s["accuracy"] == pytest.approx(0.4)
    assert s["categories"]["a"]["accuracy"] == pytest.approx(2 / 3) and s["categories"]["a"]["n"] == 3
    assert s["categories"]["b"]["accuracy"] == 0.0 and s["categories"]["b"]["n"] == 2
    assert s["ci95"][0] < 0.4 < s["ci95"][1]
    assert s["tokens_used"]["thinking"]["mean"] == pytest.approx(30.0)


def test_read_rows_cuts_a_half_written_line_and_refuses_other_settings(tmp_path):
    p = tmp_path / "p.jsonl"
    p.write_text(json.dumps({"id": "1", "key": "k1", "config": "abc", "correct": True}) + "\n"
                 + json.dumps({"id": "0", "config": "abc"}) + "\n"  # a row without a key is never reused
                 + '{"id": "2", "conf')
    done = read_rows(p, "abc")
    assert list(done) == ["k1"] and p.read_text().endswith("}\n")
    with pytest.raises(ConfigError, match="other settings"):
        read_rows(p, "xyz")


def test_item_key_changes_with_data_question_options_image_and_gold(tmp_path):
    a, b = write_png(tmp_path / "a.png", seed=1), write_png(tmp_path / "b.png", seed=2)
    base = EvalItem("q1", "Which?", "A", ("x", "y"), "cat", a)
    key = item_key(base, "data1")
    assert item_key(EvalItem("q1", "Which?", "A", ("x", "y"), "other category", a), "data1") == key
    for changed, data in [(base, "data2"), (EvalItem("q1", "What?", "A", ("x", "y"), "cat", a), "data1"),
                          (EvalItem("q1", "Which?", "A", ("x", "z"), "cat", a), "data1"),
                          (EvalItem("q1", "Which?", "A", ("x", "y"), "cat", b), "data1"),
                          (EvalItem("q1", "Which?", "B", ("x", "y"), "cat", a), "data1")]:
        assert item_key(changed, data) != key
    # the image by its bytes, not its path
    (tmp_path / "a-copy.png").write_bytes(a.read_bytes())
    assert item_key(EvalItem("q1", "Which?", "A", ("x", "y"), "cat", tmp_path / "a-copy.png"), "data1") == key


def test_parse_sweep():
    assert parse_sweep("off, 0,64,64,256") == [None, 0, 64, 256]
    with pytest.raises(ConfigError):
        parse_sweep("0,many")


# ---- on a real bundle ---------------------------------------------------------------------

SMALL = {"hint_budget": 4, "extraction_budget": 8, "thinking_budget": 8, "answer_budget": 6}


@pytest.fixture(scope="module")
def pipeline(bench_bundle_dir):
    et = ExtractThink.load(bench_bundle_dir, backend="onnx", threads=1)
    yield et
    et.close()


@pytest.fixture(scope="module")
def question_set(tmp_path_factory):
    d = tmp_path_factory.mktemp("qs")
    rows = []
    for i in range(6):
        write_png(d / f"{i}.png", seed=i)
        rows.append({"id": f"q{i}", "image": f"{i}.png", "question": f"Which shape is number {i}?",
                     "options": ["circle", "square", "star"], "answer": "A"})
    return d, rows


def test_eval_accuracy_matches_items_whose_correctness_is_known(pipeline, question_set):
    """Gold answers are set from what this very pipeline answers (greedy, same seeds), so
    the 'right' category must score 1.0 and the 'wrong' one 0.0."""
    d, rows = question_set
    cfg = EvalConfig(sampling="greedy", **SMALL)
    rows = [dict(r) for r in rows]
    for k, r in enumerate(rows):
        res = pipeline.answer(d / r["image"], r["question"], r["options"], sampling="greedy",
                              seed=item_seed(0, r["id"]), **SMALL)
        assert res.answer in ("A", "B", "C")  # multiple choice always ends in a letter
        wrong = next(x for x in "ABC" if x != res.answer)
        r["category"] = "right" if k % 2 == 0 else "wrong"
        r["answer"] = res.answer if k % 2 == 0 else wrong
    items, rep = load_items(_write_jsonl(d / "known.jsonl", rows))
    s = run_eval(pipeline, items, cfg, d / "out" / "pred.jsonl", bundle_id="tiny", data_sha256=rep.sha256,
                 fresh=True)
    assert s["n"] == 6 and s["correct"] == 3 and s["accuracy"] == pytest.approx(0.5)
    assert s["categories"]["right"] == {"accuracy": 1.0, "n": 3, "correct": 3, "ci95": s["categories"]["right"]["ci95"]}
    assert s["categories"]["wrong"]["accuracy"] == 0.0
    # the predictions file agrees with the summary, line by line
    recs = [json.loads(x) for x in (d / "out" / "pred.jsonl").read_text().splitlines()]
    assert [r["id"] for r in recs] == [r["id"] for r in rows]
    assert sum(r["correct"] for r in recs) == 3
    assert all(r["tokens"]["thinking"] <= SMALL["thinking_budget"] for r in recs)


def test_eval_resumes_after_a_kill(pipeline, question_set, tmp_path):
    d, rows = question_set
    items, rep = load_items(_write_jsonl(d / "resume.jsonl", rows))
    cfg = EvalConfig(sampling="greedy", **SMALL)
    full = run_eval(pipeline, items, cfg, tmp_path / "full.jsonl", bundle_id="tiny", data_sha256=rep.sha256)
    full_lines = (tmp_path / "full.jsonl").read_text().splitlines()
    # a run killed after two items, in the middle of writing the third
    part = tmp_path / "part.jsonl"
    part.write_text("\n".join(full_lines[:2]) + "\n" + full_lines[2][:25])
    s = run_eval(pipeline, items, cfg, part, bundle_id="tiny", data_sha256=rep.sha256)
    assert s["resumed"] == 2 and s["evaluated"] == 4
    got = [json.loads(x) for x in part.read_text().splitlines()]
    want = [json.loads(x) for x in full_lines]
    strip = ("seconds",)
    assert [{k: v for k, v in r.items() if k not in strip} for r in got] == \
        [{k: v for k, v in r.items() if k not in strip} for r in want]
    assert s["accuracy"] == full["accuracy"]
    # a finished run does nothing more
    again = run_eval(pipeline, items, cfg, part, bundle_id="tiny", data_sha256=rep.sha256)
    assert again["evaluated"] == 0 and again["resumed"] == 6


def test_blind_mode_and_errors_are_counted(pipeline, tmp_path):
    rows = [{"id": "b1", "question": "Is the sky blue?", "options": ["yes", "no"], "answer": "A", "category": "k"},
            {"id": "b2", "question": "Two plus two?", "answer": "4", "category": "k"}]
    items, rep = load_items(_write_jsonl(tmp_path / "blind.jsonl", rows), need_image=False)
    s = run_eval(pipeline, items, EvalConfig(mode="blind", thinking=False, sampling="greedy", answer_budget=4),
                 tmp_path / "b.jsonl", bundle_id="tiny", data_sha256=rep.sha256)
    assert s["n"] == 2 and s["errors"] == 0 and s["mode"] == "blind" and not s["thinking"]
    # an image that breaks at run time is a wrong answer with its error recorded, not a crash
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    items, rep = load_items(_write_jsonl(tmp_path / "bad.jsonl", [
        {"id": "x", "image": "bad.png", "question": "Q?", "answer": "a"}]))
    s = run_eval(pipeline, items, EvalConfig(sampling="greedy", **SMALL), tmp_path / "x.jsonl", bundle_id="tiny",
                 data_sha256=rep.sha256)
    assert s["errors"] == 1 and s["accuracy"] == 0.0


def test_same_ids_in_another_file_are_evaluated_not_reused(pipeline, question_set, tmp_path, caplog):
    """Regression: a second data file with the same ids was scored from the first file's
    rows (100% without running the model). Each file must get its own accuracy."""
    d, rows = question_set
    cfg = EvalConfig(sampling="greedy", **SMALL)
    first = [dict(r) for r in rows]
    for r in first:  # gold answers = what the pipeline answers: 100% on this file
        r["answer"] = pipeline.answer(d / r["image"], r["question"], r["options"], sampling="greedy",
                                      seed=item_seed(0, r["id"]), **SMALL).answer
    second = [dict(r, answer=next(x for x in "ABC" if x != r["answer"])) for r in first]  # 0% on this one
    pred = tmp_path / "pred.jsonl"
    items1, rep1 = load_items(_write_jsonl(d / "first.jsonl", first))
    items2, rep2 = load_items(_write_jsonl(d / "second.jsonl", second))
    s1 = run_eval(pipeline, items1, cfg, pred, bundle_id="tiny", data_sha256=rep1.sha256)
    s2 = run_eval(pipeline, items2, cfg, pred, bundle_id="tiny", data_sha256=rep2.sha256)
    assert (s1["accuracy"], s1["evaluated"]) == (1.0, 6)
    assert (s2["accuracy"], s2["evaluated"], s2["resumed"]) == (0.0, 6, 0)
    # back to the first file: its rows are still there and reused, and it says so
    with caplog.at_level("WARNING", logger="benchmarks.accuracy"):
        again = run_eval(pipeline, items1, cfg, pred, bundle_id="tiny", data_sha256=rep1.sha256)
    assert (again["accuracy"], again["resumed"], again["evaluated"]) == (1.0, 6, 0)
    assert "reusing 6 of 6 rows" in caplog.text and "6 rows of other data" in caplog.text
    assert len(pred.read_text().splitlines()) == 12  # nothing deleted, nothing doubled
