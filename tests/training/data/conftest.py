"""Fixtures for the data tests: small synthetic datasets written once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from training.data.scene import SceneConfig
from training.data.synth import SynthConfig, write_dataset

SMALL = SynthConfig(seed=7, scene=SceneConfig(image_size=64), train=600, val=60, test=150, test_iid=40,
                    questions_per_image=4)


@pytest.fixture(scope="session")
def synth_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "ds"
    write_dataset(out, SMALL)
    return out


@pytest.fixture(scope="session")
def synth_ds(synth_dir):
    from training.data.synth import SynthDataset

    return SynthDataset(synth_dir)


@pytest.fixture(scope="session")
def all_records(synth_ds) -> list[dict]:
    return [rec for split in synth_ds.splits for rec in synth_ds.records(split)]


@pytest.fixture(scope="session")
def scene_json(synth_ds) -> dict[str, dict]:
    """Raw JSON scene graphs by scene_id (what the independent checker reads)."""
    return {row["scene_id"]: row["scene"] for row in synth_ds.scene_rows()}
