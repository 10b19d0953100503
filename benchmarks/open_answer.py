"""Open-answer scoring: the gold answer or a listed synonym, after normalising, and nothing else.

    normalise("The Circles.")  -> "circle"       case, punctuation, articles, plurals, number words
    score("Two", item)         -> True when the gold is "2" (or lists "two")
    score("not red", item)     -> False when the gold is "red": no substring credit
    form_ok("small black circle", item) -> False for a yes/no item: not "yes" or "no"

An item is a `benchmarks.accuracy.EvalItem` or a mapping with the same keys (a JSONL row):
`answer` (for multiple choice the gold letter), `aliases`, `options`, `category`, and
optionally `form` (what kind of answer the question asks for). Multiple-choice answers are a
letter in range, or exactly one option's text.

`majority_baseline` answers every item with its question type's most common gold answer,
counted on a reference draw (another seed of the same generator), so the baseline is not
fitted to the items it is scored on. Every rate carries a Wilson 95% interval.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.stats import wilson_interval
from runtime.errors import ConfigError

LETTERS = "ABCDEFGHIJ"
_ARTICLES = frozenset({"a", "an", "the"})
_NUMBER_WORDS = {w: str(i) for i, w in enumerate((
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
    "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen", "twenty"))}
# words ending in "s" that are not plurals (the short ones, <= 3 letters, are never touched)
_NOT_PLURAL = frozenset({"this", "plus", "minus", "bias", "atlas", "canvas", "lens", "iris", "series",
                         "species", "news", "status", "focus", "across", "always", "perhaps", "whereas"})

# What counts as an answer of the right form (not whether it is right): the words people
# use for colours, shapes and places, far beyond any one world's vocabulary.
COLOR_WORDS = frozenset((
    "red", "orange", "yellow", "green", "blue", "purple", "pink", "brown", "black", "white", "grey", "gray",
    "violet", "indigo", "cyan", "magenta", "teal", "turquoise", "navy", "maroon", "beige", "tan", "gold",
    "silver", "olive", "lime", "crimson", "cream", "lavender", "peach", "aqua", "khaki", "ivory", "coral"))
COLOR_MODIFIERS = frozenset(("light", "dark", "pale", "bright", "deep", "muted", "pure"))
SHAPE_WORDS = frozenset((
    "circle", "square", "rectangle", "triangle", "star", "hexagon", "pentagon", "diamond", "ellipse", "oval",
    "heart", "cross", "arrow", "rhombus", "octagon", "trapezoid", "parallelogram", "crescent", "moon", "ring",
    "dot", "line", "polygon", "semicircle", "kite", "plus", "box", "sphere", "cube", "cone", "cylinder"))
POSITION_WORDS = frozenset(("left", "right", "top", "bottom", "above", "below", "center", "centre", "middle",
                            "up", "down", "top left", "top right", "bottom left", "bottom right"))
YES_NO = frozenset(("yes", "no"))
# the answer form each held-out question type asks for (training.data.heldout.asking.FORMS)
CATEGORY_FORMS = {"exists": "yesno", "negation": "yesno", "verify": "yesno", "color": "color",
                  "shape": "shape", "count": "number", "position": "position", "text": "text"}


def _singular(word: str) -> str:
    if len(word) <= 3 or word in _NOT_PLURAL or not word.isalpha():
        return word
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith(("sses", "xes", "ches", "shes", "zes")):
        return word[:-2]
    if word.endswith(("ss", "us", "is")):
        return word
    return word[:-1] if word.endswith("s") else word


def normalise(text: str) -> str:
    """Lower case; punctuation to spaces; articles dropped; number words as digits; plurals singular."""
    words = re.sub(r"[^\w\s]", " ", str(text).lower()).split()
    return " ".join(_singular(_NUMBER_WORDS.get(w, w)) for w in words if w not in _ARTICLES)


@dataclass(frozen=True)
class _Gold:
    answer: str
    aliases: tuple[str, ...]
    options: tuple[str, ...] | None
    category: str
    form: str | None


def _gold(item: Any) -> _Gold:
    get = item.get if isinstance(item, Mapping) else (lambda k, d=None: getattr(item, k, d))
    options = get("options")
    form = get("form")
    return _Gold(str(get("answer")).strip(), tuple(str(a) for a in (get("aliases") or ())),
                 tuple(str(o) for o in options) if options else None, str(get("category") or "all"),
                 str(form) if form else None)


def _letter(answer_text: str, options: Sequence[str]) -> str | None:
    """The option an answer names: a letter in range ("B", "b", "(B)", "B."), exactly one
    option's text, or a letter followed by exactly that option's text ("B. circle")."""
    raw = answer_text.strip()
    bare = raw.strip("()[].:;, ").upper()
    if len(bare) == 1 and bare in LETTERS[: len(options)]:
        return bare
    norm = normalise(raw)
    texts = [normalise(o) for o in options]
    if norm and texts.count(norm) == 1:
        return LETTERS[texts.index(norm)]
    m = re.match(r"^\(?([A-Ja-j])[.):]\s*(.+)$", raw)
    if m and m.group(1).upper() in LETTERS[: len(options)]:
        idx = LETTERS.index(m.group(1).upper())
        if normalise(m.group(2)) == texts[idx]:
            return LETTERS[idx]
    return None


def score(answer_text: str | None, item: Any) -> bool:
    """Right when the normalised answer equals the normalised gold or a listed alias
    (multiple choice: names the gold option). Nothing else earns credit."""
    if answer_text is None:
        return False
    g = _gold(item)
    if g.options:
        return _letter(answer_text, g.options) == g.answer.upper()
    pred = normalise(answer_text)
    return bool(pred) and pred in {normalise(a) for a in (g.answer, *g.aliases)}


def answer_form(item: Any) -> str:
    """What kind of answer an item asks for: its `form`, else its question type's, else read
    off the gold answer (yes/no, a number, a colour, a shape, a position word, else text)."""
    g = _gold(item)
    if g.options:
        return "choice"
    if g.form:
        return g.form
    if g.category in CATEGORY_FORMS:
        return CATEGORY_FORMS[g.category]
    gold = normalise(g.answer)
    for form, ok in (("yesno", gold in YES_NO), ("number", gold.isdigit()), ("color", gold in COLOR_WORDS),
                     ("shape", gold in SHAPE_WORDS), ("position", gold in POSITION_WORDS)):
        if ok:
            return form
    return "text"


def form_ok(answer_text: str | None, item: Any) -> bool:
    """Whether the answer has the form the question asks for, right or wrong: yes/no for a
    yes/no item, a colour word for a colour item, a number for a count, a shape word, a
    position word, one word for a text item, a valid option for multiple choice."""
    if answer_text is None:
        return False
    form = answer_form(item)
    if form == "choice":
        return _letter(answer_text, _gold(item).options or ()) is not None
    n = normalise(answer_text)
    words = n.split()
    if form == "yesno":
        return n in YES_NO
    if form == "number":
        return n.isdigit()
    if form == "color":
        return n in COLOR_WORDS or (len(words) == 2 and words[0] in COLOR_MODIFIERS and words[1] in COLOR_WORDS)
    if form == "shape":
        return n in SHAPE_WORDS
    if form == "position":
        return n in POSITION_WORDS
    if form == "text":
        return len(words) == 1
    return bool(n)


def _rate(k: int, n: int) -> dict:
    return {"n": n, "correct": k, "accuracy": k / n if n else 0.0, "ci95": list(wilson_interval(k, n))}


def _gold_text(g: _Gold) -> str:
    if g.options and len(g.answer) == 1 and g.answer.upper() in LETTERS[: len(g.options)]:
        return normalise(g.options[LETTERS.index(g.answer.upper())])
    return normalise(g.answer)


def _most_common(counter: Counter) -> str | None:
    # ties broken by the answer itself, so the baseline does not depend on file order
    return min(counter.items(), key=lambda kv: (-kv[1], kv[0]))[0] if counter else None


def majority_baseline(items: Iterable[Any], *, reference: Iterable[Any]) -> dict:
    """Score "always the most common gold answer of the question type" on `items`.

    The majority answers are counted on `reference` (a separate draw, e.g. another seed):
    {"categories": {type: {"answer", "n", "correct", "accuracy", "ci95"}}, "overall": {...}}.
    A multiple-choice item is answered with the option that reads as the majority answer,
    or, if none does, with the reference's most common gold letter of that type.
    """
    texts: dict[str, Counter] = {}
    letters: dict[str, Counter] = {}
    for ref in reference:
        g = _gold(ref)
        texts.setdefault(g.category, Counter())[_gold_text(g)] += 1
        if g.options:
            letters.setdefault(g.category, Counter())[g.answer.upper()] += 1
    every = sum(texts.values(), Counter())
    per: dict[str, list[bool]] = {}
    chosen: dict[str, str | None] = {}
    for item in items:
        g = _gold(item)
        answer = _most_common(texts.get(g.category) or every)
        chosen[g.category] = answer
        if g.options:
            opts = [normalise(o) for o in g.options]
            guess = LETTERS[opts.index(answer)] if answer in opts else _most_common(letters.get(g.category, Counter()))
            ok = guess == g.answer.upper()
        else:
            ok = answer is not None and answer in {normalise(a) for a in (g.answer, *g.aliases)}
        per.setdefault(g.category, []).append(ok)
    cats = {c: {"answer": chosen[c], **_rate(sum(v), len(v))} for c, v in sorted(per.items())}
    total = [ok for v in per.values() for ok in v]
    return {"categories": cats, "overall": _rate(sum(total), len(total)),
            "reference_n": sum(every.values())}


def read_records(path: str | Path) -> list[dict]:
    """The records of a predictions JSONL (`edge eval` writes one per item)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such predictions file")
    out = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            raise ConfigError(f"{path} line {n} is not JSON") from None
        if not isinstance(rec, dict) or "id" not in rec:
            raise ConfigError(f"{path} line {n} is not a prediction record (no id)")
        out.append(rec)
    return out


