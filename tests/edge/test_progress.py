"""The one progress display: monotonic per job, a line per stage change in logs, a tqdm
bar on a terminal, and quiet when disabled."""

from __future__ import annotations

import io
import logging

from edge.progress import ProgressDisplay


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_log_lines_never_go_backwards():
    """Regression: export's percentage went back (each step of a job reports 0 -> 1: the
    GGUF text writer, llama.cpp's quantizer, the mmproj writer, then verification)."""
    out = io.StringIO()
    show = ProgressDisplay("export", stream=out)
    for stage, frac in [("perception gguf/q4_k_m: text model", 0.1), ("perception gguf/q4_k_m: text model", 0.45),
                        ("perception gguf/q4_k_m: quantize", 0.0), ("perception gguf/q4_k_m: mmproj", 0.05),
                        ("verify", 0.0), ("verify", 1.0)]:
        show(stage, frac)
    show.done("wrote b")
    lines = out.getvalue().splitlines()
    percents = [int(ln.split("[", 1)[1].split("%")[0]) for ln in lines[:-1]]
    assert all(ln.startswith("export [") for ln in lines[:-1])  # the form log readers know
    assert percents == sorted(percents) and percents[0] == 10 and percents[-1] == 100
    # a line per step group ("perception gguf/q4_k_m", "verify") and per tenth of the job
    assert [ln.split("] [", 1)[1].split(", ", 1)[1].rstrip("]") for ln in lines[:-1]] == [
        "perception gguf/q4_k_m: text model", "perception gguf/q4_k_m: text model", "verify", "verify"]
    assert percents == [10, 45, 45, 100]
    assert lines[-1].startswith("export: wrote b (") and show.fraction == 1.0


def test_log_lines_are_one_per_stage_or_tenth():
    out = io.StringIO()
    show = ProgressDisplay("eval think8", stream=out)
    for i in range(1, 101):
        show(f"think8: {i}/100", i / 100)
    # the stage label's first part ("think8") stays the same: the first line, then one a tenth
    assert [int(ln.split("[", 1)[1].split("%")[0]) for ln in out.getvalue().splitlines()] == [1, *range(10, 101, 10)]


def test_terminal_bar_and_logging_above_it():
    out = _Tty()
    with ProgressDisplay("pack", stream=out) as show:
        assert show.tty
        show("pack a.gguf", 0.25)
        show("pack b.gguf", 0.75)
        show.note("partial results in x")
    text = out.getvalue()
    assert "pack  25%|" in text and "pack a.gguf" in text and "pack: partial results in x" in text
    assert "\r" in text  # redrawn in place


def test_disabled_and_bad_fractions():
    out = io.StringIO()
    quiet = ProgressDisplay("x", stream=out, enabled=False)
    quiet("a", 0.5)
    quiet.note("n")
    quiet.done("finished")
    assert out.getvalue() == ""
    show = ProgressDisplay("x", stream=out)
    show("a", float("nan"))
    show("b", 7.0)
    assert show.fraction == 1.0


def test_log_records_during_a_bar_do_not_break_it(caplog):
    out = _Tty()
    with ProgressDisplay("eval", stream=out) as show:
        show("a", 0.5)
        logging.getLogger("benchmarks.accuracy").warning("resuming")
    assert "resuming" in caplog.text
