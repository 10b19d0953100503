"""`edge data ...` end to end, in-process: help, outputs, one-line errors."""

from __future__ import annotations

import json

import pytest

from edge.cli import main

SUBCOMMANDS = ["synth", "extract", "merge", "traces", "export-llava", "stats", "check", "import-mmstar"]


@pytest.mark.parametrize("sub", SUBCOMMANDS)
def test_help_on_every_subcommand(sub, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["data", sub, "--help"])
    assert exc.value.code == 0
    assert "usage: edge data " + sub in capsys.readouterr().out


def test_bare_data_command_prints_help(capsys):
    assert main(["data"]) == 0
    assert "synth" in capsys.readouterr().out


def test_synth_extract_merge_stats_traces(tmp_path, capsys):
    ds = tmp_path / "ds"
    assert main(["-q", "data", "synth", "--out", str(ds), "--train", "20", "--val", "4", "--test", "6",
                 "--image-size", "64", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["images"] == {"train": 20, "val": 4, "test": 6}

    full, a, b = tmp_path / "full.jsonl", tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    base = ["-q", "data", "extract", str(ds), "--split", "train", "--teacher", "synthetic"]
    assert main([*base, "--out", str(full)]) == 0
    assert main([*base, "--shard", "0/2", "--out", str(a)]) == 0
    assert main([*base, "--shard", "1/2", "--out", str(b)]) == 0
    assert main(["data", "merge", str(a), str(b), "--out", str(tmp_path / "m.jsonl")]) == 0
    assert (tmp_path / "m.jsonl").read_bytes() == full.read_bytes()
    capsys.readouterr()

    assert main(["data", "stats", str(ds), "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["splits"]["train"]["images"] == 20 and stats["vocabulary"] > 50

    traces = tmp_path / "traces.jsonl"
    assert main(["data", "traces", str(ds), "--out", str(traces), "--hints", "--no-thinking-share", "0.5"]) == 0
    rows = [json.loads(line) for line in traces.read_text().splitlines()]
    kinds = {r["kind"] for r in rows}
    assert kinds == {"trace", "hint"}
    traced = [r for r in rows if r["kind"] == "trace"]
    assert any(r["thinking"] for r in traced) and not all(r["thinking"] for r in traced)
    for r in traced:
        reply = r["messages"][1]["content"]
        assert reply.startswith("<think>\n") and "</think>\n\nAnswer: " in reply
        assert "Description: " in r["messages"][0]["content"]

    llava = tmp_path / "sub" / "llava.json"
    assert main(["data", "export-llava", str(ds), "--style", "extraction", "--out", str(llava)]) == 0
    capsys.readouterr()
    assert main(["data", "check", str(llava), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["loaded"] == report["total"] > 0 and report["skipped"] == {}


def test_user_errors_are_one_line_with_a_non_zero_exit(tmp_path, capsys):
    assert main(["data", "stats", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("edge data: error:") and "\n" not in err
    assert main(["data", "extract", str(tmp_path / "none.json"), "--teacher", "synthetic",
                 "--out", str(tmp_path / "o.jsonl")]) == 2
    (tmp_path / "x.json").write_text("[]")
    assert main(["data", "extract", str(tmp_path / "x.json"), "--teacher", "openai",
                 "--out", str(tmp_path / "o.jsonl")]) == 2
    assert "--base-url" in capsys.readouterr().err
    assert main(["data", "extract", str(tmp_path / "x.json"), "--teacher", "synthetic",
                 "--out", str(tmp_path / "o.jsonl")]) == 2
    assert "needs a synthetic dataset" in capsys.readouterr().err
    ds = tmp_path / "ok"
    assert main(["-q", "data", "synth", "--out", str(ds), "--train", "2", "--val", "0", "--test", "0"]) == 0
    assert main(["data", "extract", str(ds), "--teacher", "synthetic", "--shard", "3",
                 "--out", str(tmp_path / "o.jsonl")]) == 2
    assert "K/N" in capsys.readouterr().err
    out = tmp_path / "ds"
    out.mkdir()
    (out / "f").write_text("x")
    assert main(["data", "synth", "--out", str(out), "--train", "1"]) == 2


def test_data_tools_run_without_torch_or_transformers(tmp_path):
    """A CPU box that only drives remote teachers needs neither torch nor transformers."""
    from tests.support.blocked_imports import WITHOUT_TORCH, run_without

    done = run_without(WITHOUT_TORCH, f"""
        from edge.cli import main
        assert main(['-q', 'data', 'synth', '--out', {str(tmp_path / 'ds')!r}, '--train', '5', '--val', '0',
                     '--test', '2']) == 0
        assert main(['-q', 'data', 'extract', {str(tmp_path / 'ds')!r}, '--teacher', 'synthetic',
                     '--out', {str(tmp_path / 'x.jsonl')!r}]) == 0
    """, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.attempted == []
    assert (tmp_path / "x.jsonl").read_text().count("\n") > 0
