"""Reading OpenAI chat-completion bodies into requests, without a server or a model."""

from __future__ import annotations

import base64

import pytest

pytest.importorskip("fastapi")

from edge.serve.chat_request import parse_chat_request  # noqa: E402
from edge.serve.choices import parse_options  # noqa: E402
from edge.serve.config import ServeConfig, effort_budgets  # noqa: E402
from edge.serve.errors import APIError  # noqa: E402
from edge.serve.images import decode_data_url  # noqa: E402
from edge.serve.security import Guard  # noqa: E402
from runtime.manifest import Budgets  # noqa: E402
from runtime.sampling import SamplingConfig  # noqa: E402

PNG = "data:image/png;base64," + base64.b64encode(b"\x89PNG not really").decode()
CONFIG = ServeConfig(model_id="m", budgets=Budgets(hint=8, extraction=64, thinking=100, answer=16,
                                                   non_thinking_answer=32))


def body(question="What is it?", image=PNG, **kw):
    content = [{"type": "text", "text": question}]
    if image is not None:
        content.append({"type": "image_url", "image_url": {"url": image}})
    return {"model": "m", "messages": [{"role": "user", "content": content}], **kw}


def refused(b, config=CONFIG) -> APIError:
    with pytest.raises(APIError) as info:
        parse_chat_request(b, config)
    assert info.value.status == 400
    return info.value


def test_defaults_come_from_the_servers_budgets():
    r = parse_chat_request(body(), CONFIG)
    assert (r.question, r.options, r.image.url) == ("What is it?", None, PNG)
    assert (r.thinking, r.hint, r.thinking_budget, r.answer_budget, r.extraction_budget, r.hint_budget) == \
        (True, True, 100, 16, 64, 8)
    assert (r.sampling, r.seed, r.nowait, r.stream, r.include_usage) == ("paper", 0, True, False, False)


def test_budget_names_clients_send():
    assert parse_chat_request(body(max_tokens=7), CONFIG).answer_budget == 7
    assert parse_chat_request(body(max_tokens=7, max_completion_tokens=9), CONFIG).answer_budget == 9
    assert parse_chat_request(body(thinking_budget=5), CONFIG).thinking_budget == 5
    assert parse_chat_request(body(thinking_token_budget=6), CONFIG).thinking_budget == 6
    assert parse_chat_request(body(thinking={"type": "enabled", "budget_tokens": 3}), CONFIG).thinking_budget == 3
    e = refused(body(thinking_budget=5, thinking_token_budget=6))
    assert "disagree" in e.message


def test_reasoning_effort_maps_to_the_documented_budgets():
    assert effort_budgets(CONFIG.budgets) == {"low": 25, "medium": 50, "high": 100}
    for effort, budget in (("low", 25), ("medium", 50), ("high", 100), ("minimal", 25)):
        r = parse_chat_request(body(reasoning_effort=effort), CONFIG)
        assert (r.thinking, r.thinking_budget, r.reasoning_effort) == (True, budget, effort)
    # an explicit budget wins over the effort
    assert parse_chat_request(body(reasoning_effort="low", thinking_budget=70), CONFIG).thinking_budget == 70


@pytest.mark.parametrize("fields", [{"reasoning_effort": "none"}, {"thinking": False},
                                    {"thinking": {"type": "disabled"}},
                                    {"chat_template_kwargs": {"enable_thinking": False}}])
def test_thinking_off_in_every_spelling(fields):
    r = parse_chat_request(body(**fields), CONFIG)
    assert r.thinking is False and r.answer_budget == 32  # the non-thinking answer budget


def test_sampling_controls():
    assert parse_chat_request(body(temperature=0), CONFIG).sampling == "greedy"
    assert parse_chat_request(body(temperature=0.3, top_p=0.5), CONFIG).sampling == SamplingConfig(0.3, 0.5)
    assert parse_chat_request(body(top_p=0.9, seed=7), CONFIG).seed == 7


