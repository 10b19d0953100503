"""Teacher prompts, the OpenAI-compatible client's failure handling, the transformers teacher."""

from __future__ import annotations

import base64
import io
import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from PIL import Image

from training.data.extraction import read_rows, run_extraction
from training.data.records import QAPair, SourceRow, VisualExample
from training.data.teacher_prompts import description_prompt, parse_statements, statements_prompt
from training.data.teachers import (
    Failure,
    OpenAITeacher,
    Teacher,
    TeacherError,
    TeacherRequest,
    TransformersTeacher,
    chat_endpoint,
    strip_thinking,
)


def test_statement_prompt_lists_every_pair_in_order():
    qa = [QAPair("What colour is the car?", "Red."), QAPair("Which is it?\nOptions:\nA. 1\nB. 2", "B")]
    text = statements_prompt(qa)
    assert text.index("Question 1: What colour is the car?\nAnswer 1: Red.") < text.index("Question 2:")
    assert "option letter" in text and "one per line" in text
    assert "- The car is red." in description_prompt(["The car is red."])
    assert "facts" not in description_prompt([])


def test_parse_statements_and_strip_thinking():
    assert parse_statements("1. The car is red.\n\n- It is parked.\n* Two people.\nStatement 4: Sunny.") == [
        "The car is red.", "It is parked.", "Two people.", "Sunny."]
    assert strip_thinking("<think>\nhmm\n</think>\n\nThe car is red.") == "The car is red."
    assert strip_thinking("hmm, fine</think>Done.") == "Done."


def test_chat_endpoint():
    assert chat_endpoint("http://h:8000") == "http://h:8000/v1/chat/completions"
    assert chat_endpoint("http://h:8000/v1/") == "http://h:8000/v1/chat/completions"
    assert chat_endpoint("https://h/x/v1/chat/completions") == "https://h/x/v1/chat/completions"
    with pytest.raises(ValueError):
        chat_endpoint("h:8000")


class FlakyServer:
    """A loopback HTTP server that fails on purpose, to test retries and refusals.

    (The teacher's normal path is tested against llama.cpp's real server in
    test_teacher_server.py; this one only provokes the failures a real server gives
    rarely: 503s, a 400 for one request, garbage replies.)
    """

    def __init__(self, plan):
        self.plan = list(plan)  # per request: an int status, "garbage", or "ok"
        self.bodies: list[dict] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.bodies.append(body)
                step = outer.plan.pop(0) if outer.plan else "ok"
                if step == "garbage":
                    payload, status = b"<html>oops", 200
                elif step == "ok":
                    content = body["messages"][0]["content"]
                    text = content if isinstance(content, str) else content[-1]["text"]
                    payload = json.dumps({"choices": [{"message": {"content": f"echo {len(text)}"}}],
                                          "usage": {"prompt_tokens": 5, "completion_tokens": 2}}).encode()
                    status = 200
                else:
                    payload, status = json.dumps({"error": {"message": f"status {step}"}}).encode(), step
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def test_openai_teacher_retries_then_succeeds_and_sends_the_image():
    img = Image.new("RGB", (512, 512), (10, 200, 30))
    with FlakyServer([503, "garbage", "ok"]) as srv:
        teacher = OpenAITeacher(srv.url, "m", retries=3, backoff=0.01, concurrency=1, api_key="k")
        (text,) = teacher.complete([TeacherRequest("describe", img, 77)])
    assert text == "echo 8"
    assert len(srv.bodies) == 3 and teacher.usage == {"requests": 1, "prompt_tokens": 5, "completion_tokens": 2}
    body = srv.bodies[-1]
    assert body["model"] == "m" and body["max_tokens"] == 77 and body["temperature"] == 0.0
    image_part, text_part = body["messages"][0]["content"]
    assert text_part == {"type": "text", "text": "describe"}
    url = image_part["image_url"]["url"]
    assert url.startswith("data:image/png;base64,")
    with Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))) as sent:
        assert sent.size == (512, 512) and sent.getpixel((3, 3)) == (10, 200, 30)


def test_a_refused_row_becomes_an_error_row_and_the_run_goes_on(tmp_path):
    Image.new("RGB", (64, 64)).save(tmp_path / "a.png")
    rows = [SourceRow(i, str(i), VisualExample(i, str(i), tmp_path / "a.png", (QAPair("Q?", "A."),)))
            for i in range(3)]
    # row 1's statements request is refused (400); the rest go through
    with FlakyServer(["ok", 400, "ok", "ok", "ok"]) as srv:
        teacher = OpenAITeacher(srv.url, "m", retries=0, concurrency=1)
        assert isinstance(teacher, Teacher)
        run_extraction(rows, teacher, tmp_path / "out.jsonl")
    out = read_rows(tmp_path / "out.jsonl")
    assert [r["status"] for r in out] == ["ok", "error", "ok"]
    assert "HTTP 400" in out[1]["reason"] and "status 400" in out[1]["reason"]
    assert out[0]["statements"] == [f"echo {len(statements_prompt(rows[0].example.qa))}"]


