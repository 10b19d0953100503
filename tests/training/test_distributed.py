"""Two processes (accelerate launch, gloo) train exactly like one with the same global batch."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.training.helpers import losses, tiny_recipe_data, write_recipe

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env() -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               PYTHONPATH=str(ROOT))
    env.pop("CUDA_VISIBLE_DEVICES", None)
    return env


def _recipe(tmp: Path, synth_dir: Path, tok: Path, name: str, micro: int, accum: int) -> Path:
    stages = {"instruct": {"init": "recipe", "trainable": ["vision", "projector", "language"],
                           "micro_batch_size": micro, "grad_accum": accum, "steps": 6, "save_every": 3}}
    data = tiny_recipe_data(tmp / name, synth_dir, tok, stages)
    # a mix of two sources, so the data order interleaves them
    data["stages"]["instruct"]["data"].append({"kind": "synthetic", "path": str(synth_dir), "style": "caption",
                                               "weight": 0.3})
    return write_recipe(tmp / f"{name}.json", data)


def test_two_processes_match_one(tmp_path, synth_dir, synth_tokenizer_dir):
    one = _recipe(tmp_path, synth_dir, synth_tokenizer_dir, "one", 4, 1)
    accum = _recipe(tmp_path, synth_dir, synth_tokenizer_dir, "accum", 2, 2)
    two = _recipe(tmp_path, synth_dir, synth_tokenizer_dir, "two", 2, 1)
    for recipe in (one, accum):
        subprocess.run([sys.executable, "-m", "edge", "-q", "train", "instruct", "--recipe", str(recipe)],
                       check=True, cwd=ROOT, env=_env(), timeout=300)
    launch = [sys.executable, "-m", "accelerate.commands.launch",
              "--config_file", str(ROOT / "training/accelerate/cpu-2proc.yaml"),
              "--main_process_port", str(_free_port()),
              "-m", "edge", "-q", "train", "instruct", "--recipe", str(two)]
    proc = subprocess.run(launch, cwd=ROOT, env=_env(), timeout=300, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]

    import json

    summary = json.loads((tmp_path / "two" / "instruct" / "final" / "training.json").read_text())
    assert summary["processes"] == 2 and summary["global_batch_size"] == 4
    assert "MULTI_CPU" in summary["distributed"]
    ref = losses(tmp_path / "one" / "instruct")
    assert len(ref) == 6 and ref[-1] < ref[0]
    assert losses(tmp_path / "accum" / "instruct") == pytest.approx(ref, rel=1e-4, abs=1e-5)
    assert losses(tmp_path / "two" / "instruct") == pytest.approx(ref, rel=1e-4, abs=1e-5)
    # both ranks wrote their RNG state into the shared checkpoint
    ckpt = tmp_path / "two" / "instruct" / "checkpoints" / "step-000003"
    assert (ckpt / "rng-rank0.json").is_file() and (ckpt / "rng-rank1.json").is_file()
