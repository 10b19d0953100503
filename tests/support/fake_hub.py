"""A loopback stand-in for the Hugging Face hub's refusals (127.0.0.1 only): a gated repo and a
missing repo answer with the status and `X-Error-Code` header the real hub sends, so
huggingface_hub raises its own GatedRepoError / RepositoryNotFoundError."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class _Refusing(BaseHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass

    def _answer(self, head: bool) -> None:
        if "/org/gated" in self.path:
            code, headers = 401, {"X-Error-Code": "GatedRepo", "X-Error-Message": "Access to model org/gated is restricted."}
        else:
            code, headers = 401, {"X-Error-Code": "RepoNotFound", "X-Error-Message": "Repository not found"}
        self.send_response(code)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", "2")
        self.end_headers()
        if not head:
            self.wfile.write(b"{}")

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        self._answer(head=False)

    def do_HEAD(self) -> None:  # noqa: N802
        self._answer(head=True)


@contextlib.contextmanager
def refusing_hub() -> Iterator[str]:
    """The endpoint URL of a hub that refuses every repository (gated or missing)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Refusing)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def closed_port_url() -> str:
    """An endpoint nothing listens on (connection refused: "no network")."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"
