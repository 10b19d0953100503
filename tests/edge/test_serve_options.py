"""`edge serve --api-key` and `--allow-remote-images`, with the shipped default bundle."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

openai = pytest.importorskip("openai")
pytest.importorskip("fastapi")

from tests.edge.serve_helpers import DEFAULT_EXAMPLE, data_url, start_server, user_message  # noqa: E402

KEY = "s3cret-key"
QUESTION = "How many blue crosses are in the image?"


class ImageHost(BaseHTTPRequestHandler):
    """A local web server with an image, a redirect to a file: URL, a huge claim and a 404."""

    def do_GET(self) -> None:  # noqa: N802 (stdlib name)
        if self.path == "/cat.png":
            body = DEFAULT_EXAMPLE.read_bytes()
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        elif self.path == "/huge.png":
            self.send_response(200)
            self.send_header("Content-Length", str(1 << 40))
            self.end_headers()
            self.wfile.write(b"\x89PNG")
        elif self.path in ("/to-file", "/to-ftp"):
            self.send_response(302)
            self.send_header("Location", "file:///etc/passwd" if self.path == "/to-file" else "ftp://127.0.0.1/x")
            self.send_header("Content-Length", "0")
            self.end_headers()
        else:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()

    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def image_host():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), ImageHost)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = start_server(tmp_path_factory.mktemp("serve_key"), "--threads", "1", "--profile", "laptop",
                       "--allow-remote-images", env={"EDGE_API_KEY": KEY})
    yield srv
    assert srv.stop() == 0, srv.stderr()


def test_missing_or_wrong_key_is_401(server):
    for key in (None, "wrong"):
        headers = {} if key is None else {"Authorization": f"Bearer {key}"}
        for path in ("/v1/models", "/metrics"):
            status, body, h = server.get(path, headers)
            err = json.loads(body)["error"]
            assert status == 401 and err["code"] == "invalid_api_key" and h["www-authenticate"] == "Bearer"
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=server.base_url, api_key="wrong", max_retries=0).models.list()
    status, body, _ = server.post("/v1/chat/completions", {"messages": user_message(QUESTION, None)})
    assert status == 401  # before the body is even looked at
    assert server.get("/health")[0] == 200  # open for probes


def test_the_right_key_is_served(server):
    client = openai.OpenAI(base_url=server.base_url, api_key=KEY, max_retries=0)
    r = client.chat.completions.create(model="extract-think-default", max_tokens=8,
                                       messages=user_message(QUESTION, data_url(DEFAULT_EXAMPLE)))
    assert r.choices[0].message.content.strip()
    assert server.metric('edge_serve_http_requests_total{code="401"', {"Authorization": f"Bearer {KEY}"}) >= 5


def test_remote_images_when_allowed(server, image_host):
    client = openai.OpenAI(base_url=server.base_url, api_key=KEY, max_retries=0)
    r = client.chat.completions.create(model="extract-think-default", max_tokens=8,
                                       messages=user_message(QUESTION, image_host + "/cat.png"))
    assert r.choices[0].message.content.strip()
    for path, message in (("/huge.png", "the limit is"), ("/missing.png", "HTTP 404"),
                          ("/to-file", "non-http(s)"), ("/to-ftp", "non-http(s)")):
        with pytest.raises(openai.APIStatusError) as info:
            client.chat.completions.create(model="extract-think-default",
                                           messages=user_message(QUESTION, image_host + path))
        assert info.value.status_code in (400, 413) and message in info.value.body["message"], path