def test_options_as_a_list_or_written_into_the_question():
    r = parse_chat_request(body(options=["red", "blue"]), CONFIG)
    assert r.options == ("red", "blue")
    r = parse_chat_request(body("What colour?\nA. red\nB) blue\n(C) green"), CONFIG)
    assert (r.question, r.options) == ("What colour?", ("red", "blue", "green"))
    r = parse_chat_request(body("What colour?\nOptions: A: red, B: blue"), CONFIG)
    assert (r.question, r.options) == ("What colour?", ("red", "blue"))


@pytest.mark.parametrize(("question", "expected"), [
    ("How many?", ("How many?", None)),
    ("Pick\nA. x\nB. y\nthanks", ("Pick\nA. x\nB. y\nthanks", None)),  # not a trailing run
    ("Pick\nB. x\nC. y", ("Pick\nB. x\nC. y", None)),  # letters must start at A
    ("A. x\nB. y", ("A. x\nB. y", None)),  # no stem left
    ("I. intro\nA. x\nB. y", ("I. intro", ("x", "y"))),
])
def test_option_parsing_edges(question, expected):
    assert parse_options(question) == expected


def test_a_follow_up_without_an_image_uses_the_last_one():
    other = PNG.replace("PNG", "JPG")
    b = {"messages": [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": [{"type": "text", "text": "first"}, {"type": "image_url", "image_url": {"url": other}}]},
        {"role": "assistant", "content": "Answer: A"},
        {"role": "user", "content": [{"type": "text", "text": "old"}, {"type": "image_url", "image_url": {"url": PNG}}]},
        {"role": "assistant", "content": None},
        {"role": "user", "content": "And the colour?"},
    ]}
    r = parse_chat_request(b, CONFIG)
    assert r.question == "And the colour?" and r.image.url == PNG


def test_unknown_fields_are_ignored():
    r = parse_chat_request(body(frequency_penalty=1, user="me", tools=[], metadata={"a": 1}), CONFIG)
    assert r.question == "What is it?"


@pytest.mark.parametrize(("fields", "param", "message"), [
    ({"seed": "x"}, "seed", "must be an integer"),
    ({"seed": -1}, "seed", "between 0"),
    ({"temperature": "hot"}, "temperature", "must be a number"),
    ({"temperature": 3}, "temperature", "between 0 and 2"),
    ({"top_p": 0}, "top_p", "(0, 1]"),
    ({"stream": "yes"}, "stream", "true or false"),
    ({"max_tokens": -1}, "max_tokens", "between 0"),
    ({"max_tokens": 1.5}, "max_tokens", "must be an integer"),
    ({"n": 2}, "n", "n must be 1"),
    ({"options": "A B"}, "options", "list of strings"),
    ({"options": ["only one"]}, "options", "between 2 and"),
    ({"reasoning_effort": "extreme"}, "reasoning_effort", "none, minimal, low"),
    ({"deadline_s": 0}, "deadline_s", "positive"),
    ({"mode": "magic"}, "mode", "mode must be one of"),
    ({"thinking": "yes"}, "thinking", "true, false or an object"),
    ({"stream_options": []}, "stream_options", "must be an object"),
    ({"model": 3}, "model", "must be a string"),
])
def test_wrong_types_name_the_field(fields, param, message):
    e = refused(body(**fields))
    assert e.param == param and message in e.message, e.message
    assert e.body()["error"]["type"] == "invalid_request_error"


