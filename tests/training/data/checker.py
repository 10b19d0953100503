"""An independent answer checker for the synthetic world, used only by the tests.

It reads the raw JSON scene graph and the record's `query` and recomputes the answer with
its own code (its own region names, matching, counting and phrasing), so a bug in the
generators or in `training.data.language` cannot hide by being shared with the check.
Only 3x3 grids (the default) are supported here. Everyday layouts give shapes an exact
centre (x, y as fractions of the side); the checker reads positions off those (grid
shapes: off the cell and the jitter) with its own arithmetic.
"""

from __future__ import annotations

from collections import Counter

ROW = ("top", "middle", "bottom")
COL = ("left", "center", "right")
ORDINAL = ("first", "second", "third", "fourth", "fifth", "sixth")
SIZE_RANK = {"small": 0, "medium": 1, "large": 2}
STEP = {"left": (0, -1), "right": (0, 1), "above": (-1, 0), "below": (1, 0)}


GRID_RADIUS = {"small": 0.45, "medium": 0.66, "large": 0.9}  # of half a cell


def centre_of(o: dict) -> tuple[float, float]:
    if o.get("r", 0) > 0:
        return o["x"], o["y"]
    half = 1 / 6
    room = max(0.0, half - half * GRID_RADIUS[o["size"]] - 0.04 / 3)
    return (o["col"] + 0.5) / 3 + o.get("dx", 0) * room, (o["row"] + 0.5) / 3 + o.get("dy", 0) * room


def region(item: dict) -> str:
    r, c = item["row"], item["col"]
    if r == 1 and c == 1:
        return "center"
    return f"{ROW[r]} {COL[c]}"


def fits(obj: dict, ref: dict) -> bool:
    for key, want in ref.items():
        have = region(obj) if key == "region" else obj[key]
        if have != want:
            return False
    return True


def the_shape(scene: dict, ref: dict) -> dict:
    found = [o for o in scene["shapes"] if fits(o, ref)]
    assert len(found) == 1, f"ref {ref} is not unique: {len(found)} matches"
    return found[0]


def n_shapes(scene: dict, flt: dict) -> int:
    return sum(1 for o in scene["shapes"] if fits(o, flt))


def the_text(scene: dict, tref: dict) -> dict:
    found = []
    for t in scene["texts"]:
        is_num = t["text"].isdigit()
        if "region" in tref and region(t) != tref["region"]:
            continue
        if "color" in tref and t["color"] != tref["color"]:
            continue
        if "kind" in tref and is_num != (tref["kind"] == "number"):
            continue
        if "text" in tref and t["text"] != tref["text"]:
            continue
        found.append(t)
    assert len(found) == 1, f"text ref {tref} is not unique"
    return found[0]


def full_name(o: dict) -> str:
    return f"{o['size']} {o['color']} {o['shape']}"


def phrase(ref: dict) -> str:
    words = [ref[k] for k in ("size", "color") if k in ref]
    return " ".join([*words, ref.get("shape", "shape")])


def yes(flag: bool) -> str:
    return "yes" if flag else "no"


def bar(scene: dict, color: str) -> int:
    (value,) = [b["value"] for b in scene["bars"] if b["color"] == color]
    return value


def numbers(scene: dict) -> list[int]:
    return [int(t["text"]) for t in scene["texts"] if t["text"].isdigit()]


