"""Trained checkpoints -> bundles, with the exporter the `edge export` command uses."""

from __future__ import annotations

from pathlib import Path

from edge.recipes.default_bundle.config import DEFAULT_BUDGETS, REASONER_STAGE, SYSTEMS
from export.bundle_writer import ExportRequest, export_bundle
from training.config import Recipe
from training.model_init import final_dir

SHIPPED_NAME = "extract-think-default"
SHIPPED_FORMATS = ("gguf", "onnx")
SHIPPED_QUANTS = ("q8_0", "int8")


def export_system(recipe: Recipe, perception_stage: str, reasoner_stage: str | None, out: Path, *,
                  formats: tuple[str, ...] = ("gguf",), quants: tuple[str, ...] = ("q8_0",),
                  examples: tuple[dict[str, str], ...] = (), example_files: tuple[Path, ...] = (),
                  name: str | None = None, verify: bool = True) -> Path:
    """One system's bundle from the final checkpoints of its stages (parity-verified)."""
    req = ExportRequest(
        out=out, perception=final_dir(recipe, perception_stage),
        reasoner=final_dir(recipe, reasoner_stage) if reasoner_stage else None,
        formats=formats, quants=quants, name=name or out.name, budgets=DEFAULT_BUDGETS,
        examples=examples, example_files=example_files, overwrite=True, verify=verify,
    )
    return export_bundle(req)


def export_default(recipe: Recipe, bundles_dir: Path) -> tuple[Path, bool]:
    """The Extract+Think bundle in both formats, without examples; (path, skipped)."""
    out = bundles_dir / "extract-think"
    if (out / "manifest.json").is_file():
        return out, True
    return export_system(recipe, "extract", REASONER_STAGE, out, formats=SHIPPED_FORMATS,
                         quants=SHIPPED_QUANTS, name=SHIPPED_NAME), False


def export_baseline(recipe: Recipe, bundles_dir: Path, mode: str) -> Path:
    """A comparison system's bundle (GGUF only: the evaluation runs on llama.cpp)."""
    _, stage, with_reasoner = SYSTEMS[mode]
    out = bundles_dir / mode
    if not (out / "manifest.json").is_file():
        export_system(recipe, stage, REASONER_STAGE if with_reasoner else None, out)
    return out


def export_with_examples(recipe: Recipe, out: Path, examples: list[dict], data_dir: Path) -> Path:
    """The shippable Extract+Think bundle: both formats, with example images and questions."""
    files = tuple(dict.fromkeys(data_dir / e["source"] for e in examples))
    manifest_examples = tuple({k: v for k, v in e.items() if k != "source"} for e in examples)
    return export_system(recipe, "extract", REASONER_STAGE, out, formats=SHIPPED_FORMATS,
                         quants=SHIPPED_QUANTS, examples=manifest_examples, example_files=files,
                         name=SHIPPED_NAME)
