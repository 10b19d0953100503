"""`edge serve` with the shipped default bundle, driven by the official `openai` client (and
curl for the SSE framing), as any OpenAI-compatible app would talk to it."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading

import pytest

openai = pytest.importorskip("openai")
pytest.importorskip("fastapi")

from tests.edge.serve_helpers import DEFAULT_EXAMPLE, data_url, start_server, user_message  # noqa: E402

QUESTION = "How many blue crosses are in the image?"
MC_QUESTION = QUESTION + "\nA. 3\nB. 4\nC. 1\nD. 0"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = start_server(tmp_path_factory.mktemp("serve"), "--threads", "1", "--profile", "laptop")
    yield srv
    assert srv.stop() == 0, srv.stderr()


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0, timeout=120)


@pytest.fixture(scope="module")
def model(client):
    return client.models.list().data[0].id


@pytest.fixture(scope="module")
def image():
    return data_url(DEFAULT_EXAMPLE)


def extra(obj) -> dict:
    return (obj.model_extra or {}).get("extract_think")


def test_models_lists_the_bundle(client, server):
    models = client.models.list().data
    assert [m.id for m in models] == ["extract-think-default"]
    info = extra(models[0])
    assert set(info["modules"]) == {"perception", "reasoner"}
    assert info["modules"]["reasoner"]["backend"] == "llamacpp" and info["modules"]["reasoner"]["quant"]
    assert info["budgets"]["thinking"] == 256 and info["reasoning_effort"] == {"low": 64, "medium": 128, "high": 256}
    assert info["profile"] == "laptop" and info["threads"] == 1
    assert client.models.retrieve("extract-think-default").id == "extract-think-default"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("gpt-4o")


def test_acceptance_non_streaming(client, model, image):
    r = client.chat.completions.create(model=model, messages=user_message(QUESTION, image),
                                       extra_body={"thinking_budget": 8})
    msg = r.choices[0].message
    assert msg.content.strip()
    assert isinstance(msg.reasoning_content, str)
    assert r.usage.completion_tokens_details.reasoning_tokens <= 8
    info = extra(r)
    assert info["budgets"]["thinking"] == 8 and info["stages"]["thinking"]["tokens"] <= 8
    assert info["thinking"] == msg.reasoning_content and info["extraction"] and info["hint"] is not None
    # the budget cut the thinking: the client is told with finish_reason "length"
    kinds = {e["kind"] for e in info["budget_events"]}
    assert "force_think_end" in kinds and r.choices[0].finish_reason == "length"
    assert r.model == model and r.id.startswith("chatcmpl-") and r.object == "chat.completion"
    stages = info["stages"]
    assert r.usage.prompt_tokens == sum(s["prompt_tokens"] for n, s in stages.items() if n != "vision")
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens


def test_acceptance_streaming_reasoning_before_content(client, model, image):
    chunks = list(client.chat.completions.create(
        model=model, messages=user_message(QUESTION, image), stream=True,
        stream_options={"include_usage": True},
        extra_body={"thinking_budget": 8, "extraction_budget": 201}))  # 201: not cached by another test
    order, reasoning, content = [], [], []
    for ch in chunks:
        for choice in ch.choices:  # naive clients read choices[0].delta: every chunk has one
            d = choice.delta
            rc = (d.model_extra or {}).get("reasoning_content")
            if rc:
                order.append("reasoning")
                reasoning.append(rc)
            if d.content:
                order.append("content")
                content.append(d.content)
    assert "reasoning" in order and "content" in order
    assert order.index("reasoning") < order.index("content")
    assert "reasoning" not in order[order.index("content"):]
    usage = [ch.usage for ch in chunks if ch.usage is not None]
    assert len(usage) == 1 and usage[0].completion_tokens_details.reasoning_tokens <= 8
    final = [ch for ch in chunks if ch.choices and ch.choices[0].finish_reason]
    assert len(final) == 1 and final[0].choices[0].finish_reason == "length"
    result = extra(final[0])
    # the stream has every token; the result's texts are stripped (a forced newline)
    assert "".join(reasoning).strip() == result["thinking"].strip()
    assert "".join(content).strip() == result["answer_text"].strip()
    # our progress events: stage starts and ends, the hint and extraction text
    progress = [extra(ch) for ch in chunks if extra(ch) and "type" in extra(ch)]
    kinds = [p["type"] for p in progress]
    assert kinds[0] == "started" and "stage_finished" in kinds and "budget" in kinds
    extraction = "".join(p["text"] for p in progress if p["type"] == "token" and p["stage"] == "extraction")
    assert extraction.strip() == (result["extraction"] or "").strip()
    finished = {p["stage"] for p in progress if p["type"] == "stage_finished"}
    assert finished >= {"hint", "vision", "extraction", "thinking", "answer"}


def test_streamed_and_whole_answers_agree_when_greedy(client, model, image):
    kw = dict(model=model, messages=user_message(MC_QUESTION, image), temperature=0, max_tokens=12)
    whole = client.chat.completions.create(**kw)
    parts = {"reasoning": "", "content": ""}
    for ch in client.chat.completions.create(stream=True, **kw):
        if ch.choices:
            d = ch.choices[0].delta
            parts["reasoning"] += (d.model_extra or {}).get("reasoning_content") or ""
            parts["content"] += d.content or ""
    assert parts["content"].strip() == whole.choices[0].message.content.strip()
    assert parts["reasoning"].strip() == whole.choices[0].message.reasoning_content.strip()
    info = extra(whole)
    assert info["options"] == ["3", "4", "1", "0"] and info["answer"] in "ABCD"
    assert info["budgets"]["answer"] == 12


def test_reasoning_effort_is_mapped(client, model, image):
    for effort, budget in (("low", 64), ("high", 256)):
        r = client.chat.completions.create(model=model, messages=user_message(QUESTION, image),
                                           reasoning_effort=effort)
        assert extra(r)["budgets"]["thinking"] == budget
        assert r.usage.completion_tokens_details.reasoning_tokens <= budget
    r = client.chat.completions.create(model=model, messages=user_message(QUESTION, image), reasoning_effort="none")
    assert extra(r)["thinking_enabled"] is False and r.choices[0].message.content.strip()
    assert getattr(r.choices[0].message, "reasoning_content", None) is None
    assert r.usage.completion_tokens_details.reasoning_tokens == 0


def test_a_follow_up_reuses_the_images_embeddings(client, model, image):
    first = [{"role": "user", "content": [{"type": "text", "text": "What shapes are there?"},
                                          {"type": "image_url", "image_url": {"url": image}}]}]
    a = client.chat.completions.create(model=model, messages=first, temperature=0)
    follow = first + [{"role": "assistant", "content": a.choices[0].message.content},
                      {"role": "user", "content": "Which region holds the yellow shape?"}]
    b = client.chat.completions.create(model=model, messages=follow, temperature=0)
    info = extra(b)
    assert info["question"] == "Which region holds the yellow shape?"
    assert info["cache_hits"]["embedding"] is True and info["stages"]["vision"]["cached"] is True


@pytest.mark.parametrize(("fields", "param", "message"), [
    ({"seed": "x"}, "seed", "seed must be an integer"),
    ({"temperature": "hot"}, "temperature", "temperature must be a number"),
    ({"max_tokens": -1}, "max_tokens", "between 0"),
    ({"n": 3}, "n", "n must be 1"),
    ({"reasoning_effort": "extreme"}, "reasoning_effort", "reasoning_effort must be"),
    ({"thinking_budget": "lots"}, "thinking_budget", "must be an integer"),
])
def test_wrong_types_are_400_error_objects(client, model, image, fields, param, message):
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model=model, messages=user_message(QUESTION, image), extra_body=fields)
    err = info.value.body
    assert err["type"] == "invalid_request_error" and err["param"] == param and message in err["message"]


@pytest.mark.parametrize(("messages", "message"), [
    (user_message(QUESTION, "data:image/png;base64,dGhpcyBpcyBub3QgYW4gaW1hZ2U="), "not a readable image"),
    (user_message(QUESTION, "/etc/passwd"), "file paths"),
    (user_message(QUESTION, "http://127.0.0.1:1/x.png"), "--allow-remote-images"),
    (user_message(QUESTION, None), "no image"),
])
def test_bad_requests_are_400_error_objects(client, model, messages, message):
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model=model, messages=messages)
    assert message in info.value.body["message"]


def test_unknown_fields_are_ignored(client, model, image):
    r = client.chat.completions.create(model=model, messages=user_message(QUESTION, image), max_tokens=8,
                                       extra_body={"frobnicate": True, "top_k": 5}, user="someone")
    assert r.choices[0].message.content.strip()


def test_http_refusals(server, image):
    body = {"messages": user_message(QUESTION, image)}
    status, raw, _ = server.post("/v1/chat/completions", json.dumps(body).encode(), {"Content-Type": "text/plain"})
    assert status == 415 and json.loads(raw)["error"]["code"] == "unsupported_media_type"
    status, raw, _ = server.post("/v1/chat/completions", body, {"Host": "attacker.example"})
    assert status == 403 and "Host" in json.loads(raw)["error"]["message"]
    status, raw, _ = server.post("/v1/chat/completions", body, {"Origin": "http://attacker.example"})
    assert status == 403 and "cross-origin" in json.loads(raw)["error"]["message"]
    status, raw, _ = server.post("/v1/chat/completions", b"{nope")
    assert status == 400 and "not valid JSON" in json.loads(raw)["error"]["message"]
    status, raw, _ = server.post("/v1/chat/completions", b'{"messages": "\xff\xfe"}')
    assert status == 400 and "not valid JSON" in json.loads(raw)["error"]["message"]
    # a lone surrogate (a broken \u escape) is refused before any model work
    raw_body = json.dumps(body).replace(QUESTION, "bad \\ud800 question").encode()
    status, raw, _ = server.post("/v1/chat/completions", raw_body)
    assert status == 400 and "lone surrogate" in json.loads(raw)["error"]["message"]
    status, raw, _ = server.get("/v1/nothing-here")
    assert status == 404 and json.loads(raw)["error"]["type"] == "not_found_error"
    # the page is only served by `edge demo`
    assert server.get("/")[0] == 404


def test_oversized_body_is_413_before_it_is_read(server):
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    try:
        conn.putrequest("POST", "/v1/chat/completions")
        conn.putheader("Content-Type", "application/json")
        conn.putheader("Content-Length", str(1 << 40))
        conn.endheaders()
        resp = conn.getresponse()
        assert resp.status == 413 and json.loads(resp.read())["error"]["code"] == "body_too_large"
    finally:
        conn.close()


def test_sse_framing_with_curl(server, model, image, tmp_path):
    curl = shutil.which("curl")
    if curl is None:
        pytest.skip("needs curl")
    body = tmp_path / "body.json"
    body.write_text(json.dumps({"model": model, "stream": True, "max_tokens": 8,
                                "messages": user_message(QUESTION, image)}))
    proc = subprocess.run([curl, "-sN", "-D", "-", "-H", "Content-Type: application/json", "-H", "Expect:",
                           "--data-binary", f"@{body}", server.base_url + "/chat/completions"],
                          capture_output=True, timeout=120)
    head, _, stream = proc.stdout.decode().partition("\r\n\r\n")
    assert "200" in head.splitlines()[0] and "content-type: text/event-stream" in head.lower()
    assert "content-length" not in head.lower()
    events = [e for e in stream.split("\n\n") if e.strip()]
    assert events[-1] == "data: [DONE]" and stream.endswith("\n\n")
    for event in events[:-1]:
        lines = event.split("\n")
        data = [ln for ln in lines if ln.startswith("data: ")]
        assert len(data) == 1 and all(ln.startswith(("data: ", "event: ")) for ln in lines), event
        chunk = json.loads(data[0][6:])
        assert chunk["object"] == "chat.completion.chunk" and chunk["model"] == model
        if lines[0].startswith("event: "):
            assert lines[0] == "event: extract_think" and chunk["choices"][0]["delta"] == {}


def test_eight_concurrent_clients_are_all_answered(server, client, model, image):
    answers: list = [None] * 8
    queued: list = []

    def ask(i: int) -> None:
        c = openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0, timeout=300)
        kw = dict(model=model, messages=user_message(f"{MC_QUESTION} ({i})", image), max_tokens=8)
        if i % 2:  # half of them stream, and are told their place while they wait
            chunks = list(c.chat.completions.create(stream=True, **kw))
            queued.extend(extra(ch)["position"] for ch in chunks if (extra(ch) or {}).get("type") == "queued")
            final = [ch for ch in chunks if ch.choices and ch.choices[0].finish_reason]
            answers[i] = (chunks[0].id, extra(final[0]))
        else:
            r = c.chat.completions.create(**kw)
            assert r.choices[0].message.content.strip()
            answers[i] = (r.id, extra(r))

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(600)
    assert all(a is not None and a[1]["answer"] in "ABCD" for a in answers)
    assert len({a[0] for a in answers}) == 8
    # they took turns: some waited for others, and the streamed ones that waited were told so
    assert max(a[1]["queue_s"] for a in answers) > 0
    assert queued and all(1 <= p <= 7 for p in queued)


def test_metrics_in_prometheus_format(server):
    status, raw, headers = server.get("/metrics")
    text = raw.decode()
    assert status == 200 and headers["content-type"].startswith("text/plain")
    for name in ("edge_serve_completions_total{outcome=\"ok\"}", "edge_serve_queue_depth 0",
                 "edge_serve_stage_seconds_bucket{stage=\"thinking\",le=\"+Inf\"}",
                 "edge_serve_tokens_total{stage=\"thinking\"}",
                 "edge_serve_budget_events_total{kind=\"force_think_end\"}",
                 "edge_serve_cache_hits_total{cache=\"embedding\"}",
                 "edge_serve_http_requests_total{code=\"400\",route=\"/v1/chat/completions\"}"):
        assert name in text, name
    for line in text.splitlines():
        assert line.startswith("#") or len(line.rsplit(" ", 1)) == 2
    status, raw, _ = server.get("/health")
    health = json.loads(raw)
    assert status == 200 and health["status"] == "ok" and health["queue"]["capacity"] == 16
