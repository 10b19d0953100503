"""The prepared GPU check (`python -m training.gpu_check`): its plumbing on a CPU in every
run, the real bf16 measurement only where a CUDA device is present (`-m gpu`)."""

from __future__ import annotations

import json

import pytest

from training import gpu_check


def _run(capsys, *args: str) -> dict:
    assert gpu_check.main(["--json", *args]) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_cpu_dry_run_trains_and_reports(tmp_path, capsys):
    out = _run(capsys, "--cpu-dry-run", "--small-steps", "5", "--work", str(tmp_path / "w"))
    small, paper = out["runs"]
    assert small["steps"] == 5 and small["last_loss"] < small["first_loss"]
    assert paper["steps"] == 1 and paper["tokens"] > 0 and paper["tokens_per_s"] > 0
    assert not (tmp_path / "w").exists()  # cleaned up unless --keep


@pytest.mark.gpu
def test_gpu_bf16_steps(tmp_path, capsys):
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    out = _run(capsys, "--small-steps", "50", "--work", str(tmp_path / "w"))
    for run in out["runs"]:
        assert run["tokens_per_s"] > 0 and run["peak_gpu_gib"] > 0
