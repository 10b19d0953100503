"""LLaVA conversation loader: good rows load, bad rows are reported and counted."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from runtime.errors import ConfigError
from training.data.llava import iter_llava, load_llava


def _conv(q="<image>\nWhat is shown?", a="A red circle."):
    return [{"from": "human", "value": q}, {"from": "gpt", "value": a}]


@pytest.fixture
def folder(tmp_path):
    (tmp_path / "imgs").mkdir()
    Image.new("RGB", (8, 8), (255, 0, 0)).save(tmp_path / "imgs" / "a.png")
    return tmp_path


ROWS = [
    {"id": "good", "image": "imgs/a.png", "conversations": _conv() + _conv("Colour?", "Red.")},
    {"id": "text-only", "conversations": _conv("What is 2+2?", "4")},
    {"id": "missing", "image": "imgs/nope.png", "conversations": _conv()},
    {"id": "no-conv", "image": "imgs/a.png"},
    {"id": "gpt-first", "image": "imgs/a.png", "conversations": [{"from": "gpt", "value": "hi"}]},
    {"id": "unanswered", "image": "imgs/a.png", "conversations": [{"from": "human", "value": "Q?"}]},
    {"id": "bad-role", "image": "imgs/a.png", "conversations": [{"from": "robot", "value": "Q?"}]},
    {"id": "two-q", "image": "imgs/a.png", "conversations": [{"from": "human", "value": "Q?"},
                                                               {"from": "human", "value": "Q2?"}]},
    {"id": "not-text", "image": "imgs/a.png", "conversations": [{"from": "human", "value": 3}]},
    "just a string",
    {"id": "two-images", "image": ["imgs/a.png", "imgs/a.png"], "conversations": _conv()},
    {"id": "list-image", "image": ["imgs/a.png"], "conversations": [{"from": "system", "value": "be nice"}, *_conv()]},
    {"id": "user-assistant", "image": "imgs/a.png",
     "conversations": [{"from": "user", "value": "Q <image>"}, {"from": "assistant", "value": "A"}]},
]


def test_loader_reports_and_skips_bad_rows(folder):
    path = folder / "data.json"
    path.write_text(json.dumps(ROWS))
    examples, report = load_llava(path)
    assert [e.id for e in examples] == ["good", "text-only", "list-image", "user-assistant"]
    assert report.total == len(ROWS) and report.loaded == 4
    assert report.problems == {"malformed": 7, "missing image": 1, "unsupported": 1}
    assert "skipped" in report.summary()
    good = examples[0]
    assert good.image == (folder / "imgs/a.png").resolve()
    assert [(p.question, p.answer) for p in good.qa] == [("What is shown?", "A red circle."), ("Colour?", "Red.")]
    assert examples[1].image is None
    assert examples[3].qa[0].question == "Q"


def test_rows_keep_their_source_index(folder):
    path = folder / "data.json"
    path.write_text(json.dumps(ROWS))
    rows = list(iter_llava(path))
    assert [r.index for r in rows] == list(range(len(ROWS)))
    assert rows[2].example is None and rows[2].reason == "missing image"
    assert rows[3].reason == "malformed" and "conversations" in rows[3].problem


def test_jsonl_with_a_broken_line(folder):
    path = folder / "data.jsonl"
    lines = [json.dumps(ROWS[0]), "{not json", json.dumps(ROWS[1])]
    path.write_text("\n".join(lines) + "\n")
    rows = list(iter_llava(path))
    assert [r.example is not None for r in rows] == [True, False, True]
    assert rows[1].reason == "malformed"


def test_image_root_can_be_elsewhere(folder, tmp_path_factory):
    other = tmp_path_factory.mktemp("elsewhere")
    path = other / "data.json"
    path.write_text(json.dumps([ROWS[0]]))
    assert load_llava(path)[1].problems == {"missing image": 1}
    assert load_llava(path, folder)[1].loaded == 1


def test_unreadable_files_fail_with_one_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_llava(tmp_path / "none.json")
    bad = tmp_path / "bad.json"
    bad.write_text("[{\"id\": 1,")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_llava(bad)
