"""The queue, cancellation, timeouts and shutdown of `edge serve`, with long requests.

The tiny random-weight bundle's perception model never ends an extraction early (greedy
decoding of random weights), so `extraction_budget: 1800` makes a request that runs for
1800 tokens: long enough to be running while a test disconnects, fills the queue or
sends SIGTERM. Each request gets its own image so no cache shortens it.
"""

from __future__ import annotations

import http.client
import json
import signal
import time

import pytest

openai = pytest.importorskip("openai")
pytest.importorskip("fastapi")

from tests.edge.helpers import write_png  # noqa: E402
from tests.edge.serve_helpers import data_url, start_server, user_message  # noqa: E402

LONG = 1800  # extraction tokens of a long request


def long_body(image_url: str, **kw) -> dict:
    return {"messages": user_message("Describe everything", image_url), "hint": False,
            "extraction_budget": LONG, "thinking_budget": 4, "max_tokens": 4, **kw}


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("serve_images")
    return [data_url(write_png(folder / f"{i}.png", seed=100 + i)) for i in range(12)]


class StreamingRequest:
    """A streamed completion read event by event over a raw HTTP connection."""

    def __init__(self, port: int, body: dict) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        self.conn.request("POST", "/v1/chat/completions", json.dumps({**body, "stream": True}),
                          {"Content-Type": "application/json"})
        self.resp = self.conn.getresponse()
        assert self.resp.status == 200, self.resp.read()

    def events(self):
        data = []
        while True:
            line = self.resp.readline()
            if not line:
                return
            line = line.decode().rstrip("\n")
            if line.startswith("data: "):
                data.append(line[6:])
            elif not line and data:
                payload = "\n".join(data)
                data = []
                yield payload if payload == "[DONE]" else json.loads(payload)

    def until(self, predicate) -> dict:
        for ev in self.events():
            if ev != "[DONE]" and predicate(ev):
                return ev
        raise AssertionError("the stream ended first")

    def rest(self) -> list:
        return list(self.events())

    def close(self) -> None:
        self.conn.close()


def extraction_token(ev: dict) -> bool:
    info = ev.get("extract_think") or {}
    return info.get("type") == "token" and info.get("stage") == "extraction"


def wait_for(predicate, timeout: float = 60, what: str = "") -> None:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def busy_server(tmp_path_factory, edge_bundle_dir):
    """No waiting room: one request at a time, the next one gets 429."""
    srv = start_server(tmp_path_factory.mktemp("busy"), "--bundle", str(edge_bundle_dir), "--backend",
                       "llamacpp", "--threads", "1", "--max-queue", "0", "--profile", "laptop")
    yield srv
    assert srv.stop() == 0, srv.stderr()


def test_queue_full_is_429_with_retry_after(busy_server, images):
    running = StreamingRequest(busy_server.port, long_body(images[0]))
    try:
        running.until(extraction_token)  # it runs now
        client = openai.OpenAI(base_url=busy_server.base_url, api_key="x", max_retries=0)
        with pytest.raises(openai.RateLimitError) as info:
            client.chat.completions.create(model="tiny", messages=user_message("Quick?", images[1]), max_tokens=4)
        assert info.value.status_code == 429
        assert int(info.value.response.headers["Retry-After"]) >= 1
        assert info.value.body["code"] == "queue_full"
        assert busy_server.metric('edge_serve_http_requests_total{code="429"') == 1
    finally:
        running.close()


def test_a_client_that_disconnects_cancels_its_request(busy_server, images):
    wait_for(lambda: busy_server.metric("edge_serve_running") == 0, what="the previous request to end")
    cancelled = busy_server.metric('edge_serve_completions_total{outcome="cancelled"}')
    tokens = busy_server.metric('edge_serve_tokens_total{stage="extraction"}')
    stream = StreamingRequest(busy_server.port, long_body(images[2]))
    stream.until(extraction_token)
    stream.close()  # the client goes away mid-stream
    wait_for(lambda: busy_server.metric('edge_serve_completions_total{outcome="cancelled"}') == cancelled + 1,
             what="the cancellation in /metrics")
    # it stopped long before its budget, and the model is free for the next request at once
    assert busy_server.metric('edge_serve_tokens_total{stage="extraction"}') - tokens < LONG
    assert busy_server.metric("edge_serve_running") == 0
    client = openai.OpenAI(base_url=busy_server.base_url, api_key="x", max_retries=0)
    r = client.chat.completions.create(model="tiny", messages=user_message("Still there?", images[3]), max_tokens=4,
                                       extra_body={"extraction_budget": 4})
    assert r.choices[0].message.content.strip()
    assert "Traceback" not in busy_server.stderr()


def test_the_request_timeout_stops_a_request(tmp_path, edge_bundle_dir, images):
    srv = start_server(tmp_path, "--bundle", str(edge_bundle_dir), "--backend", "llamacpp", "--threads", "1",
                       "--request-timeout", "0.5", "--profile", "laptop")
    try:
        status, body, _ = srv.post("/v1/chat/completions", long_body(images[4]))
        err = json.loads(body)["error"]
        assert status == 504 and err["code"] == "timeout" and "--request-timeout" in err["message"]
        # streamed: the 200 went out first, so the error comes in-band, then [DONE]
        stream = StreamingRequest(srv.port, long_body(images[5]))
        events = stream.rest()
        stream.close()
        assert events[-1] == "[DONE]" and events[-2]["error"]["code"] == "timeout"
        assert srv.metric('edge_serve_completions_total{outcome="timeout"}') == 2
    finally:
        assert srv.stop() == 0, srv.stderr()


def _clean_exit(srv, code: int) -> None:
    err = srv.stderr()
    assert code == 0, err
    assert "Traceback" not in err and "Segmentation" not in err and "core dumped" not in err
    assert "edge serve: stopped" in err


def test_sigterm_mid_request_drains_then_exits_cleanly(tmp_path, edge_bundle_dir, images):
    srv = start_server(tmp_path, "--bundle", str(edge_bundle_dir), "--backend", "llamacpp", "--threads", "1",
                       "--profile", "laptop")
    stream = StreamingRequest(srv.port, long_body(images[6]))
    stream.until(extraction_token)
    srv.proc.send_signal(signal.SIGTERM)  # as systemd stops a service
    events = stream.rest()  # the running request is finished, not dropped
    stream.close()
    assert events[-1] == "[DONE]"
    final = [e for e in events[:-1] if e["choices"] and e["choices"][0]["finish_reason"]]
    assert len(final) == 1 and final[0]["extract_think"]["stages"]["extraction"]["tokens"] == LONG
    _clean_exit(srv, srv.wait())  # the one SIGTERM above stops it


def test_sigterm_past_the_drain_time_stops_the_request_and_exits_cleanly(tmp_path, edge_bundle_dir, images):
    srv = start_server(tmp_path, "--bundle", str(edge_bundle_dir), "--backend", "llamacpp", "--threads", "1",
                       "--drain-timeout", "0.2", "--profile", "laptop")
    stream = StreamingRequest(srv.port, long_body(images[7]))
    stream.until(extraction_token)
    srv.proc.send_signal(signal.SIGTERM)
    events = stream.rest()
    stream.close()
    # the stream is ended properly: an in-band error saying why, then [DONE]; no answer
    assert events[-1] == "[DONE]" and events[-2]["error"]["code"] == "shutdown"
    assert not any(e.get("choices") and e["choices"][0]["finish_reason"] for e in events[:-1])
    _clean_exit(srv, srv.wait())  # the one SIGTERM above stops it
