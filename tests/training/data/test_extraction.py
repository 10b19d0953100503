"""The visual-extraction pipeline: exact teacher, SKIP rows, resume, shards, kill + restart."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from runtime.errors import ConfigError
from training.data.extraction import (
    merge_shards,
    read_rows,
    resume_point,
    run_extraction,
    shard_range,
)
from training.data.sources import open_source
from training.data.teachers import SyntheticTeacher

REPO = Path(__file__).resolve().parents[3]


def _run(rows, out, **kw):
    return run_extraction(rows, SyntheticTeacher(batch_size=kw.pop("batch", 16)), out, **kw)


def test_exact_teacher_reproduces_the_records(synth_dir, tmp_path):
    rows, report, kind = open_source(synth_dir, split="val")
    assert kind == "synthetic" and report.loaded == len(rows) > 100
    summary = _run(rows, tmp_path / "out.jsonl")
    assert summary.ok == len(rows) and summary.errors == summary.skipped == 0
    out = read_rows(tmp_path / "out.jsonl")
    recs = [json.loads(line) for line in (synth_dir / "val.jsonl").read_text().splitlines()]
    for i, (row, rec) in enumerate(zip(out, recs, strict=True)):
        assert row["index"] == i and row["id"] == rec["id"] and row["status"] == "ok"
        assert row["statements"] == rec["statements"]
        assert row["description"] == rec["extraction"]


def test_split_file_input_equals_folder_input(synth_dir, tmp_path):
    a, _, _ = open_source(synth_dir, split="val")
    b, _, _ = open_source(synth_dir / "val.jsonl")
    assert [r.example for r in a] == [r.example for r in b]


def test_rows_without_images_keep_indices_aligned(tmp_path):
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    conv = [{"from": "human", "value": "<image>\nQ?"}, {"from": "gpt", "value": "A."}]
    data = [
        {"id": "0", "image": "a.png", "conversations": conv},
        {"id": "1", "conversations": conv},  # text-only: SKIP
        {"id": "2", "image": "gone.png", "conversations": conv},  # missing image: error row
        {"id": "3", "image": "a.png"},  # malformed: error row
        {"id": "4", "image": "a.png", "conversations": conv},
    ]
    (tmp_path / "d.json").write_text(json.dumps(data))
    rows, report, kind = open_source(tmp_path / "d.json")
    assert kind == "llava" and report.problems == {"missing image": 1, "malformed": 1}

    class EchoTeacher(SyntheticTeacher):  # the pipeline's bookkeeping, without scene graphs
        name = "echo"

        def statements(self, examples):
            return [[f"{p.question} {p.answer}" for p in ex.qa] for ex in examples]

        def describe(self, examples, statements, images):
            return [" ".join(st) for st in statements]

    run_extraction(rows, EchoTeacher(), tmp_path / "out.jsonl")
    out = read_rows(tmp_path / "out.jsonl")
    assert [r["index"] for r in out] == [0, 1, 2, 3, 4]
    assert [r["status"] for r in out] == ["ok", "skip", "error", "error", "ok"]
    assert out[1]["reason"] == "no image"
    assert out[2]["reason"].startswith("missing image") and out[3]["reason"].startswith("malformed")
    assert out[0]["description"] == "Q? A."


def test_resume_continues_after_the_rows_written(synth_dir, tmp_path):
    rows, _, _ = open_source(synth_dir, split="val")
    _run(rows, tmp_path / "ref.jsonl")
    ref = (tmp_path / "ref.jsonl").read_bytes()

    out = tmp_path / "out.jsonl"

    def stop(p):
        if p.done >= 48:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _run(rows, out, progress=stop)
    assert len(read_rows(out)) == 48
    with open(out, "ab") as fh:  # what a kill in the middle of a write leaves behind
        fh.write(b'{"index": 48, "id": "val-0000')
    summary = _run(rows, out)
    assert summary.resumed_at == 48 and summary.written == len(rows) - 48
    assert out.read_bytes() == ref
    assert _run(rows, out).written == 0  # a finished file stays as it is
    assert out.read_bytes() == ref


def test_resume_refuses_files_it_cannot_trust(synth_dir, tmp_path):
    rows, _, _ = open_source(synth_dir, split="val")
    out = tmp_path / "out.jsonl"
    _run(rows, out, end=20)
    with pytest.raises(ConfigError, match="other settings"):
        _run(rows, out, end=30)  # another range into the same file
    lines = out.read_text().splitlines()
    lines[5] = "garbage"
    out.write_text("\n".join(lines) + "\n")
    with pytest.raises(ConfigError, match="corrupt"):
        resume_point(out, 0, 20)
    foreign = tmp_path / "foreign.jsonl"
    foreign.write_text('{"index": 7}\n')
    with pytest.raises(ConfigError, match="not written by this pipeline"):
        _run(rows, foreign)
    with pytest.raises(ConfigError, match="another shard"):
        resume_point(foreign, 0, 20)


@pytest.mark.parametrize("n_shards", [2, 3])
def test_shards_together_equal_one_unsharded_run(synth_dir, tmp_path, n_shards):
    rows, _, _ = open_source(synth_dir, split="test")
    _run(rows, tmp_path / "all.jsonl")
    parts = []
    for k in range(n_shards):
        start, end = shard_range(len(rows), k, n_shards)
        parts.append(tmp_path / f"part{k}.jsonl")
        _run(rows, parts[-1], start=start, end=end, batch=7)
    assert merge_shards(parts, tmp_path / "merged.jsonl") == len(rows)
    assert (tmp_path / "merged.jsonl").read_bytes() == (tmp_path / "all.jsonl").read_bytes()
    with pytest.raises(ConfigError, match="expected row"):
        merge_shards([parts[-1], parts[0]], tmp_path / "bad.jsonl")
    assert not (tmp_path / "bad.jsonl").exists()


def test_shard_ranges_cover_everything_once():
    for total in (0, 1, 7, 100, 1001):
        for n in (1, 2, 3, 16):
            spans = [shard_range(total, k, n) for k in range(n)]
            assert spans[0][0] == 0 and spans[-1][1] == total
            assert all(a[1] == b[0] for a, b in zip(spans, spans[1:], strict=False))
    with pytest.raises(ConfigError):
        shard_range(10, 2, 2)


def test_killed_process_resumes_to_the_same_output(synth_dir, tmp_path):
    """Kill a real `edge data extract` process mid-run (SIGKILL), restart it, compare."""
    cmd = [sys.executable, "-m", "edge", "-q", "data", "extract", str(synth_dir), "--split", "train",
           "--teacher", "synthetic"]
    rows, _, _ = open_source(synth_dir, split="train")
    ref = tmp_path / "ref.jsonl"
    _run(rows, ref)
    total = len(rows)

    out = tmp_path / "killed.jsonl"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    # small batches: many appends, so the kill lands between (or inside) writes
    proc = subprocess.Popen([*cmd, "--batch-size", "2", "--out", str(out)], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if out.exists() and out.stat().st_size > 200_000:
                break
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()[-2000:]
    written = out.read_bytes().count(b"\n")
    assert 0 < written < total, "the kill must land mid-run"

    done = subprocess.run([*cmd, "--out", str(out), "--json"], cwd=REPO, env=env, capture_output=True, timeout=300)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    summary = json.loads(done.stdout)
    assert summary["resumed_at"] == written and summary["written"] == total - written
    assert out.read_bytes() == ref.read_bytes()
