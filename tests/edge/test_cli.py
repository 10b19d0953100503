"""The `edge` front door: every subcommand is registered and file-system refusals are one line."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from edge.cli import COMMANDS, build_parser, main


def test_every_command_module_is_registered():
    here = Path(__file__).resolve().parents[2] / "edge" / "commands"
    modules = {p.stem for p in here.glob("*.py") if p.stem != "__init__"}
    assert modules == {m.rsplit(".", 1)[1] for m in COMMANDS.values()}
    help_text = build_parser().format_help()
    assert all(name in help_text for name in COMMANDS)


def test_an_output_under_a_file_is_one_clear_line(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["data", "synth", "--out", str(blocker / "data"), "--train", "4"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "cannot create the output folder" in err and str(blocker) in err


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs Linux /proc")
def test_an_os_refusal_is_one_line_not_a_traceback(capsys):
    # /proc accepts no new entries, even for root: mkdir fails inside the writer
    assert main(["data", "synth", "--out", "/proc/edge-test-out", "--train", "4"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("edge data: error: /proc/") and "Traceback" not in err and "\n" not in err
