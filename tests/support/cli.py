"""Running the `edge` command in this process (fast; `tests.edge.helpers.run_edge` runs it
in a subprocess where the process itself matters)."""

from __future__ import annotations

from edge.cli import main


def edge_in_process(capsys, *argv: str) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of `edge ARGV...`."""
    rc = main(list(argv))
    cap = capsys.readouterr()
    return rc, cap.out, cap.err
