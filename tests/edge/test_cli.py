"""The `edge` front door: every subcommand is registered, `--help` and `--version` are
instant, -q/-v work on both sides of the subcommand, and refusals are one line."""

from __future__ import annotations

import os
import subprocess
import sys
from importlib.metadata import version

import pytest

from edge.cli import COMMANDS, build_parser, main
from tests.edge.helpers import REPO, one_error_line, run_edge


def test_every_command_module_is_registered():
    here = REPO / "edge" / "commands"
    modules = {p.stem for p in here.glob("*.py") if p.stem != "__init__"}
    modules |= {p.parent.name for p in here.glob("*/__init__.py")}
    assert modules == {m.rsplit(".", 1)[1] for m, _ in COMMANDS.values()}
    help_text = build_parser().format_help()
    assert all(name in help_text and summary.split()[0] in help_text for name, (_, summary) in COMMANDS.items())
    required = {"eval": ["--data", "x.jsonl"], "pack": ["b", "--profile", "laptop", "--out", "x.tar"],
                "unpack": ["x.tar", "--to", "d"], "heldout": ["--out", "d"], "watch": ["--question", "q"], "train": ["list"]}
    for name in COMMANDS:  # each one registers in full when it is the one asked for
        args = build_parser(name).parse_args([name, *required.get(name, [])])
        assert args.command == name and callable(args.func)


def test_help_imports_no_command_module():
    """`edge --help` lists every command without importing one (so it stays instant)."""
    code = ("import sys\nfrom edge.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in sys.modules if m.startswith('edge.commands') or m in "
            "('numpy', 'runtime.pipeline', 'torch', 'benchmarks')))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "[]"
    assert "run" in proc.stdout and "answer a question about an image" in proc.stdout


def test_version(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"edge (extract-think-edge) {version('extract-think-edge')}"


@pytest.mark.parametrize("argv", [["-q", "data", "synth"], ["data", "-q", "synth"], ["data", "synth", "-q"]])
def test_quiet_on_either_side_of_the_subcommand(argv):
    args = build_parser("data").parse_args([*argv, "--out", "x"])
    assert args.quiet is True and args.verbose == 0


@pytest.mark.parametrize("argv, level", [(["-v", "run"], 1), (["run", "-v"], 1), (["run", "-vv"], 2),
                                         (["-vv", "run"], 2), (["run"], 0)])
def test_verbose_on_either_side_of_the_subcommand(argv, level):
    args = build_parser("run").parse_args(argv)
    assert args.verbose == level and args.quiet is False


def test_quiet_after_the_subcommand_silences_progress(tmp_path):
    common = ["data", "synth", "--train", "3", "--val", "0", "--test", "0", "--image-size", "32"]
    loud = run_edge(*common, "--out", str(tmp_path / "a"))
    assert loud.returncode == 0 and "synth [100%]" in loud.stderr
    quiet = run_edge(*common, "--out", str(tmp_path / "b"), "-q")
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stderr == "" and "wrote" in quiet.stdout


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


def test_running_out_of_memory_is_one_line(tmp_path):
    """Regression: a MemoryError (a small ulimit -v or cgroup) ended in a traceback. Here
    the address space is capped 8 MB above what the process has mapped, so the synthetic
    renderer cannot allocate a 2048 x 2048 RGB picture (12 MB) and its copies."""
    code = ("import resource, sys\n"
            "import psutil\n"
            "from edge.cli import main\n"
            "import edge.commands.data\n"  # everything the command imports, mapped before the cap
            "cap = psutil.Process().memory_info().vms + (8 << 20)\n"
            "resource.setrlimit(resource.RLIMIT_AS, (cap, cap))\n"
            "sys.exit(main(['data', 'synth', '--out', sys.argv[1], '--train', '1', '--val', '0', "
            "'--test', '0', '--image-size', '2048']))\n")
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=120, cwd=REPO)
    assert proc.returncode == 6, proc.stderr[-2000:]
    assert "out of memory" in one_error_line(proc) and "ulimit -v" in proc.stderr
