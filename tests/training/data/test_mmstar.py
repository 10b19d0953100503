"""MMStar-style parquet / TSV loader and the eval-set writer."""

from __future__ import annotations

import base64
import csv
import io
import json

import pytest
from PIL import Image

from runtime.errors import ConfigError
from training.data.mmstar import load_mmstar, split_options, write_eval_set


def _png(color=(0, 128, 255)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (16, 12), color).save(buf, format="PNG")
    return buf.getvalue()


GOOD_Q = "What colour is the square?\nOptions: A: red, B: blue, C: green, D: yellow"


def test_split_options():
    assert split_options(GOOD_Q) == ("What colour is the square?", ("red", "blue", "green", "yellow"))
    assert split_options("Which is bigger?\nOptions: A. 3, 4 B. 5 C. 7") == ("Which is bigger?", ("3, 4", "5", "7"))
    assert split_options("No options here") == ("No options here", ())


def test_parquet_rows(tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    rows = [
        {"index": 0, "question": GOOD_Q, "image": {"bytes": _png(), "path": None}, "answer": "B",
         "category": "coarse perception", "l2_category": "image scene"},
        {"index": 1, "question": GOOD_Q, "image": {"bytes": _png((1, 2, 3)), "path": None}, "answer": "E",
         "category": "math", "l2_category": "x"},
        {"index": 2, "question": GOOD_Q, "image": {"bytes": b"not an image", "path": None}, "answer": "A",
         "category": "math", "l2_category": "x"},
        {"index": 3, "question": GOOD_Q, "image": {"bytes": None, "path": None}, "answer": "A",
         "category": "math", "l2_category": "x"},
        {"index": 4, "question": "no options at all", "image": {"bytes": _png(), "path": None}, "answer": "A",
         "category": "math", "l2_category": "x"},
        {"index": 5, "question": GOOD_Q, "image": {"bytes": _png((9, 9, 9)), "path": None}, "answer": "d",
         "category": "instance reasoning", "l2_category": "relation"},
    ]
    path = tmp_path / "mmstar.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    items, report = load_mmstar(path)
    assert [i.id for i in items] == ["0", "5"]
    assert report.total == 6 and report.problems == {"malformed": 2, "bad image": 1, "missing image": 1}
    assert items[0].options == ("red", "blue", "green", "yellow") and items[0].answer == "B"
    assert items[0].answer_text == "blue" and items[1].answer == "D"
    assert items[0].category == "coarse perception" and items[0].subcategory == "image scene"

    out = write_eval_set(items, tmp_path / "eval")
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert lines[0]["question"] == "What colour is the square?" and lines[0]["answer"] == "B"
    with Image.open(tmp_path / "eval" / lines[0]["image"]) as img:
        assert img.size == (16, 12)


def test_tsv_rows_with_option_columns(tmp_path):
    path = tmp_path / "mmstar.tsv"
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh, delimiter="\t")
        w.writerow(["index", "question", "A", "B", "C", "D", "answer", "category", "l2-category", "image"])
        w.writerow([7, "How many dots?", "1", "2", "3", "", "C", "math", "count",
                    base64.b64encode(_png()).decode()])
        w.writerow([8, "How many dots?", "1", "2", "3", "4", "B", "math", "count", "%%%not-base64%%%"])
        w.writerow([9, "", "1", "2", "3", "4", "B", "math", "count", base64.b64encode(_png()).decode()])
    items, report = load_mmstar(path)
    assert len(items) == 1 and items[0].options == ("1", "2", "3") and items[0].answer == "C"
    assert items[0].subcategory == "count"
    assert report.problems == {"missing image": 1, "malformed": 1}


def test_unknown_files_fail_clearly(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_mmstar(tmp_path / "x.parquet")
    (tmp_path / "x.txt").write_text("hi")
    with pytest.raises(ConfigError, match="parquet or .tsv"):
        load_mmstar(tmp_path / "x.txt")
    (tmp_path / "y.parquet").write_text("not parquet")
    with pytest.raises(ConfigError, match="not a readable parquet"):
        load_mmstar(tmp_path / "y.parquet")
