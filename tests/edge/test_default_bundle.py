"""The shipped default bundle: small, verified, accurate well above chance on questions
chosen without it, and `edge run` shows its examples.

Regenerate it with `edge train default-bundle --install` (docs/training.md)."""

from __future__ import annotations

import json

import pytest

from edge.cli import main
from runtime.bundle import open_bundle
from runtime.defaults import default_bundle_path
from runtime.pipeline import ExtractThink
from training.data.scene import SceneConfig
from training.data.synth import SynthConfig, SynthDataset, write_dataset

# Multiple-choice questions about images of the synthetic world's held-out compositions
# (colour-shape pairs no training image shows), drawn from a fixed seed the bundle was not
# trained on: chosen without looking at the bundle. Measured on the shipped bundle (greedy,
# focus hint on, one thread): 59.2% on llama.cpp and on ONNX Runtime, chance 31.7% (n = 120;
# over 300 items of seeds 2027 and 7: 48.7-52.3%, chance 30-31%).
ITEMS_SEED, N_ITEMS = 2027, 120
MARGIN_OVER_CHANCE = 12.0  # percentage points: about 3 standard errors under the measured value


@pytest.fixture(scope="module")
def bundle():
    return open_bundle(default_bundle_path(), verify="full")


def test_default_bundle_is_small_and_complete(bundle):
    m = bundle.manifest
    assert set(m.models) == {"perception", "reasoner"}
    assert m.formats() == {"gguf", "onnx"}
    total = sum(f.size for f in m.files.values())
    assert total < 40 * 2**20, f"{total / 2**20:.1f} MiB"
    assert len(m.examples) >= 2
    for ex in m.examples:
        assert bundle.path(ex["image"]).is_file() and ex["question"] and ex["answer"]


def _run(capsys, *args: str) -> dict:
    assert main(["-q", "run", "--json", "--threads", "1", *args]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.fixture(scope="module")
def independent_items(tmp_path_factory) -> tuple:
    out = tmp_path_factory.mktemp("independent") / "data"
    write_dataset(out, SynthConfig(seed=ITEMS_SEED, scene=SceneConfig(image_size=96), train=0, val=0, test=N_ITEMS,
                                   questions_per_image=1, mc_prob=1.0))
    return out, list(SynthDataset(out).records("test"))


def _accuracy_and_chance(bundle, backend: str, data, records) -> tuple[float, float]:
    right = 0
    with ExtractThink.load(bundle.root, backend=backend, threads=1) as et:
        for rec in records:
            right += et.answer(str(data / rec["image"]), rec["question"], rec["options"]).answer == rec["answer"]
    chance = sum(1 / len(rec["options"]) for rec in records) / len(records)
    return 100.0 * right / len(records), 100.0 * chance


@pytest.mark.parametrize("backend", ["llamacpp", pytest.param("onnx", marks=pytest.mark.slow)])
def test_accuracy_well_above_chance_on_items_chosen_without_the_bundle(bundle, independent_items, backend):
    pytest.importorskip("llama_cpp" if backend == "llamacpp" else "onnxruntime")
    data, records = independent_items
    assert len(records) == N_ITEMS and all(rec["options"] for rec in records)
    accuracy, chance = _accuracy_and_chance(bundle, backend, data, records)
    assert accuracy >= chance + MARGIN_OVER_CHANCE, (accuracy, chance)


@pytest.mark.parametrize("backend", ["llamacpp", "onnx"])
def test_edge_run_answers_the_examples(bundle, capsys, backend):
    """The examples are chosen because the bundle answers them on every backend (a demo, not
    a measurement): `edge run` on the shipped bundle still reproduces those answers."""
    pytest.importorskip("llama_cpp" if backend == "llamacpp" else "onnxruntime")
    for ex in bundle.manifest.examples:
        args = ["--backend", backend, "--image", str(bundle.path(ex["image"])), "--question", ex["question"]]
        options = [o for o in ex.get("options", "").split("\n") if o]
        if options:
            args += ["--options", *options]
        out = _run(capsys, *args)
        assert out["answer"] == ex["answer"], (ex, out["extraction"], out["thinking"], out["answer_text"])
        assert out["extraction"] and out["thinking"]


def test_edge_run_without_arguments_runs_the_first_example(bundle, capsys):
    pytest.importorskip("llama_cpp")
    out = _run(capsys)
    assert out["answer"] == bundle.manifest.examples[0]["answer"]
