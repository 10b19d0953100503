"""Optional packages: each command checks its extras before any work and names the
install command that works from this checkout (the project is not on PyPI)."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from edge import extras
from runtime.errors import install_hint
from tests.edge.helpers import REPO, one_error_line


def test_the_extras_table_is_pyprojects():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    for extra, packages in extras.EXTRAS.items():
        names = {re.split(r"[<>=\[ ;]", spec, maxsplit=1)[0].lower() for spec in declared[extra]}
        assert {pip for _, pip in packages} == names, extra


def test_install_hint_works_from_this_checkout(monkeypatch, tmp_path):
    assert extras.checkout_root() == REPO
    monkeypatch.chdir(REPO)
    assert extras.install_hint("bench") == "pip install -e '.[bench]'"
    monkeypatch.chdir(tmp_path)
    assert extras.install_hint("bench", "data") == f"pip install -e '{REPO}[bench,data]'"
    # an installed copy without its checkout names the packages themselves
    monkeypatch.setattr(extras, "checkout_root", lambda: None)
    assert extras.install_hint("camera") == "pip install opencv-python-headless"


def test_missing_and_require(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if not installed
    assert extras.missing("bench") == ["matplotlib"]
    with pytest.raises(extras.MissingExtraError) as info:
        extras.require("bench", "the plots", alternative="or pass --no-plots")
    msg = str(info.value)
    assert msg.startswith("the plots needs matplotlib, which is not installed: pip install -e ")
    assert msg.endswith("[bench]', or pass --no-plots") and info.value.exit_code == 7
    extras.require("onnx", "an ONNX bundle")  # installed: nothing happens
    with pytest.raises(ValueError, match="unknown extra"):
        extras.missing("gpu")


def test_library_hints_become_the_command_that_works_here(monkeypatch, tmp_path):
    monkeypatch.chdir(REPO)
    msg = f"the llama.cpp backend is not installed: {install_hint('llamacpp')} (no module)"
    assert extras.fix_install_hints(msg) == \
        "the llama.cpp backend is not installed: pip install -e '.[llamacpp]' (no module)"
    monkeypatch.chdir(tmp_path)  # elsewhere: the checkout's own path
    assert f"pip install -e '{REPO}[llamacpp]'" in extras.fix_install_hints(msg)


def test_no_hint_in_this_area_names_the_unpublished_package():
    """The project is not on PyPI: `pip install 'extract-think-edge[...]'` cannot work.
    (runtime/, export/, training/ are checked by their owners; the CLI rewrites their hints.)"""
    bad = re.compile(r"pip install[^\n]*'extract-think-edge\[")
    paths = [*(p for p in REPO.joinpath("edge").rglob("*.py") if p.name != "extras.py"),  # extras: the rewriter
             *REPO.joinpath("benchmarks").rglob("*.py"),
             REPO / "README.md", *(REPO / "docs" / name for name in ("deploy.md", "evaluation.md", "benchmarks.md"))]
    offenders = [str(p.relative_to(REPO)) for p in paths if bad.search(p.read_text(encoding="utf-8"))]
    assert offenders == []


def _blocked(module: str, argv: list[str]) -> subprocess.CompletedProcess:
    code = (f"import sys; sys.modules[{module!r}] = None\n"
            f"from edge.cli import main\nsys.exit(main({argv!r}))")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=REPO)


@pytest.mark.parametrize("module, argv, extra, alternative", [
    # regression: `edge bench` ran every measurement, then died on the plots with a traceback
    ("matplotlib", ["bench", "--bundle", "/nonexistent"], "bench", "--no-plots"),
    ("matplotlib", ["eval", "--data", "x.jsonl", "--sweep-thinking", "0,8"], "bench", "--no-plots"),
    ("torch", ["export", "--perception", "p", "--out", "o"], "export", None),
    ("torch", ["export", "verify", "b"], "export", None),
    ("pyarrow", ["eval", "--data", "mmstar.parquet"], "data", None),
    ("pyarrow", ["data", "check", "mmstar.parquet"], "data", None),
    ("transformers", ["data", "extract", "in.json", "--teacher", "transformers", "--out", "o.jsonl"], "train", None),
    ("cv2", ["watch", "--camera", "0", "--question", "q"], "camera", None),
    ("llama_cpp", ["run", "--backend", "llamacpp", "--question", "q", "--bundle", "/nonexistent"], "llamacpp", None),
    ("fastapi", ["serve", "--bundle", "/nonexistent"], "serve", None),
    ("uvicorn", ["demo", "--bundle", "/nonexistent"], "serve", None),
    ("fastapi", ["bench", "serve", "--bundle", "/nonexistent"], "serve", None),
])
def test_a_missing_extra_is_one_line_before_any_work(module, argv, extra, alternative):
    proc = _blocked(module, argv)
    assert proc.returncode == 7, proc.stderr
    line = one_error_line(proc)
    assert f"pip install -e '.[{extra}]'" in line and "not installed" in line
    assert alternative is None or alternative in line
    assert proc.stdout == ""
