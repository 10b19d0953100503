"""`edge train`: help names every stage kind, list shows state, a stage runs and resumes."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from edge.cli import build_parser, main
from edge.commands.train import default_bundle_run
from tests.training.helpers import tiny_recipe_data, write_recipe


def test_help_says_what_each_stage_trains(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["train", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for kind in ("align", "instruct", "caption", "extract", "reasoner"):
        assert f"  {kind}" in out
    assert "projector only" in out and "thinking traces" in out and "accelerate launch" in out


def test_list_run_and_resume(tmp_path, synth_dir, synth_tokenizer_dir, capsys):
    recipe = write_recipe(tmp_path / "r.json", tiny_recipe_data(
        tmp_path / "run", synth_dir, synth_tokenizer_dir, {"reasoner": {"steps": 4, "save_every": 2}}))
    assert main(["train", "list", "--recipe", str(recipe)]) == 0
    assert "not started" in capsys.readouterr().out
    assert main(["-q", "train", "reasoner", "--recipe", str(recipe), "--stop-at-step", "2", "--json"]) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["steps"] == 2
    assert main(["train", "list", "--recipe", str(recipe), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "at step 2"
    assert main(["-q", "train", "all", "--recipe", str(recipe), "--json"]) == 0
    done = json.loads(capsys.readouterr().out)
    assert done["steps"] == 4 and done["resumed_from"] == 2
    assert main(["train", "list", "--recipe", str(recipe)]) == 0
    assert "done" in capsys.readouterr().out


def test_user_errors_are_one_line(tmp_path, synth_dir, synth_tokenizer_dir, capsys):
    assert main(["train", "align"]) == 2
    assert "--recipe is required" in capsys.readouterr().err
    assert main(["train", "align", "--recipe", str(tmp_path / "nope.yaml")]) == 2
    assert "recipe not found" in capsys.readouterr().err
    recipe = write_recipe(tmp_path / "r.json", tiny_recipe_data(tmp_path / "run", synth_dir, synth_tokenizer_dir,
                                                               {"reasoner": {}}))
    assert main(["train", "nosuch", "--recipe", str(recipe)]) == 2
    err = capsys.readouterr().err
    assert "no stage 'nosuch'" in err and err.count("\n") == 1
    assert main(["train", "reasoner", "--recipe", str(recipe), "--set", "stages.reasoner.stepz=1"]) == 2
    assert "unknown key" in capsys.readouterr().err


def test_missing_training_stack_is_one_line_naming_the_install_command(tmp_path, synth_dir, synth_tokenizer_dir,
                                                                        capsys, monkeypatch):
    recipe = write_recipe(tmp_path / "r.json", tiny_recipe_data(tmp_path / "run", synth_dir, synth_tokenizer_dir,
                                                               {"reasoner": {"steps": 1}}))
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` now fails as if not installed
    for argv in (["train", "reasoner", "--recipe", str(recipe)], ["train", "default-bundle", "--out",
                                                                   str(tmp_path / "db")]):
        assert main(argv) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "torch" in err and "pip install -e '.[train]'" in err, err
    assert not (tmp_path / "run").exists() and not (tmp_path / "db").exists()


def test_default_bundle_goes_to_a_run_folder_and_installs_only_when_asked(tmp_path):
    plain = default_bundle_run(build_parser().parse_args(["train", "default-bundle"]))
    assert plain.out == Path("runs/default-bundle") and not plain.install
    assert plain.bundle_dir == Path("runs/default-bundle/bundle")
    asked = default_bundle_run(build_parser().parse_args(
        ["train", "default-bundle", "--out", str(tmp_path), "--install", "--skip-baselines"]))
    assert asked.out == tmp_path and asked.install and not asked.baselines


def test_default_bundle_help_names_the_run_folder_and_install(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = "".join(capsys.readouterr().out.split())  # help text wraps (also at hyphens)
    assert "--install" in out and "(default:runs/default-bundle)" in out and "--outDIR" in out
