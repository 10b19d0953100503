"""The shippable bundle (with examples) in the run folder, and installing it on request.

Examples are plainly worded test questions about one everyday picture (one shape, a few
shapes or a sign, from the held-out-composition split) that the bundle answered right on
every backend and sampling setting `edge run` may use, so a newcomer running `edge run`
with no arguments sees something sensible. They are chosen *because* the bundle answers
them: they demonstrate, they do not measure (the accuracy tables and
tests/edge/test_default_bundle.py measure, and no test assumes an example is answered right).
"""

from __future__ import annotations

import json
import logging
import shutil
from collections import defaultdict
from pathlib import Path

from edge.recipes.default_bundle.bundles import export_with_examples
from edge.recipes.default_bundle.config import RESULT_FILES, DefaultBundleRun
from edge.recipes.default_bundle.scoring import is_correct
from runtime.atomic import atomic_write_bytes, staged_dir
from runtime.bundle import MANIFEST_NAME, open_bundle
from runtime.defaults import default_bundle_path
from runtime.pipeline import ExtractThink
from training.config import Recipe
from training.data.synth import SynthDataset

log = logging.getLogger(__name__)

# edge/recipes/default_bundle/install.py -> the checkout holding the edge package
CHECKOUT = Path(__file__).resolve().parents[3]


def _answers_everywhere(bundle: Path, data_dir: Path, recs: list[dict]) -> bool:
    """Does the bundle answer every record right on both backends, greedy and with the
    default ("paper") sampling `edge run` uses, with one thread and the default threads?"""
    for backend, threads in (("llamacpp", None), ("llamacpp", 1), ("onnx", None), ("onnx", 1)):
        with ExtractThink.load(bundle, backend=backend, threads=threads, verify="size") as et:
            for rec in recs:
                for sampling in ("greedy", "paper"):
                    res = et.answer(str(data_dir / rec["image"]), rec["question"], rec.get("options"),
                                    sampling=sampling, seed=0)
                    if not is_correct(rec, res.answer):
                        return False
    return True


def pick_examples(run: DefaultBundleRun, bundle: Path, k: int = 3, tries: int = 20) -> list[dict]:
    """Test questions of one image that Extract+Think answers correctly on every backend
    and sampling setting `edge run` may use: an everyday picture first, open questions
    first, varied question types."""
    raw = run.eval_dir / "test-extract-think.jsonl"
    rows = {json.loads(x)["id"]: json.loads(x) for x in raw.read_text().splitlines()} if raw.is_file() else {}
    ds = SynthDataset(run.data_dir)
    everyday = {row["image"] for row in ds.scene_rows() if row["scene"].get("layout", "grid") != "grid"}
    by_image: dict[str, list[dict]] = defaultdict(list)
    for rec in ds.records("test"):
        by_image[rec["image"]].append(rec)
    candidates = []
    for image, recs in by_image.items():
        if len(recs) >= 2 and all(rows.get(r["id"], {}).get("correct") for r in recs):
            score = (image in everyday, sum(1 for r in recs if not r.get("options")), len({r["qtype"] for r in recs}))
            candidates.append((score, image, recs))
    candidates.sort(key=lambda c: c[0], reverse=True)
    for _, image, recs in candidates[:tries]:
        recs = sorted(recs, key=lambda r: r.get("options") is not None)[:k]
        if _answers_everywhere(bundle, run.data_dir, recs):
            return [{"image": f"examples/{Path(image).name}", "question": r["question"],
                     "options": "\n".join(r["options"] or []), "answer": r["answer"],
                     "answer_text": r["answer_text"], "category": r["category"], "source": image}
                    for r in recs]
    log.warning("no test image whose questions the bundle answers right everywhere: no examples")
    return []


def make_bundle(recipe: Recipe, run: DefaultBundleRun, evaluated: Path) -> tuple[Path, bool]:
    """RUN/bundle: the evaluated Extract+Think bundle re-exported with examples; (path, skipped)."""
    if (run.bundle_dir / "manifest.json").is_file():
        return run.bundle_dir, True
    examples = pick_examples(run, evaluated)
    return export_with_examples(recipe, run.bundle_dir, examples, run.data_dir), False


def install_targets(run: DefaultBundleRun) -> tuple[Path, Path | None]:
    """(where the bundle goes, where the results go; None when there is no checkout's docs/)."""
    bundle = run.install_bundle_to or default_bundle_path(must_exist=False)
    results = run.install_results_to
    if results is None and (CHECKOUT / "docs").is_dir():
        results = CHECKOUT / "docs" / "results"
    return Path(bundle), results


def install(run: DefaultBundleRun, bundle: Path) -> dict[str, str]:
    """Replace the installed bundle (checked in full first) and results, each atomically."""
    bundle_to, results_to = install_targets(run)
    open_bundle(bundle, verify="full")  # never install a bundle that does not check out
    with staged_dir(bundle_to, marker=MANIFEST_NAME) as tmp:  # replaces a bundle, nothing else
        shutil.copytree(bundle, tmp, dirs_exist_ok=True)
    log.info("installed %s -> %s", bundle, bundle_to)
    done = {"bundle": str(bundle_to)}
    if results_to is None:
        log.warning("no docs/ folder beside the edge package (not a checkout): results stay in %s",
                    run.results_dir)
        return done
    for name in RESULT_FILES:
        if (run.results_dir / name).is_file():
            atomic_write_bytes(results_to / name, (run.results_dir / name).read_bytes())
    done["results"] = str(results_to)
    return done
