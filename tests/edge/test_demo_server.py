"""`edge demo`: the page and its files on the `edge serve` app, and the requests the page
makes (streamed /v1/chat/completions with its controls), against a real pipeline."""

from __future__ import annotations

import base64
import contextlib
import io
import json
import socket
import subprocess
import sys
import time

import pytest

pytest.importorskip("fastapi")

from tests.edge.conftest import DEMO_MAX_UPLOAD  # noqa: E402
from tests.edge.helpers import REPO, SMALL_BUDGETS, one_error_line  # noqa: E402
from tests.edge.serve_helpers import data_url, progress, sse_events, user_message  # noqa: E402


def page_request(image: str, question: str, **controls) -> dict:
    """What app.js sends."""
    return {"model": "tiny", "stream": True, "messages": user_message(question, image), **controls}


def ask(server, body: dict) -> tuple[int, list | dict]:
    status, raw, headers = server.post("/v1/chat/completions", body)
    if status != 200:
        return status, json.loads(raw)["error"]
    assert headers["content-type"].startswith("text/event-stream")
    return status, sse_events(raw)


def result_of(events: list) -> dict:
    final = [e for e in events if isinstance(e, dict) and e.get("choices") and e["choices"][0]["finish_reason"]]
    assert len(final) == 1, events[-3:]
    return final[0]["extract_think"]


def test_page_and_static_files(demo_server):
    status, body, headers = demo_server.get("/")
    assert status == 200 and b'id="file-input"' in body and b'capture="environment"' in body
    assert "default-src 'self'" in headers["content-security-policy"]
    assert headers["x-frame-options"] == "DENY"
    for path in ("/app.js", "/style.css", "/index.html"):
        assert demo_server.get(path)[0] == 200
    for path in ("/../../etc/passwd", "/static/../page.py", "/page.py", "/nope"):
        status, body, _ = demo_server.get(path)
        assert status == 404 and "no such endpoint" in json.loads(body)["error"]["message"]


def test_example_and_info(demo_server):
    status, body, _ = demo_server.get("/demo/example")
    ex = json.loads(body)
    assert status == 200 and ex["question"] == "What colour is the square?"
    assert base64.b64decode(ex["image"].split(",", 1)[1]).startswith(b"\x89PNG")
    info = json.loads(demo_server.get("/v1/models")[1])["data"][0]["extract_think"]
    assert info["bundle"] == "tiny" and info["profile"] == "demo-test"
    assert info["limits"]["max_image_bytes"] == DEMO_MAX_UPLOAD
    assert info["budgets"]["thinking"] == SMALL_BUDGETS["thinking"]
    health = json.loads(demo_server.get("/health")[1])
    assert health["memory"]["rss_mb"] > 0 and health["memory"]["system_available_mb"] > 0


def test_ask_streams_every_stage_to_an_answer(demo_server, image_png):
    status, events = ask(demo_server, page_request(data_url(image_png), "What colour is the square?",
                                                   thinking=True, thinking_budget=6, extraction_budget=6))
    assert status == 200 and events[-1] == "[DONE]"
    prog = progress(events)
    kinds = [p["type"] for p in prog]
    assert kinds[0] == "started" and "token" in kinds
    finished = {p["stage"]: p for p in prog if p["type"] == "stage_finished"}
    assert set(finished) >= {"hint", "vision", "extraction", "thinking", "answer"}
    assert finished["thinking"]["stats"]["tokens"] <= 6
    assert finished["extraction"]["stats"]["budget"] == 6
    result = result_of(events)
    assert result["budgets"]["thinking"] == 6 and result["peak_rss_mb"] > 0
    streamed = "".join(p["text"] for p in prog if p["type"] == "token" and p["stage"] == "extraction")
    assert streamed.strip() == (finished["extraction"]["text"] or "").strip()
    thinking = "".join(e["choices"][0]["delta"].get("reasoning_content", "") for e in events[:-1] if e["choices"])
    assert thinking.strip() == (finished["thinking"]["text"] or "").strip()


def test_thinking_off_and_deadline(demo_server, image_png):
    status, events = ask(demo_server, page_request(data_url(image_png), "Is there a circle?", thinking=False,
                                                   hint=False, deadline_s=30))
    assert status == 200
    result = result_of(events)
    assert result["thinking_enabled"] is False and result["thinking"] is None
    assert result["deadline_s"] == 30 and "hint" not in result["stages"]


