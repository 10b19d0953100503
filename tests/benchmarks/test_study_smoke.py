"""`edge study --preset smoke`: the whole study (training, export, evaluation through the runtime,
report) end to end, then resuming it and its errors. Checks that the report, figures and JSON exist
with a verdict and an interval per finding -- never which verdict (16 items decide nothing)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.study.figures import FIGURES
from edge.cli import main
from tests.support.cli import edge_in_process as _edge

VERDICTS = {"reproduced", "not reproduced", "inconclusive"}


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("study") / "smoke"
    assert main(["-q", "study", "--preset", "smoke", "--out", str(out)]) == 0
    return out


def test_report_json_and_figures_with_a_verdict_and_interval_per_finding(study):
    report = json.loads((study / "report" / "study.json").read_text())
    assert [f["key"] for f in report["findings"]] == ["a", "b", "c", "d"]
    for f in report["findings"]:
        assert f["verdict"] in VERDICTS
        assert f["rule"] and f["reason"]
        for e in f["effects"].values():
            assert e["low"] <= e["point"] <= e["high"]
            assert e["n"] > 0
    assert not report["missing_cells"]
    assert {c["cell"] for c in report["cells"]} >= {"et-MM.hw", "ct-MM.hc", "e2e-S.id", "et-MM.nothink.id"}
    for name, _ in FIGURES.values():
        png = study / "report" / name
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = (study / "report" / "study.md").read_text()
    for f in report["findings"]:
        assert f"**Verdict: {f['verdict']}**" in md
    assert "edge study --preset smoke" in md
    run = report["runs"][0]
    assert len(run["commit"]) == 40 or run["commit"] == "unknown"
    assert run["load_average"]["samples"] >= 1
    # every answer came from the runtime: one line per item, with the stage texts
    rows = [json.loads(x) for x in (study / "eval" / "et-MM.hc.jsonl").read_text().splitlines()]
    assert len(rows) == report["preset"]["items"]["c"]["hc"]
    assert all("extraction" in r and "prediction" in r for r in rows)


def test_resume_redoes_only_what_is_missing(study, capsys):
    cell = study / "eval" / "et-MM.hw.jsonl"
    lines = cell.read_text().splitlines()
    cell.write_text("\n".join(lines[: len(lines) // 2]) + "\n")
    (study / "eval" / "et-MM.hw.json").unlink()
    rc, out, _ = _edge(capsys, "study", "--preset", "smoke", "--out", str(study), "--resume")
    assert rc == 0 and "(c)" in out
    runs = json.loads((study / "study.json").read_text())["runs"]
    assert set(runs[-1]["jobs"]) == {"eval:et-MM.hw"}
    again = cell.read_text().splitlines()
    assert again[: len(lines) // 2] == lines[: len(lines) // 2] and len(again) == len(lines)


def test_a_second_study_into_the_same_folder_needs_resume(study, capsys):
    rc, _, err = _edge(capsys, "study", "--preset", "smoke", "--out", str(study))
    assert rc != 0
    assert err.strip().splitlines() == [f"edge study: error: {study} holds a study already: --resume continues it, "
                                        "or choose another --out"]


def test_resuming_with_another_preset_is_refused(study, capsys):
    rc, _, err = _edge(capsys, "study", "--preset", "laptop", "--out", str(study), "--resume")
    assert rc != 0 and "holds a study with other settings" in err and "Traceback" not in err


def test_a_folder_that_is_not_a_study_is_refused(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("mine")
    rc, _, err = _edge(capsys, "study", "--preset", "smoke", "--out", str(tmp_path))
    assert rc != 0 and "is not a study folder" in err
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_estimate_prints_the_plan_and_runs_nothing(tmp_path, capsys):
    rc, out, _ = _edge(capsys, "study", "--preset", "laptop", "--estimate", "--out", str(tmp_path / "x"))
    assert rc == 0 and "training stages" in out and "min wall" in out
    assert not (tmp_path / "x").exists()


def test_publish_writes_the_doc_with_its_figures_beside_it(study, tmp_path):
    from benchmarks.study.report import publish

    doc = tmp_path / "docs" / "study.md"
    doc.parent.mkdir()
    media = publish(study / "report", doc)
    assert media == tmp_path / "docs" / "results" / "study"
    text = doc.read_text()
    for name, _ in FIGURES.values():
        assert f"](results/study/{name})" in text
        assert (media / name).is_file()
    assert json.loads((media / "study.json").read_text())["findings"]
