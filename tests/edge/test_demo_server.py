"""The web demo's HTTP side with a real pipeline: uploads, refusals, streaming, queueing."""

from __future__ import annotations

import http.client
import json
import socket
import subprocess
import sys
import threading
import time

import pytest

from edge.demo.server import DemoApp, make_server
from runtime.errors import EdgeError
from runtime.manifest import Budgets
from tests.edge.helpers import REPO, SMALL_BUDGETS, one_error_line


def request(port: int, method: str, path: str, body: bytes | None = None,
            headers: dict | None = None) -> tuple[int, bytes, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.read(), dict(resp.getheaders())
    finally:
        conn.close()


def upload(port: int, data: bytes) -> tuple[int, dict]:
    status, body, _ = request(port, "POST", "/api/image", data, {"Content-Type": "image/png"})
    return status, json.loads(body)


def ask(port: int, payload: dict) -> tuple[int, list[dict] | dict]:
    status, body, headers = request(port, "POST", "/api/ask", json.dumps(payload).encode(),
                                    {"Content-Type": "application/json"})
    if status != 200:
        return status, json.loads(body)
    assert headers["Content-Type"] == "application/x-ndjson"
    return status, [json.loads(line) for line in body.decode().splitlines() if line.strip()]


def test_page_and_static_files(demo_port):
    status, body, headers = request(demo_port, "GET", "/")
    assert status == 200 and b'id="file-input"' in body and b'capture="environment"' in body
    assert "default-src 'self'" in headers["Content-Security-Policy"]
    for path in ("/app.js", "/style.css"):
        assert request(demo_port, "GET", path)[0] == 200
    for path in ("/../../etc/passwd", "/static/../server.py", "/nope"):
        status, body, _ = request(demo_port, "GET", path)
        assert status == 404 and "no such page" in json.loads(body)["error"]


def test_info(demo_port):
    status, body, _ = request(demo_port, "GET", "/api/info")
    info = json.loads(body)
    assert status == 200 and info["bundle"] == "tiny" and info["max_upload_bytes"] == 200_000
    assert info["defaults"]["thinking_budget"] == SMALL_BUDGETS["thinking"]
    assert info["memory"]["rss_mb"] > 0
    assert info["example"] == {"question": "What colour is the square?"}
    status, body, headers = request(demo_port, "GET", "/api/example-image")
    assert status == 200 and headers["Content-Type"] == "image/png" and body.startswith(b"\x89PNG")


def test_ask_streams_every_stage_to_an_answer(demo_port, image_png):
    status, meta = upload(demo_port, image_png.read_bytes())
    assert status == 200 and meta["width"] == 48 and meta["height"] == 48
    status, events = ask(demo_port, {"image": meta["id"], "question": "What colour is the square?",
                                "thinking": True, "thinking_budget": 6, "extraction_budget": 6})
    assert status == 200
    kinds = [e["type"] for e in events]
    assert kinds[0] == "started" and kinds[-1] == "done" and "token" in kinds
    finished = {e["stage"]: e for e in events if e["type"] == "stage_finished"}
    assert set(finished) >= {"hint", "vision", "extraction", "thinking", "answer"}
    assert finished["thinking"]["stats"]["tokens"] <= 6
    assert finished["extraction"]["stats"]["budget"] == 6
    result = events[-1]["result"]
    assert result["budgets"]["thinking"] == 6 and result["peak_rss_mb"] > 0
    assert events[-1]["memory"]["system_available_mb"] > 0
    # streamed token text adds up to each stage's final text
    for stage in ("extraction", "thinking"):
        streamed = "".join(e["text"] for e in events if e["type"] == "token" and e["stage"] == stage)
        assert streamed.strip() == (finished[stage]["text"] or "").strip()


def test_thinking_off_and_deadline(demo_port, image_png):
    _, meta = upload(demo_port, image_png.read_bytes())
    status, events = ask(demo_port, {"image": meta["id"], "question": "Is there a circle?", "thinking": False,
                                "hint": False, "deadline_s": 30})
    assert status == 200
    result = events[-1]["result"]
    assert result["thinking_enabled"] is False and result["thinking"] is None
    assert result["deadline_s"] == 30 and "hint" not in result["stages"]


@pytest.mark.parametrize(
    ("data", "status", "message"),
    [
        (b"this is not an image", 415, "not a readable image in an allowed format"),
        (b"\x89PNG\r\n\x1a\n" + b"\0" * 64, 415, "not a readable image"),
        (b"", 400, "the upload is empty"),
        (b"x" * 200_001, 413, "the limit is 195 KB"),
    ],
)
def test_bad_uploads_are_refused_and_the_server_keeps_serving(demo_port, image_png, data, status, message):
    got, body = upload(demo_port, data)
    assert got == status and message in body["error"]
    assert "BytesIO" not in body["error"]
    got, meta = upload(demo_port, image_png.read_bytes())  # still serving
    assert got == 200 and meta["id"]


def test_upload_over_the_pixel_cap(demo_port):
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (1200, 1000), (10, 20, 30)).save(buf, "PNG")  # tiny file, 1.2 MP > the 1 MP cap
    got, body = upload(demo_port, buf.getvalue())
    assert got == 415 and "exceeds the 1,000,000-pixel cap" in body["error"]