def _png(width: int, height: int) -> str:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (width, height), (10, 20, 30)).save(buf, "PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


@pytest.mark.parametrize(
    ("image", "status", "message"),
    [
        ("data:image/png;base64," + base64.b64encode(b"this is not an image").decode(), 400,
         "not a readable image in an allowed format"),
        ("data:image/png;base64," + base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * 64).decode(), 400,
         "not a readable image"),
        ("data:image/png;base64,", 400, "the image is empty (0 bytes)"),
        ("data:image/jpeg;base64," + base64.b64encode(b"x" * (DEMO_MAX_UPLOAD + 1)).decode(), 413, "the limit is 195 KB"),
        (_png(1200, 1000), 400, "exceeds the 1,000,000-pixel cap"),  # a small file, 1.2 MP
    ],
)
def test_bad_images_are_refused_and_the_server_keeps_serving(demo_server, image_png, image, status, message):
    got, err = ask(demo_server, page_request(image, "What?"))
    assert got == status and message in err["message"], err
    assert "BytesIO" not in err["message"] and "<bytes>" not in err["message"]
    got, events = ask(demo_server, page_request(data_url(image_png), "Still there?", thinking_budget=2))
    assert got == 200 and events[-1] == "[DONE]"


def test_cross_site_requests_are_refused(demo_server, image_png):
    """A page on another site may POST text/plain without a preflight, and may point its own
    name at 127.0.0.1 (DNS rebinding): neither reaches the model."""
    body = json.dumps(page_request(data_url(image_png), "What?")).encode()
    status, raw, _ = demo_server.post("/v1/chat/completions", body, {"Content-Type": "text/plain"})
    assert status == 415
    status, raw, _ = demo_server.post("/v1/chat/completions", body, {"Origin": "http://evil.example"})
    assert status == 403 and json.loads(raw)["error"]["code"] == "origin_not_allowed"
    status, raw, _ = demo_server.get("/", {"Host": "rebound.evil.example"})
    assert status == 403 and json.loads(raw)["error"]["code"] == "host_not_allowed"
    # the page's own origin is fine
    status, _, _ = demo_server.post("/v1/chat/completions", page_request(data_url(image_png), "What?",
                                                                         thinking_budget=2),
                                    {"Origin": demo_server.url})
    assert status == 200


def test_client_leaving_mid_stream_does_not_stop_the_server(demo_server, image_png):
    body = json.dumps(page_request(data_url(image_png), "Describe it", thinking_budget=12)).encode()
    with socket.create_connection(("127.0.0.1", demo_server.port), timeout=30) as s:
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                  b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        assert b"200" in s.recv(64)
    status, events = ask(demo_server, page_request(data_url(image_png), "Still there?", thinking_budget=4))
    assert status == 200 and events[-1] == "[DONE]"


def test_a_slow_client_is_cut_off(demo_server):
    """A connection that never completes its request head does not hold a slot for ever,
    neither the first request on a connection nor the next one on a kept-alive connection."""
    with socket.create_connection(("127.0.0.1", demo_server.port), timeout=60) as s:
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\n")  # and nothing more
        assert s.recv(64) == b""  # closed by the server (after its header timeout)
    with socket.create_connection(("127.0.0.1", demo_server.port), timeout=60) as s:
        s.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        first = b""
        while b"\r\n\r\n" not in first or not first.endswith(b"}"):  # the whole first answer
            first += s.recv(4096)
        assert b"200 OK" in first
        started = time.monotonic()
        for byte in b"GET /hea":  # the next head, a byte at a time
            s.sendall(bytes([byte]))
            time.sleep(0.5)
        s.settimeout(60)
        rest = b""
        with contextlib.suppress(ConnectionResetError):
            while chunk := s.recv(4096):
                rest += chunk
        assert rest == b"" and time.monotonic() - started < 40  # closed, not answered


@pytest.mark.parametrize("command", ["serve", "demo"])
def test_port_in_use_is_one_clear_error(edge_bundle_dir, command):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        proc = subprocess.run([sys.executable, "-m", "edge", command, "--bundle", str(edge_bundle_dir),
                               "--port", str(port)], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert proc.returncode == 1
    assert "already in use" in one_error_line(proc) and "--port" in proc.stderr


@pytest.mark.parametrize(("args", "message"), [
    (["--max-queue", "-1"], "--max-queue must be 0 or more"),
    (["--threads", "100000"], "threads"),
    (["--port", "70000"], "not a port number"),
    (["--api-key", " "], "--api-key is empty"),
    (["--request-timeout", "nan"], "--request-timeout must be"),
    (["--gpu-layers", "-1"], "--gpu-layers must be 0 or more"),
])
def test_bad_flags_are_one_line(args, message):
    proc = subprocess.run([sys.executable, "-m", "edge", "serve", *args], capture_output=True, text=True,
                          timeout=120, cwd=REPO)
    assert proc.returncode == 2 and message in one_error_line(proc)


def test_edge_demo_serves_until_terminated(demo_server):
    """(The fixture's teardown sends SIGTERM and checks exit code 0; here: the info the page shows.)"""
    info = json.loads(demo_server.get("/v1/models")[1])["data"][0]["extract_think"]
    assert info["threads"] == 1 and info["selection"]["backend"] == "llamacpp"
    assert "serving tiny on http://127.0.0.1:" in demo_server.out.read_text()