@pytest.mark.parametrize(("b", "message"), [
    ([], "must be a JSON object"),
    ({"messages": "hi"}, "non-empty list"),
    ({"messages": []}, "non-empty list"),
    ({"messages": [{"role": "robot", "content": "x"}]}, "role must be one of"),
    ({"messages": [{"role": "user", "content": 3}]}, "string or a list"),
    ({"messages": [{"role": "user", "content": [{"type": "input_audio"}]}]}, "not supported"),
    ({"messages": [{"role": "user", "content": [{"type": "text", "text": 5}]}]}, "must be a string"),
    (body(image="/etc/passwd"), "file paths and other schemes are refused"),
    (body(image="file:///etc/passwd"), "file paths and other schemes are refused"),
    (body(image="https://example.com/cat.png"), "--allow-remote-images"),
    (body(image=None), "no image"),
    (body(question=" "), "the question is empty"),
    (body(question="bad \ud800 text"), "lone surrogate"),
    (body(options=["ok", "bad \udc80"]), "lone surrogate"),
    ({**body(), "messages": body()["messages"] + [{"role": "assistant", "content": "x"}]}, "last message"),
])
def test_bad_requests(b, message):
    assert message in refused(b).message


def test_two_images_in_the_last_message_are_refused():
    b = body()
    b["messages"][0]["content"].append({"type": "image_url", "image_url": {"url": PNG}})
    assert "one image" in refused(b).message


def test_data_urls():
    assert decode_data_url(PNG, 100) == b"\x89PNG not really"
    for url, status, message in [
        ("data:image/png,plain", 400, "base64"),
        ("data:text/html;base64,PGI+", 400, "not an image"),
        ("data:image/png;base64,!!!", 400, "not valid base64"),
        ("data:image/png;base64,", 400, "empty"),
        ("data:image/png;base64," + "A" * 400, 413, "the limit is"),
    ]:
        with pytest.raises(APIError) as info:
            decode_data_url(url, 100)
        assert info.value.status == status and message in info.value.message, url


def test_host_and_origin_rules():
    g = Guard(host="127.0.0.1", port=8080, api_key=None)
    assert g.host_ok("127.0.0.1") and g.host_ok("localhost") and g.host_ok("[::1]") and g.host_ok("127.0.0.2")
    assert not g.host_ok("evil.example") and not g.host_ok("")
    assert g.origin_ok("http://localhost:8080") and g.origin_ok("http://127.0.0.1:8080")
    assert not g.origin_ok("http://evil.example:8080") and not g.origin_ok("http://localhost:3000")
    assert not g.origin_ok("null") and not g.origin_ok("file://")
    g = Guard(host="127.0.0.1", port=8080, api_key=None, allowed_hosts=["pi.local"])
    assert g.host_ok("pi.local") and g.origin_ok("https://pi.local")
    assert Guard(host="127.0.0.1", port=1, api_key=None, allowed_hosts=["*"]).host_ok("anything")


def test_lookup_is_a_request_control():
    assert parse_chat_request(body(), CONFIG).stream_kwargs()["lookup"] is None  # the server's default
    assert parse_chat_request(body(lookup=4), CONFIG).stream_kwargs()["lookup"] == 4
    for bad in (-1, 33, "4", 2.5, True):
        assert refused(body(lookup=bad)).param == "lookup"


def test_a_parsed_request_runs_with_lookup_on_the_shipped_bundle():
    """The request's keywords are the pipeline's: lookup drafts tokens, greedy text unchanged."""
    from runtime.bundle import open_bundle
    from runtime.defaults import default_bundle_path
    from runtime.pipeline import ExtractThink

    pytest.importorskip("llama_cpp")
    image = default_bundle_path() / open_bundle(default_bundle_path()).manifest.examples[0]["image"]
    et = ExtractThink.load(default_bundle_path(), backend="llamacpp", threads=1)
    try:
        results = {}
        for k in (0, 4):
            r = parse_chat_request(body("Which shape is above?", temperature=0, lookup=k), CONFIG)
            results[k] = et.answer(image, r.question, r.options, **r.stream_kwargs())
        assert results[4].thinking == results[0].thinking and results[4].answer == results[0].answer
        assert sum(s.drafted for s in results[4].stages.values()) > 0
    finally:
        et.close()
