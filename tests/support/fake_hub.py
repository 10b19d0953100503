"""A loopback stand-in for the Hugging Face hub (127.0.0.1 only), answering the way the real
hub does: `org/gated` and any unknown repository are refused with the status and
`X-Error-Code` header the hub sends (huggingface_hub then raises its own GatedRepoError /
RepositoryNotFoundError), and `org/served` serves the given files at one commit (revision
`main` or the commit; other revisions are RevisionNotFound)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SERVED = "org/served"


def _handler(files: dict[str, bytes], commit: str) -> type:
    class Hub(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def _send(self, code: int, body: bytes, headers: dict[str, str], head: bool) -> None:
            self.send_response(code)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if not head:
                self.wfile.write(body)

        def _answer(self, head: bool) -> None:
            path = self.path.split("?")[0]
            if f"/{SERVED}/" not in path:
                gated = "/org/gated" in path
                code = {"X-Error-Code": "GatedRepo" if gated else "RepoNotFound",
                        "X-Error-Message": "Access to this model is restricted." if gated else "Repository not found"}
                return self._send(401, b"{}", code, head)
            if path.startswith(f"/api/models/{SERVED}/revision/"):
                if path.rsplit("/", 1)[1] not in ("main", commit):
                    return self._send(404, b"{}", {"X-Error-Code": "RevisionNotFound"}, head)
                body = json.dumps({"id": SERVED, "sha": commit, "siblings": [{"rfilename": f} for f in files]})
                return self._send(200, body.encode(), {"Content-Type": "application/json"}, head)
            if path.startswith(f"/api/models/{SERVED}/tree/"):
                items = [{"type": "file", "path": f, "size": len(b), "oid": hashlib.sha1(b).hexdigest()}
                         for f, b in files.items()]
                return self._send(200, json.dumps(items).encode(), {"Content-Type": "application/json"}, head)
            if f"/{SERVED}/resolve/" in path:
                name = path.split("/resolve/", 1)[1].split("/", 1)[1]
                if name not in files:
                    return self._send(404, b"", {"X-Error-Code": "EntryNotFound"}, head)
                data = files[name]
                return self._send(200, data, {"X-Repo-Commit": commit, "ETag": f'"{hashlib.sha1(data).hexdigest()}"'},
                                  head)
            return self._send(404, b"", {}, head)

        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            self._answer(head=False)

        def do_HEAD(self) -> None:  # noqa: N802
            self._answer(head=True)

    return Hub


@contextlib.contextmanager
def fake_hub(files: dict[str, bytes] | None = None, commit: str = "c" * 40) -> Iterator[str]:
    """The endpoint URL of the loopback hub while the context lasts."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(files or {}, commit))
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