def expected_answer(scene: dict, q: dict) -> str:  # noqa: C901 - one branch per query type
    t = q["type"]
    if t == "scene_type":
        return "a bar chart" if scene["kind"] == "chart" else "a picture of shapes"
    if t == "background_color":
        return scene["background"]
    if t == "background_pattern":
        return scene["pattern"]
    if t == "has_text":
        return yes(len(scene["texts"]) > 0)
    if t == "dominant_color":
        ranked = Counter(o["color"] for o in scene["shapes"]).most_common()
        assert ranked[0][1] >= 2 and (len(ranked) == 1 or ranked[1][1] < ranked[0][1])
        return ranked[0][0]
    if t == "attr":
        return the_shape(scene, q["target"])[q["attr"]]
    if t == "count":
        return str(n_shapes(scene, q["filter"]))
    if t == "read_text":
        return the_text(scene, q["target"])["text"].lower()
    if t == "absent":
        return yes(n_shapes(scene, q["filter"]) == 0)
    if t == "verify":
        return yes(the_shape(scene, q["target"])[q["attr"]] == q["value"])
    if t == "side":
        x, y = centre_of(the_shape(scene, q["target"]))
        v = x if q["axis"] == "h" else y
        assert v < 1 / 3 or v >= 2 / 3, "a side question about a shape in the middle third"
        return ("left" if v < 1 / 3 else "right") if q["axis"] == "h" else ("top" if v < 1 / 3 else "bottom")
    if t == "relative":
        (ax, ay), (bx, by) = centre_of(the_shape(scene, q["a"])), centre_of(the_shape(scene, q["b"]))
        d = ay - by if q["axis"] == "v" else ax - bx
        assert abs(d) > 0.1, "a relative-position question about shapes that are not apart"
        return ("above" if d < 0 else "below") if q["axis"] == "v" else ("left" if d < 0 else "right")
    if t == "text_color":
        return the_text(scene, {"text": q["text"]})["color"]
    if t == "chart_value":
        return str(bar(scene, q["color"]))
    if t == "relation":
        a, b = the_shape(scene, q["a"]), the_shape(scene, q["b"])
        return yes({"left": a["col"] < b["col"], "right": a["col"] > b["col"],
                    "above": a["row"] < b["row"], "below": a["row"] > b["row"]}[q["rel"]])
    if t in ("neighbor", "neighbor_attr"):
        s = the_shape(scene, q["target"])
        dr, dc = STEP[q["dir"]]
        (n,) = [o for o in scene["shapes"] if o["row"] == s["row"] + dr and o["col"] == s["col"] + dc]
        return full_name(n) if t == "neighbor" else n[q["attr"]]
    if t == "compare_size":
        a, b = the_shape(scene, q["a"]), the_shape(scene, q["b"])
        assert a["size"] != b["size"]
        a_big = SIZE_RANK[a["size"]] > SIZE_RANK[b["size"]]
        return phrase(q["a"]) if a_big == (q["which"] == "larger") else phrase(q["b"])
    if t == "same_attr":
        return yes(the_shape(scene, q["a"])[q["attr"]] == the_shape(scene, q["b"])[q["attr"]])
    if t == "remove_count":
        return str(len(scene["shapes"]) - n_shapes(scene, q["filter"]))
    if t == "exists":
        return yes(n_shapes(scene, q["filter"]) > 0)
    if t == "more_than":
        return yes(n_shapes(scene, q["a"]) > n_shapes(scene, q["b"]))
    if t == "all_same":
        return yes(len({o[q["attr"]] for o in scene["shapes"] if fits(o, q["filter"])}) == 1)
    if t == "chart_extreme":
        pick = max if q["which"] == "max" else min
        return pick(scene["bars"], key=lambda b: b["value"])["color"]
    if t == "chart_compare":
        va, vb = bar(scene, q["a"]), bar(scene, q["b"])
        return yes(va > vb if q["which"] == "taller" else va < vb)
    if t == "number_extreme":
        return str(max(numbers(scene)) if q["which"] == "max" else min(numbers(scene)))
    if t == "count_diff":
        return str(n_shapes(scene, q["a"]) - n_shapes(scene, q["b"]))
    if t == "count_sum":
        return str(n_shapes(scene, q["a"]) + n_shapes(scene, q["b"]))
    if t == "number_sum":
        return str(sum(numbers(scene)))
    if t == "number_arith":
        v = int(the_text(scene, q["target"])["text"])
        return str(v + q["k"] if q["op"] == "add" else v - q["k"])
    if t == "chart_sum":
        return str(sum(bar(scene, c) for c in q["colors"]))
    if t == "chart_total":
        return str(sum(b["value"] for b in scene["bars"]))
    if t == "chart_diff":
        return str(bar(scene, q["a"]) - bar(scene, q["b"]))
    if t == "chart_range":
        values = [b["value"] for b in scene["bars"]]
        return str(max(values) - min(values))
    if t == "where":
        tgt = q["target"]
        return region(the_text(scene, tgt) if "text" in tgt else the_shape(scene, tgt))
    if t == "which_at":
        (s,) = [o for o in scene["shapes"] if region(o) == q["region"]]
        return full_name(s)
    if t == "chart_at":
        n = len(scene["bars"])
        i = q["position"] - 1 if q["from"] == "left" else n - q["position"]
        return scene["bars"][i]["color"]
    if t == "chart_position":
        (i,) = [k for k, b in enumerate(scene["bars"]) if b["color"] == q["color"]]
        return ORDINAL[i]
    raise AssertionError(f"the checker does not know query type {t}")


COLOR_WORDS = {"red", "orange", "yellow", "green", "blue", "purple", "brown", "black", "pink", "white", "grey"}
SHAPE_WORDS = {"circle", "square", "triangle", "star", "hexagon", "diamond", "cross", "rectangle", "pentagon",
               "ellipse", "heart", "arrow"}


def parse_name(text: str) -> dict:
    """"large red circle" / "red shape" -> a ref; raises on words outside the vocabulary."""
    ref: dict = {}
    for w in text.split():
        if w in SIZE_RANK:
            ref["size"] = w
        elif w in COLOR_WORDS:
            ref["color"] = w
        elif w in SHAPE_WORDS:
            ref["shape"] = w
        elif w != "shape":
            raise AssertionError(f"{w!r} in {text!r} is not a word of the world")
    return ref


def alias_ok(scene: dict, answer_obj: dict, alias: str) -> bool:
    """An open-answer alias names the answer object and nothing else in the scene."""
    matches = [o for o in scene["shapes"] if fits(o, parse_name(alias))]
    return len(matches) == 1 and matches[0] == answer_obj
