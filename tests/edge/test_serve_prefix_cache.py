"""`edge serve --prefix-cache-mb`: a second request about the same image restores the image's
prefix state (no vision encoder, no image prefill); 0 turns that off. Shipped default bundle
(tests/runtime/test_prefix_cache.py covers both backends' save and restore)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytest.importorskip("openai")
pytest.importorskip("fastapi")

from tests.edge.helpers import REPO  # noqa: E402
from tests.edge.serve_helpers import DEFAULT_EXAMPLE, data_url, start_server, user_message  # noqa: E402

HIT = 'edge_serve_cache_hits_total{cache="prefix"}'
REASONER_HIT = 'edge_serve_cache_hits_total{cache="reasoner_prefix"}'


def _ask(server, focus: str) -> dict:
    """A request with its own focus: the extraction differs, so its cache cannot answer it."""
    body = {"messages": user_message("How many blue crosses are in the image?", data_url(DEFAULT_EXAMPLE)),
            "hint": False, "focus": focus, "extraction_budget": 8, "thinking_budget": 4, "max_tokens": 4,
            "temperature": 0}
    status, raw, _ = server.post("/v1/chat/completions", body)
    assert status == 200, raw
    return json.loads(raw)["extract_think"]


@pytest.mark.parametrize("size, second_hits", [(None, True), ("64", True), ("0", False)])
def test_second_request_on_the_same_image(tmp_path, size, second_hits):
    flags = [] if size is None else ["--prefix-cache-mb", size]
    server = start_server(tmp_path, "--threads", "1", "--profile", "laptop", *flags)
    try:
        first, second = _ask(server, "the crosses"), _ask(server, "the colours")
        assert first["cache_hits"].get("prefix") in (False, None)
        assert bool(second["cache_hits"].get("prefix")) is second_hits
        if second_hits:  # no vision encoder either (with 0 the embedding cache still answers)
            assert second["stages"]["vision"]["cached"] is True
        assert server.metric(HIT) == (1 if second_hits else 0)
        # the reasoner's prompt start, saved by the first request, restored by the second
        assert second["cache_hits"].get("reasoner_prefix", False) is second_hits
        assert server.metric(REASONER_HIT) == (1 if second_hits else 0)
    finally:
        assert server.stop() == 0, server.stderr()


@pytest.mark.parametrize("value", ["-5", "big"])
def test_bad_prefix_cache_size_is_one_line(value):
    proc = subprocess.run([sys.executable, "-m", "edge", "serve", "--port", "0", "--prefix-cache-mb", value],
                          capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 2 and proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("edge serve: error: --prefix-cache-mb must be"), proc.stderr


def test_bad_lookup_is_one_line():
    proc = subprocess.run([sys.executable, "-m", "edge", "serve", "--port", "0", "--lookup", "99"],
                          capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 2 and proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("edge serve: error: lookup must be an integer"), proc.stderr
