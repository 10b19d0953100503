"""Hub ids in `edge export`: the real huggingface_hub resolution, offline, on a cache the
test writes (`models--org--name/{blobs,refs,snapshots}`), and on-the-fly conversion of the
paper's LLaVA-OneVision layout."""

from __future__ import annotations

import hashlib
import json
import os

import pytest

from runtime.errors import ConfigError
from tests.edge.helpers import one_error_line, run_edge, write_png
from tests.export.test_convert_llava_ov import _paper_checkpoint
from tests.support.hub_cache import folder_files, write_cache_entry

COMMIT_R = "1" * 40
COMMIT_P = "ab" * 20


@pytest.fixture(scope="module")
def hub_home(tmp_path_factory, tiny_reasoner_dir, tiny_tokenizer_dir):
    """HF_HOME with org/tiny-qwen3 (main, tag v1) and org/tiny-paper-layout (main)."""
    home = tmp_path_factory.mktemp("hf_home")
    cache = home / "hub"
    write_cache_entry(cache, "org/tiny-qwen3", folder_files(tiny_reasoner_dir), commit=COMMIT_R, refs=("main", "v1"))
    paper = tmp_path_factory.mktemp("paper") / "ckpt"
    _paper_checkpoint(paper, tiny_tokenizer_dir)
    write_cache_entry(cache, "org/tiny-paper-layout", folder_files(paper), commit=COMMIT_P)
    return home


@pytest.fixture
def offline_cache(monkeypatch, hub_home):
    monkeypatch.setenv("HF_HOME", str(hub_home))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return hub_home


@pytest.mark.parametrize("spec", ["org/tiny-qwen3", "org/tiny-qwen3@main", "org/tiny-qwen3@v1",
                                  f"org/tiny-qwen3@{COMMIT_R}"])
def test_hub_ids_resolve_from_the_cache_offline(offline_cache, spec):
    from export.hub import resolve_hub

    snap = resolve_hub(spec)
    assert snap.repo_id == "org/tiny-qwen3" and snap.commit == COMMIT_R
    assert snap.path == offline_cache / "hub" / "models--org--tiny-qwen3" / "snapshots" / COMMIT_R
    assert snap.revision == (spec.split("@")[1] if "@" in spec else "main")


@pytest.mark.parametrize("spec, phrase", [
    ("org/missing", "org/missing@main is not in the hub cache"),
    ("org/tiny-qwen3@dev", "org/tiny-qwen3@dev is not in the hub cache"),
    ("org/tiny-qwen3@1111111", "is not in the hub cache"),  # short hashes are not resolved offline
])
def test_a_miss_offline_is_one_line(offline_cache, spec, phrase):
    from export.hub import HubError, resolve_hub

    with pytest.raises(HubError, match="HF_HUB_OFFLINE is set") as info:
        resolve_hub(spec)
    assert phrase in str(info.value) and "\n" not in str(info.value)
    assert isinstance(info.value, ConfigError)


def test_not_a_folder_nor_a_hub_id(tmp_path):
    from export.sources import open_source

    with pytest.raises(ConfigError, match="no such folder, and not a hub id"), open_source(tmp_path / "nope", "reasoner"):
        pass
    f = tmp_path / "file.txt"
    f.write_text("x")
    with pytest.raises(ConfigError, match="is not a folder"), open_source(f, "reasoner"):
        pass


def test_paper_layout_from_the_hub_is_converted_with_the_reasoner_tokenizer(offline_cache, tmp_path, tiny_reasoner_dir):
    from export.sources import open_source

    with open_source("org/tiny-paper-layout", "perception", tokenizer=tiny_reasoner_dir, vision_heads=2) as src:
        assert src.layout == "llava-onevision" and src.revision == COMMIT_P and src.source == "org/tiny-paper-layout"
        assert json.loads((src.folder / "config.json").read_text())["model_type"] == "llava"
        converted = src.folder
        snap = offline_cache / "hub" / "models--org--tiny-paper-layout" / "snapshots" / COMMIT_P
        assert src.files == {k: hashlib.sha256(v).hexdigest() for k, v in folder_files(snap).items()}
    assert not converted.exists()  # the conversion lives as long as the context


