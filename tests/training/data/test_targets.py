"""Captions, focus phrases, statements, extractions and reasoning traces."""

from __future__ import annotations

import re

from runtime.answer import parse_answer
from tests.training.data.checker import expected_answer, region
from training.data.scene import Scene

NAME = re.compile(r"\b(small|medium|large) (red|orange|yellow|green|blue|purple|brown|black) "
                  r"(circle|square|triangle|star|hexagon|diamond|cross)\b")


def _items(scene_json: dict) -> list[tuple[str, str]]:
    return [(f"{o['size']} {o['color']} {o['shape']}", region(o)) for o in scene_json["shapes"]]


def test_caption_and_extraction_describe_every_object_with_its_place(all_records, scene_json):
    for rec in all_records[:1500]:
        scene = scene_json[rec["scene_id"]]
        for text in (rec["caption"], rec["extraction"]):
            for name, where in _items(scene):
                assert f"{name} in the {where}" in text, (rec["id"], name)
            for t in scene["texts"]:
                board = f" on a {t['sign']} sign" if t.get("sign") else ""
                assert f"{t['text'].lower()} is written in {t['color']}{board} in the {region(t)}" in text
            for b in scene["bars"]:
                assert f"{b['color']} with the value {b['value']}" in text
        assert scene["background"] in rec["caption"]


def test_extraction_works_the_statements_in_before_the_full_description(all_records):
    for rec in all_records[:1500]:
        for st in rec["statements"]:
            assert st in rec["extraction"]
        assert st not in rec["caption"] or rec["qtype"] in ("scene_type", "background_pattern", "which_at")
        # after the statements comes everything the caption says, in the caption's order
        caption_body = rec["caption"].split(". ", 1)[1] if ". " in rec["caption"] else ""
        assert rec["extraction"].rstrip().endswith(caption_body.rstrip()), rec["id"]


def test_the_caption_is_the_same_for_every_question_about_an_image(all_records):
    by_scene: dict[str, set[str]] = {}
    for rec in all_records:
        by_scene.setdefault(rec["scene_id"], set()).add(rec["caption"])
    assert all(len(c) == 1 for c in by_scene.values())


def test_focus_comes_from_the_question_alone(all_records):
    """Same query -> same focus whatever the wording or options; it never gives the answer away."""
    by_query: dict[str, set[str]] = {}
    for rec in all_records:
        key = repr(sorted(rec["query"].items()))
        by_query.setdefault(key, set()).add(rec["focus"])
        answer = rec["answer_text"].lower()
        if not re.search(rf"\b{re.escape(answer)}\b", rec["question"].lower()):
            assert not re.search(rf"\b{re.escape(answer)}\b", rec["focus"].lower()), (rec["id"], rec["focus"])
        assert not any(opt in rec["focus"] for opt in ("A.", "B.", "Options"))
    assert all(len(f) == 1 for f in by_query.values())


def test_statements_depend_on_the_focus_not_on_options(all_records):
    seen: dict[tuple[str, str], list[str]] = {}
    for rec in all_records:
        key = (rec["scene_id"], rec["focus"])
        if key in seen:
            assert seen[key] == rec["statements"]
        seen[key] = rec["statements"]


def test_traces_reach_the_checked_answer_from_the_description(all_records, scene_json):
    for rec in all_records:
        assert rec["answer_line"] == f"Answer: {rec['answer']}"
        thinking = rec["thinking"]
        assert "<think>" not in thinking and "</think>" not in thinking
        # every object the trace names is named the same way in both descriptions
        for m in NAME.finditer(thinking):
            if m.group(0) in rec["question"] or m.group(0) in (rec["options"] or []):
                continue  # "is there a small red star?" -> "no shape ... is a small red star"
            assert m.group(0) in rec["extraction"] and m.group(0) in rec["caption"], (rec["id"], m.group(0))
        want = expected_answer(scene_json[rec["scene_id"]], rec["query"])
        assert want.lower() in thinking.lower()
        got = parse_answer(thinking + "\n" + rec["answer_line"], rec["options"])
        assert got.found
        if rec["options"]:
            assert got.letter == rec["answer"], (rec["id"], got)


def test_reasoning_examples_have_steps(all_records):
    steps = [len(r["thinking"].splitlines()) for r in all_records]
    assert min(steps) >= 2
    assert sum(steps) / len(steps) >= 3


def test_scene_from_records_matches_scene_rows(synth_ds, scene_json):
    for scene_id, raw in list(scene_json.items())[:50]:
        assert Scene.from_dict(raw) == synth_ds.scenes()[scene_id]