def score_records(items: Sequence[Any], records: Iterable[Mapping], *, reference: Iterable[Any] | None = None) -> dict:
    """Accuracy and right-form rate per question type (Wilson 95%) of `records` (each with
    "id" and "prediction") on `items`, with the majority baseline when `reference` is given."""
    by_id = {str(r["id"]): r for r in records}
    ids = [str(_get(it, "id")) for it in items]
    missing = [i for i in ids if i not in by_id]
    if missing:
        raise ConfigError(f"the predictions cover {len(ids) - len(missing)} of {len(ids)} items "
                          f"(first missing: {missing[0]!r}): not a run over this split, or unfinished")
    acc: dict[str, list[bool]] = {}
    form: dict[str, list[bool]] = {}
    chance: dict[str, list[float]] = {}  # multiple choice: what a uniform pick among the options expects
    for it, rid in zip(items, ids, strict=True):
        pred = by_id[rid].get("prediction")
        g = _gold(it)
        acc.setdefault(g.category, []).append(score(pred, it))
        form.setdefault(g.category, []).append(form_ok(pred, it))
        if g.options:
            chance.setdefault(g.category, []).append(1 / len(g.options))

    def rates(a: list[bool], f: list[bool], ch: list[float]) -> dict:
        return {**_rate(sum(a), len(a)), "form": _rate(sum(f), len(f)),
                "chance": sum(ch) / len(ch) if ch else None}

    cats = {c: rates(acc[c], form[c], chance.get(c, [])) for c in sorted(acc)}
    out = {"categories": cats, "overall": rates([x for v in acc.values() for x in v],
                                                [x for v in form.values() for x in v],
                                                [x for v in chance.values() for x in v])}
    if reference is not None:
        out["baseline"] = majority_baseline(items, reference=reference)
    return out