@pytest.mark.parametrize(
    ("payload", "status", "message"),
    [
        ({"question": "What?"}, 400, "no image"),
        ({"image": "0" * 32, "question": "What?"}, 404, "upload it again"),
        ({"image": "IMG", "question": "  "}, 400, "type a question"),
        ({"image": "IMG", "question": "What?", "thinking_budget": -3}, 400, "thinking budget must be"),
        ({"image": "IMG", "question": "What?", "deadline_s": 0}, 400, "deadline must be"),
        ({"image": "IMG", "question": "What?", "colour": "red"}, 400, "unknown field(s): colour"),
        ({"image": "IMG", "question": "What?", "options": ["only one"]}, 400, "between 2 and"),
        ({"image": "IMG", "question": "x" * 16_001}, 400, "the limit is 16,000"),
    ],
)
def test_bad_questions_are_refused(demo_port, image_png, payload, status, message):
    _, meta = upload(demo_port, image_png.read_bytes())
    if payload.get("image") == "IMG":
        payload = {**payload, "image": meta["id"]}
    got, body = ask(demo_port, payload)
    assert got == status and message in body["error"], body


def test_not_json(demo_port):
    status, body, _ = request(demo_port, "POST", "/api/ask", b"{nope", {"Content-Type": "application/json"})
    assert status == 400 and "not valid JSON" in json.loads(body)["error"]


def test_concurrent_requests_take_turns(demo_port, image_png):
    _, meta = upload(demo_port, image_png.read_bytes())
    results: list = [None, None, None]

    def worker(i: int) -> None:
        results[i] = ask(demo_port, {"image": meta["id"], "question": f"How many shapes? ({i})",
                                     "thinking_budget": 24, "extraction_budget": 24})

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    for status, events in results:
        assert status == 200 and events[-1]["type"] == "done"
    # while one ran, at least one other was told it waits in the queue
    queued = [e for _, events in results for e in events if e["type"] == "queued"]
    assert queued and all(e["position"] >= 1 for e in queued)


def test_client_leaving_mid_stream_does_not_stop_the_server(demo_port, image_png):
    _, meta = upload(demo_port, image_png.read_bytes())
    body = json.dumps({"image": meta["id"], "question": "Describe it", "thinking_budget": 12}).encode()
    with socket.create_connection(("127.0.0.1", demo_port), timeout=30) as s:
        s.sendall(b"POST /api/ask HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        assert b"200" in s.recv(64)
    time.sleep(0.2)
    status, events = ask(demo_port, {"image": meta["id"], "question": "Still there?", "thinking_budget": 4})
    assert status == 200 and events[-1]["type"] == "done"


def test_port_in_use_is_one_clear_error(edge_bundle_dir):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with pytest.raises(EdgeError, match=f"port {port} on 127.0.0.1 is already in use"):
            make_server(DemoApp(None, info={}, max_upload_bytes=1, max_pixels=1, budgets=Budgets()),
                        "127.0.0.1", port)
        proc = subprocess.run([sys.executable, "-m", "edge", "demo", "--bundle", str(edge_bundle_dir),
                               "--port", str(port)], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert proc.returncode == 1
    assert "already in use" in one_error_line(proc) and "--port" in proc.stderr


def test_edge_demo_command_serves_until_terminated(edge_bundle_dir):
    proc = subprocess.Popen([sys.executable, "-m", "edge", "demo", "--bundle", str(edge_bundle_dir),
                             "--port", "0", "--profile", "raspberry-pi-5-4gb"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    try:
        line = proc.stdout.readline()
        assert "serving on http://127.0.0.1:" in line, line + proc.stderr.read()
        port = int(line.split("http://127.0.0.1:")[1].split("/")[0])
        status, body, _ = request(port, "GET", "/api/info")
        info = json.loads(body)
        assert status == 200 and info["profile"] == "raspberry-pi-5-4gb" and info["threads"] >= 1
        assert info["selection"]["backend"] == "llamacpp"
    finally:
        proc.terminate()  # SIGTERM, as systemd stops it
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "stopped" in err
