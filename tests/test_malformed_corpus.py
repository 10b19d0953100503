"""Replay the malformed-input corpus (tests/data/malformed/, written by tests/support/malformed.py).

Each hostile file goes through the `edge` command that reads it (in this process, as
`edge.cli.main`): the exit code must be the case's, stderr exactly one line
`edge CMD: error: ...` containing the case's phrase, no traceback, and nothing left behind.
Any other exception escaping `main` fails the test (that is the crash this guards against).
HTTP bodies go through `edge serve`'s body reader and request parser and must give a 400
naming the problem.
"""

from __future__ import annotations

import asyncio
import re
import shutil
from pathlib import Path

import pytest
from starlette.requests import Request

from edge.cli import main
from edge.serve.chat_request import parse_chat_request
from edge.serve.config import ServeConfig
from edge.serve.errors import APIError, from_edge_error
from edge.serve.images import image_bytes
from edge.serve.security import read_json
from runtime.bundle import read_manifest
from runtime.defaults import default_bundle_path
from runtime.errors import EdgeError
from runtime.image import load_image
from tests.support.malformed import CORPUS, Case, cases, files

EXAMPLE = default_bundle_path() / read_manifest(default_bundle_path()).examples[0]["image"]  # its first example
CASES = cases()
RUN = ["--question", "What is it?", "--verify", "size", "--threads", "1"]


def _argv(case: Case, path: Path, tmp: Path) -> list[str]:
    if case.kind == "image":
        return ["run", "--image", str(path), *RUN]
    if case.kind == "bundle":
        bundle = tmp / "bundle"
        shutil.copytree(path.parent, bundle)
        return ["run", "--bundle", str(bundle), "--image", str(EXAMPLE), *RUN]
    if case.kind == "gguf":
        return ["run", "--reasoner-gguf", str(path), "--image", str(EXAMPLE), *RUN]
    if case.kind == "archive":
        return ["unpack", str(path), "--to", str(tmp / "unpacked")]
    if case.kind == "jsonl":
        return ["eval", "--data", str(path), "--out", str(tmp / "eval"), "--threads", "1"]
    raise AssertionError(case.kind)


def _http(raw: bytes) -> APIError:
    """The body through `edge serve`'s reader and parser; the APIError it must raise."""
    async def receive():
        return {"type": "http.request", "body": raw, "more_body": False}

    request = Request({"type": "http", "method": "POST", "path": "/v1/chat/completions", "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(raw)).encode())]}, receive)

    async def go():
        cfg = ServeConfig(model_id="extract-think")
        chat = parse_chat_request(await read_json(request, limit=cfg.max_body_bytes, timeout_s=5), cfg)
        try:  # what the route does next, before any model work (edge.serve.routes._prepare)
            data = image_bytes(chat.image, max_bytes=cfg.max_image_bytes, timeout_s=5)
            load_image(data, max_pixels=cfg.max_pixels, max_bytes=cfg.max_image_bytes)
        except EdgeError as exc:
            raise from_edge_error(exc) from None

    with pytest.raises(APIError) as info:
        asyncio.run(go())
    return info.value


def replay(case: Case, tmp: Path, capsys) -> tuple[int, str]:
    """(exit code or HTTP status, the error text) of one case."""
    path = CORPUS / case.path
    if case.kind == "http":
        err = _http(path.read_bytes())
        return err.status, err.message
    capsys.readouterr()
    code = main(_argv(case, path, tmp))
    return code, capsys.readouterr().err


def test_the_corpus_is_what_the_script_writes():
    """Regenerating gives the committed bytes, every file has a case, and it stays small."""
    written = files()
    assert {c.path for c in CASES} == set(written)
    assert all((CORPUS / rel).read_bytes() == data for rel, data in written.items())
    assert sum(len(d) for d in written.values()) < 1 << 20
    assert {c.kind for c in CASES} == {"image", "bundle", "gguf", "archive", "jsonl", "http"}


@pytest.mark.parametrize("case", CASES, ids=[c.path for c in CASES])
def test_each_hostile_input_gives_one_clear_error(case, tmp_path, capsys):
    code, err = replay(case, tmp_path, capsys)
    if case.kind == "http":
        assert code == case.exit and re.search(case.match, err), (code, err)
        return
    lines = err.strip().splitlines()
    command = _argv(case, CORPUS / case.path, tmp_path / "again")[0]
    assert len(lines) == 1 and lines[0].startswith(f"edge {command}: error: "), err
    assert re.search(case.match, lines[0]), lines[0]
    assert code == case.exit, (code, lines[0])
    assert "Traceback" not in err
    if case.kind == "archive":
        assert not (tmp_path / "unpacked").exists()  # nothing half-written
    if case.kind == "jsonl":
        assert not (tmp_path / "eval").exists() or not any((tmp_path / "eval").rglob("*.jsonl"))
