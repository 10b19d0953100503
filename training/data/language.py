"""Words and phrases of the synthetic world, shared by questions, targets and traces.

Referring expressions and filters are plain dicts (JSON-ready, stored in each record's
`query`): a *ref* such as {"color": "red", "shape": "circle"} names one shape; a *filter*
with the same keys names a set of shapes. Keeping the wording here means the questions,
the descriptions and the traces always call a thing by the same name.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from training.data.scene import Scene, Shape, TextMark, region_name
from training.data.vocabulary import DIRECTION_PHRASES


def plural(noun: str) -> str:
    return noun + ("es" if noun.endswith(("s", "x", "sh", "ch")) else "s")


def ref_phrase(ref: Mapping[str, str], *, many: bool = False, noun: str = "shape") -> str:
    """{"size": "large", "color": "red", "shape": "circle"} -> "large red circle"."""
    words = [ref[k] for k in ("size", "color") if k in ref]
    noun = ref.get("shape", noun)
    words.append(plural(noun) if many else noun)
    phrase = " ".join(words)
    if "region" in ref:
        phrase += f" in the {ref['region']}"
    return phrase


def count_phrase(n: int, flt: Mapping[str, str]) -> str:
    """3, {"color": "red"} -> "3 red shapes"; 1 -> "1 red shape"; 0 -> "no red shapes"."""
    if n == 0:
        return f"no {ref_phrase(flt, many=True)}"
    return f"{n} {ref_phrase(flt, many=n != 1)}"


def there_are(n: int, flt: Mapping[str, str]) -> str:
    return f"There {'is' if n == 1 else 'are'} {count_phrase(n, flt)}."


def triple(s: Shape) -> dict[str, str]:
    return {"size": s.size, "color": s.color, "shape": s.shape}


def shape_name(s: Shape) -> str:
    """The full description: "large red circle"."""
    return ref_phrase(triple(s))


def article(phrase: str) -> str:
    return ("an " if phrase[:1] in "aeiou" else "a ") + phrase


def text_name(t: TextMark) -> str:
    return text_ref_name(t.text)


def where(item: Shape | TextMark, scene: Scene) -> str:
    return region_name(item.row, item.col, scene.grid)


def matches(s: Shape, ref: Mapping[str, str], scene: Scene | None = None) -> bool:
    for key, value in ref.items():
        if key == "region":
            if scene is None or region_name(s.row, s.col, scene.grid) != value:
                return False
        elif getattr(s, key) != value:
            return False
    return True


def select(scene: Scene, flt: Mapping[str, str]) -> list[Shape]:
    return [s for s in scene.shapes if matches(s, flt, scene)]


def listing(items: Iterable[str], conj: str = "and") -> str:
    items = list(items)
    if not items:
        return ""
    if len(items) == 1:
        return items[0]
    return ", ".join(items[:-1]) + f" {conj} " + items[-1]


def direction_phrase(direction: str) -> str:
    return DIRECTION_PHRASES[direction]


def cap(s: str) -> str:
    return s[:1].upper() + s[1:]


def reading_order(scene: Scene) -> list[Shape | TextMark]:
    """Every item, row by row, left to right: the order descriptions list them in."""
    return sorted((*scene.shapes, *scene.texts), key=lambda o: (o.row, o.col))


def named(item: Shape | TextMark, scene: Scene) -> str:
    """An item as a trace cites it from the description: "the large red circle in the top left"."""
    if isinstance(item, Shape):
        return f"the {shape_name(item)} in the {where(item, scene)}"
    return f"{text_name(item)} in the {where(item, scene)}"


def text_ref_name(text: str) -> str:
    """A written mark by what it says: "the number 42", "the word cat" (words in lower case,
    however the picture writes them: the answer to "what is written" is the word)."""
    return f"the number {text}" if text.isdigit() else f"the word {text.lower()}"


def text_ref_phrase(tref: dict) -> str:
    """A written mark by where, in which colour or of which kind it is, not what it says."""
    if "region" in tref:
        return f"the text in the {tref['region']}"
    if "color" in tref:
        return f"the text written in {tref['color']}"
    return f"the {tref['kind']} written in the image"