def _get(item: Any, key: str) -> Any:
    return item.get(key) if isinstance(item, Mapping) else getattr(item, key)


def scores_markdown(summary: Mapping, title: str = "") -> str:
    """A table: per question type, n, accuracy and right-form rate with intervals, and the baseline."""
    def pct(r: Mapping) -> str:
        return f"{100 * r['accuracy']:.1f} ({100 * r['ci95'][0]:.1f}–{100 * r['ci95'][1]:.1f})"

    base = (summary.get("baseline") or {}).get("categories", {})
    mc = summary["overall"].get("chance") is not None
    lines = [f"## {title}" if title else "## Open-answer scores", "",
             "| question type | n | accuracy % (95% CI) | right form % (95% CI) | majority baseline % (95% CI) |"
             + (" chance % |" if mc else ""), "|---|---:|---|---|---|" + ("---:|" if mc else "")]
    rows = [*summary["categories"].items(), ("**overall**", summary["overall"])]
    for name, r in rows:
        b = base.get(name) if name in base else (summary.get("baseline") or {}).get("overall")
        btxt = (f"{pct(b)} ({b['answer']!r})" if b and "answer" in b else pct(b)) if b else "–"
        tail = (f" {100 * r['chance']:.1f} |" if r.get("chance") is not None else " – |") if mc else ""
        lines.append(f"| {name} | {r['n']} | {pct(r)} | {pct(r['form'])} | {btxt} |{tail}")
    return "\n".join(lines) + "\n"