def test_an_unreachable_server_stops_the_run():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    teacher = OpenAITeacher(f"http://127.0.0.1:{port}", "m", retries=1, backoff=0.01, timeout=2)
    with pytest.raises(TeacherError, match="failed 2 times"):
        teacher.complete([TeacherRequest("x", None, 4)])


def test_failures_are_values_not_exceptions():
    assert Failure("x") == Failure("x")


# ---------------------------------------------------------------------------------------
# transformers teacher on a tiny local VLM (the project's LLaVA-style SigLIP + Qwen3 model)

TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{% if m['content'] is string %}{{ m['content'] }}"
    "{% else %}{% for c in m['content'] %}{% if c['type'] == 'image' %}<|image_pad|>\n"
    "{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


@pytest.fixture(scope="module")
def tiny_vlm_dir(tiny_tokenizer_dir, tmp_path_factory):
    """A tiny perception checkpoint plus a processor, loadable with AutoProcessor.

    Untied embeddings: a tied random model mostly repeats its last input token, which
    would make the batching check below trivially true.
    """
    import json as _json
    from dataclasses import replace

    from transformers import AutoTokenizer, LlavaProcessor
    from transformers.models.siglip.image_processing_pil_siglip import SiglipImageProcessorPil

    from training.models.sizes import qwen3_tiny
    from training.models.tiny import tiny_perception

    out = tmp_path_factory.mktemp("tiny_vlm")
    tiny_perception(out, tiny_tokenizer_dir, text=replace(qwen3_tiny(), tie_word_embeddings=False), seed=5)
    vision = _json.loads((out / "config.json").read_text())["vision_config"]
    size = vision["image_size"]
    processor = LlavaProcessor(
        image_processor=SiglipImageProcessorPil(size={"height": size, "width": size},
                                                image_mean=[0.5] * 3, image_std=[0.5] * 3),
        tokenizer=AutoTokenizer.from_pretrained(out), patch_size=vision["patch_size"],
        vision_feature_select_strategy="full", image_token="<|image_pad|>", chat_template=TEMPLATE,
        num_additional_image_tokens=0,
    )
    processor.save_pretrained(out)
    return out


def test_transformers_teacher_batches_like_single_requests(tiny_vlm_dir):
    teacher = TransformersTeacher(tiny_vlm_dir, batch_size=3, statement_tokens=6, description_tokens=6)
    img_a = Image.new("RGB", (512, 512), (250, 10, 10))
    img_b = Image.new("RGB", (512, 512), (10, 10, 250))
    reqs = [TeacherRequest("describe the picture", img_a, 6), TeacherRequest("what", img_b, 6),
            TeacherRequest("describe it in detail please", img_a, 6)]
    batched = teacher.complete(reqs)
    teacher.batch_size = 1
    single = teacher.complete(reqs)
    assert batched == single and all(isinstance(t, str) for t in batched)
    assert len(set(batched)) > 1  # the image and the prompt reach the model
    texts = [teacher.complete([TeacherRequest(p, None, 6)])[0] for p in ("a", "bb")]
    assert all(isinstance(t, str) for t in texts)


def test_pipeline_with_the_transformers_teacher(tiny_vlm_dir, tmp_path):
    Image.new("RGB", (40, 30), (0, 90, 200)).save(tmp_path / "a.png")
    rows = [SourceRow(0, "0", VisualExample(0, "0", tmp_path / "a.png", (QAPair("Q?", "A."),))),
            SourceRow(1, "1", VisualExample(1, "1", None, (QAPair("Q?", "A."),)))]
    teacher = TransformersTeacher(tiny_vlm_dir, statement_tokens=4, description_tokens=4)
    run_extraction(rows, teacher, tmp_path / "out.jsonl")
    out = read_rows(tmp_path / "out.jsonl")
    assert [r["index"] for r in out] == [0, 1] and out[1]["status"] == "skip"
    # a random-weight model writes noise: the row is either a result or a recorded failure
    assert out[0]["status"] in ("ok", "error")
    if out[0]["status"] == "ok":
        assert out[0]["teacher"].startswith("transformers:")
