"""The OpenAI-compatible teacher against a real server on loopback.

llama-cpp-python's server (`python -m llama_cpp.server`) serves a small Qwen3 GGUF that
the test exports from a random-weight checkpoint with the project's GGUF writer. Needs
the server extras (uvicorn, fastapi, sse-starlette, starlette-context, pydantic-settings).
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import replace
from pathlib import Path

import pytest
from PIL import Image

pytest.importorskip("llama_cpp")
pytest.importorskip("uvicorn")
pytest.importorskip("fastapi")
pytest.importorskip("sse_starlette")
pytest.importorskip("starlette_context")
pytest.importorskip("pydantic_settings")

from edge.cli import main as edge_main  # noqa: E402
from runtime.chat_format import Message, render_prompt  # noqa: E402
from runtime.tokenizer import BundleTokenizer, encode_segments  # noqa: E402
from training.data.records import QAPair  # noqa: E402
from training.data.teacher_prompts import statements_prompt  # noqa: E402
from training.data.teachers import OpenAITeacher, TeacherRequest  # noqa: E402


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def gguf_path(tiny_tokenizer_dir, tmp_path_factory) -> Path:
    from export.gguf import export_gguf
    from training.models.loading import load_reasoner
    from training.models.sizes import qwen3_tiny
    from training.models.tiny import tiny_reasoner

    ckpt = tiny_reasoner(tmp_path_factory.mktemp("reasoner"), tiny_tokenizer_dir,
                         text=replace(qwen3_tiny(), tie_word_embeddings=False), seed=3)
    out = tmp_path_factory.mktemp("gguf")
    files = export_gguf(load_reasoner(ckpt), tiny_tokenizer_dir, out, role="reasoner", quant="f32")
    return out / files["model"]


@pytest.fixture(scope="module")
def server(gguf_path, tmp_path_factory):
    port = _free_port()
    log = open(tmp_path_factory.mktemp("server") / "server.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf_path), "--host", "127.0.0.1",
         "--port", str(port), "--n_ctx", "4096", "--model_alias", "tiny-teacher"],
        stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"llama_cpp.server exited with {proc.returncode}; see {log.name}")
            try:
                urllib.request.urlopen(url + "/v1/models", timeout=1).read()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def test_the_server_receives_exactly_our_prompt(server, tiny_tokenizer_dir):
    teacher = OpenAITeacher(server, "tiny-teacher", concurrency=2, statement_tokens=12, description_tokens=12)
    prompts = [statements_prompt([QAPair("What colour is the star?", "Green.")]),
               statements_prompt([QAPair("How many dots?", "Three."), QAPair("Where?", "Top left.")])]
    texts = teacher.complete([TeacherRequest(p, None, 12) for p in prompts])
    assert all(isinstance(t, str) for t in texts)
    tok = BundleTokenizer(tiny_tokenizer_dir / "tokenizer.json")
    expected = sum(len(encode_segments(tok, render_prompt([Message("user", p)], thinking=None))) for p in prompts)
    # the server rendered the GGUF's chat template: same tokens as the project's ChatML
    assert teacher.usage["requests"] == 2 and teacher.usage["prompt_tokens"] == expected
    assert 0 < teacher.usage["completion_tokens"] <= 24


def test_extract_cli_with_the_openai_teacher(server, tmp_path, capsys):
    Image.new("RGB", (300, 200), (200, 30, 30)).save(tmp_path / "red.png")
    conv = [{"from": "human", "value": "<image>\nWhat colour is the image?"}, {"from": "gpt", "value": "Red."}]
    data = [{"id": "a", "image": "red.png", "conversations": conv},
            {"id": "b", "conversations": conv},
            {"id": "c", "image": "red.png", "conversations": conv + conv}]
    (tmp_path / "data.json").write_text(json.dumps(data))
    out = tmp_path / "out.jsonl"
    args = ["-q", "data", "extract", str(tmp_path / "data.json"), "--teacher", "openai", "--base-url", server,
            "--model", "tiny-teacher", "--statement-tokens", "16", "--description-tokens", "16",
            "--concurrency", "2", "--out", str(out), "--json"]
    assert edge_main(args) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["written"] == 3 and summary["skipped"] == 1
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["index"] for r in rows] == [0, 1, 2] and rows[1]["status"] == "skip"
    for r in (rows[0], rows[2]):  # random weights: a result, or a failure with its reason
        assert r["status"] in ("ok", "error")
        if r["status"] == "ok":
            assert r["teacher"] == "openai:tiny-teacher" and isinstance(r["description"], str)
        else:
            assert r["reason"].startswith(("statements:", "description:"))
    assert edge_main(args) == 0  # rerun: everything is already there
    assert json.loads(capsys.readouterr().out)["written"] == 0
