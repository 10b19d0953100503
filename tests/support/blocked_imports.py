"""Run Python code in a fresh interpreter where some packages cannot be imported.

    run = run_without(("torch", "transformers"), "from runtime import ExtractThink; ...")
    assert run.returncode == 0, run.stderr
    assert run.attempted == []        # nothing even tried to import them

The blocked packages (and their submodules) raise `ModuleNotFoundError` as if they were
not installed, and every attempt is recorded, so a test can tell "works without torch"
(the code ran) from "never reaches for torch" (`attempted` is empty): an import that
is caught and tolerated still shows up there.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
WITHOUT_TORCH = ("torch", "transformers", "jinja2")

_PRELUDE = """\
import atexit as _atexit, json as _json, sys as _sys
class _Blocker:
    def __init__(self, names, report):
        self.names, self.report, self.attempted = frozenset(names), report, []
        _atexit.register(self.write)
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in self.names:
            self.attempted.append(name)
            raise ModuleNotFoundError(f"No module named {{name!r}} (blocked by the test)", name=name)
        return None
    def write(self):
        with open(self.report, "w") as fh:
            _json.dump(self.attempted, fh)
for _name in list(_sys.modules):
    if _name.partition(".")[0] in {names!r}:
        del _sys.modules[_name]
_sys.meta_path.insert(0, _Blocker({names!r}, {report!r}))
"""


@dataclass(frozen=True)
class BlockedRun:
    returncode: int
    stdout: str
    stderr: str
    attempted: list[str]  # blocked module names something tried to import, in order


def run_without(blocked: Sequence[str], code: str, *, args: Sequence[str] = (),
                cwd: str | os.PathLike[str] = REPO, timeout: float = 300,
                env: dict[str, str] | None = None) -> BlockedRun:
    """Run `code` (dedented; `args` become sys.argv[1:]) with `blocked` packages
    unimportable; see the module docstring."""
    with tempfile.TemporaryDirectory() as tmp:
        report = str(Path(tmp) / "attempted.json")
        prelude = _PRELUDE.format(names=tuple(blocked), report=report)
        proc = subprocess.run([sys.executable, "-c", prelude + textwrap.dedent(code), *args], cwd=cwd,
                              capture_output=True, text=True, timeout=timeout,
                              env={**os.environ, **(env or {})})
        try:
            attempted = json.loads(Path(report).read_text())
        except (OSError, ValueError):  # the process died before its exit handlers ran
            attempted = []
    return BlockedRun(proc.returncode, proc.stdout, proc.stderr, attempted)
