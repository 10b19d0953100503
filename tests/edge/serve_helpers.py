"""Starting the real `edge serve` / `edge demo` in a subprocess on a free loopback port."""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from runtime.bundle import read_manifest
from runtime.defaults import default_bundle_path
from tests.edge.helpers import REPO

DEFAULT_EXAMPLE = default_bundle_path() / read_manifest(default_bundle_path()).examples[0]["image"]  # its first example


def data_url(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode()


def user_message(question: str, image: str | None) -> list[dict]:
    content: list[dict] = [{"type": "text", "text": question}]
    if image is not None:
        content.append({"type": "image_url", "image_url": {"url": image}})
    return [{"role": "user", "content": content}]


@dataclass
class Server:
    proc: subprocess.Popen
    port: int
    out: Path
    err: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        return self.url + "/v1"

    def stderr(self) -> str:
        return self.err.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 120) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.wait(timeout)

    def wait(self, timeout: float = 120) -> int:
        """The exit code, sending nothing: after a test's own signal, as systemd sends one.
        (A second SIGTERM that lands after the server has restored the default handlers, on
        its way out, would kill it with -15.)"""
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(30)
            raise AssertionError(f"the server did not exit within {timeout} s:\n{self.stderr()}") from None

    def get(self, path: str, headers: dict | None = None) -> tuple[int, bytes, dict]:
        return http(self.url + path, headers=headers)

    def post(self, path: str, body: dict | bytes, headers: dict | None = None) -> tuple[int, bytes, dict]:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        return http(self.url + path, data=data, headers={"Content-Type": "application/json", **(headers or {})})

    def metric(self, name: str, headers: dict | None = None) -> float:
        """The sum of a metric's samples whose name and labels start with `name`."""
        _, body, _ = self.get("/metrics", headers)
        total = 0.0
        for line in body.decode().splitlines():
            if line.startswith(name):
                total += float(line.rsplit(" ", 1)[1])
        return total


def http(url: str, data: bytes | None = None, headers: dict | None = None,
         timeout: float = 120) -> tuple[int, bytes, dict]:
    req = urllib.request.Request(url, data=data, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read(), dict(resp.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), dict(exc.headers)


def start_server(tmp: Path, *args: str, command: str = "serve", env: dict | None = None,
                 timeout: float = 180) -> Server:
    """`edge COMMAND --port 0 ARGS` in a subprocess; returns once it serves."""
    tmp.mkdir(parents=True, exist_ok=True)
    out, err = tmp / "stdout.txt", tmp / "stderr.txt"
    with out.open("w") as o, err.open("w") as e:
        proc = subprocess.Popen([sys.executable, "-m", "edge", command, "--port", "0", *args],
                                stdout=o, stderr=e, text=True, cwd=REPO, env={**os.environ, **(env or {})})
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        m = re.search(r"serving \S+ on http://127\.0\.0\.1:(\d+)/", out.read_text())
        if m:
            return Server(proc, int(m.group(1)), out, err)
        if proc.poll() is not None:
            raise AssertionError(f"edge {command} exited {proc.returncode}:\n{err.read_text()}")
        time.sleep(0.1)
    proc.kill()
    raise AssertionError(f"edge {command} did not start within {timeout} s:\n{err.read_text()}")


def sse_events(raw: bytes) -> list:
    """The data payloads of an SSE body: parsed JSON objects, and the final "[DONE]"."""
    out = []
    for block in raw.decode().split("\n\n"):
        data = "\n".join(ln[6:] for ln in block.split("\n") if ln.startswith("data: "))
        if data:
            out.append(data if data == "[DONE]" else json.loads(data))
    return out


def progress(events: list) -> list[dict]:
    """The `extract_think` progress events (stage starts and ends, hint/extraction tokens...)."""
    return [e["extract_think"] for e in events if isinstance(e, dict) and "type" in (e.get("extract_think") or {})]