def test_export_and_run_from_hub_ids_offline(tmp_path, hub_home):
    """The issue's acceptance: hub ids -> bundle with no network -> `edge run` answers."""
    env = {"HF_HOME": str(hub_home), "HF_HUB_CACHE": str(hub_home / "hub"), "HF_HUB_OFFLINE": "1"}
    out = tmp_path / "B"
    proc = run_edge("export", "--perception", "org/tiny-paper-layout", "--reasoner", "org/tiny-qwen3@v1",
                    "--vision-heads", "2", "--format", "gguf", "--quant", "f32", "--out", str(out), "-q",
                    env=env, timeout=900)
    assert proc.returncode == 0, proc.stderr
    m = json.loads((out / "manifest.json").read_text())
    assert m["format_version"] == 2
    p, r = m["models"]["perception"], m["models"]["reasoner"]
    assert (p["source"], p["source_revision"], p["source_layout"]) == ("org/tiny-paper-layout", COMMIT_P, "llava-onevision")
    assert (r["source"], r["source_revision"], r["source_layout"]) == ("org/tiny-qwen3", COMMIT_R, "project")
    assert set(r["source_files"]) >= {"config.json", "model.safetensors", "tokenizer.json"}
    image = write_png(tmp_path / "img.png", seed=3)
    proc = run_edge("run", "--bundle", str(out), "--image", str(image), "--question", "What is shown?",
                    "--hint-budget", "4", "--extraction-budget", "8", "--thinking-budget", "8",
                    "--answer-budget", "6", "--json", "-q", timeout=600)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert isinstance(result["answer_text"], str) and "extraction" in result["stages"], result
    proc = run_edge("export", "verify", str(out), "--json", "-q", env=env, timeout=900)
    assert proc.returncode == 0 and json.loads(proc.stdout)["passed"], proc.stderr


def test_a_missing_hub_id_is_one_line_and_fails(tmp_path, hub_home):
    proc = run_edge("export", "--reasoner", "org/missing", "--out", str(tmp_path / "B"), "-q",
                    env={"HF_HOME": str(hub_home), "HF_HUB_CACHE": str(hub_home / "hub"), "HF_HUB_OFFLINE": "1"})
    assert proc.returncode != 0
    line = one_error_line(proc)
    assert line.startswith("edge export: error: ") and "org/missing@main is not in the hub cache" in line
    assert not (tmp_path / "B").exists()


@pytest.mark.parametrize("repo, phrase", [
    ("org/gated", "org/gated is gated: accept its terms on the hub and log in"),
    ("org/missing", "org/missing: no such repository on the hub (or it is private"),
    ("org/served@nope", "org/served has no revision 'nope'"),
])
def test_hub_refusals_are_one_line(tmp_path, repo, phrase):
    from tests.support.fake_hub import fake_hub

    with fake_hub() as url:
        proc = run_edge("export", "--reasoner", repo, "--out", str(tmp_path / "B"),
                        env={**_online(tmp_path), "HF_ENDPOINT": url})
    assert proc.returncode == 2 and phrase in one_error_line(proc)
    assert not (tmp_path / "B").exists()


def test_no_network_is_one_line(tmp_path):
    from tests.support.fake_hub import closed_port_url

    proc = run_edge("export", "--reasoner", "org/tiny", "--out", str(tmp_path / "B"),
                    env={**_online(tmp_path), "HF_ENDPOINT": closed_port_url()})
    line = one_error_line(proc)
    assert proc.returncode == 2 and "cannot reach the hub for org/tiny@main" in line and "not in the cache" in line


def _online(tmp_path) -> dict[str, str]:
    """Online settings against a loopback endpoint, with an empty cache and no token."""
    return {"HF_HOME": str(tmp_path / "hf"), "HF_HUB_CACHE": str(tmp_path / "hf" / "hub"), "HF_HUB_OFFLINE": "0",
            "TRANSFORMERS_OFFLINE": "0", "HF_HUB_DISABLE_XET": "1", "HF_TOKEN": "", "HF_HUB_ETAG_TIMEOUT": "5",
            "HF_HUB_DOWNLOAD_TIMEOUT": "5"}


DOWNLOAD = """
import json, sys
from export.hub import resolve_hub
seen = []
snap = resolve_hub("org/served", progress=lambda stage, frac: seen.append((stage, frac)))
print(json.dumps({"commit": snap.commit, "files": sorted(p.name for p in snap.path.iterdir()), "progress": seen}))
"""


def test_a_download_reports_progress_and_fills_the_cache(tmp_path, tiny_reasoner_dir):
    """A real download through huggingface_hub from the loopback hub: the progress callback
    reaches 1.0, pickled weights are never fetched, and the cache then serves offline."""
    import subprocess
    import sys

    from tests.edge.helpers import REPO
    from tests.support.fake_hub import fake_hub

    files = {**folder_files(tiny_reasoner_dir), "pytorch_model.bin": b"a pickle, never fetched"}
    env = {**os.environ, **_online(tmp_path), "PYTHONPATH": str(REPO)}
    with fake_hub(files, commit=COMMIT_R) as url:
        proc = subprocess.run([sys.executable, "-c", DOWNLOAD], env={**env, "HF_ENDPOINT": url},
                              capture_output=True, text=True, timeout=300, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    assert got["commit"] == COMMIT_R and "pytorch_model.bin" not in got["files"]
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= set(got["files"])
    fracs = [f for stage, f in got["progress"] if stage == "download"]
    assert fracs and fracs[-1] == 1.0 and fracs == sorted(fracs)
    offline = subprocess.run([sys.executable, "-c", DOWNLOAD], env={**env, "HF_HUB_OFFLINE": "1"},
                             capture_output=True, text=True, timeout=300, cwd=REPO)
    assert offline.returncode == 0 and json.loads(offline.stdout)["commit"] == COMMIT_R, offline.stderr
