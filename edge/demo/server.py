"""The web demo's server: one page, an upload endpoint, and a streaming ask endpoint.

Standard library only (`http.server.ThreadingHTTPServer`): a demo on a Raspberry Pi
should not need a web framework. One pipeline instance serves every visitor; requests
take turns on a lock (a waiting visitor is told its place in the queue), so two
questions never run the models at once.

    GET  /                   the page (index.html, app.js, style.css beside this module)
    GET  /api/info           bundle, profile, backends, default budgets, limits, memory
    GET  /api/example-image  the bundle's example image, when it has one
    POST /api/image          raw image bytes -> {"id", "width", "height", "bytes"}
    POST /api/ask            JSON {image, question, options?, thinking, hint, budgets,
                             deadline_s} -> NDJSON events: queued, stage_started, token,
                             budget, stage_finished, done (or error)

Uploads are refused before reading when larger than the limit, and must decode as an
allowed image with `runtime.image.load_image` (format allow-list, pixel cap from the
header). Every refusal is a JSON `{"error": "..."}` with a 4xx status the page shows; the
server keeps serving.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import mimetypes
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from runtime.errors import EdgeError, ImageError, InputError
from runtime.manifest import Budgets

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent  # index.html, app.js, style.css (package data)
STATIC_FILES = {  # URL path -> (file, content type); nothing else is served
    "/": ("index.html", "text/html; charset=utf-8"),
    "/index.html": ("index.html", "text/html; charset=utf-8"),
    "/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/style.css": ("style.css", "text/css; charset=utf-8"),
}
MAX_JSON_BYTES = 64 << 10
MAX_DRAIN_BYTES = 64 << 20  # read (and drop) an oversized upload up to this, so the client sees the 413
KEPT_IMAGES = 8
TOKEN_FLUSH_S = 0.05  # batch token text for this long: fewer writes on slow boards
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' blob: data:; media-src 'self' blob:; "
    "style-src 'self'; script-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


class HTTPError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _upload_message(exc: Exception) -> str:
    """The runtime's image error, worded for a page: no "<bytes>:" source prefix."""
    return str(exc).replace("<bytes>: ", "")


def _human_bytes(n: int) -> str:
    return f"{n / (1 << 20):.1f} MB" if n >= 1 << 20 else f"{n / 1024:.0f} KB"


@dataclass(frozen=True)
class Example:
    """The bundle's example, offered on the page as a one-click start."""

    question: str
    image: bytes
    content_type: str

    @classmethod
    def from_bundle(cls, root: Path, manifest: Any) -> Example | None:
        from runtime.bundle import safe_relpath

        for ex in manifest.examples:
            rel = ex.get("image")
            if ex.get("question") and rel in manifest.files:
                path = root / safe_relpath(rel)
                ctype = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
                return cls(ex["question"], path.read_bytes(), ctype)
        return None


class DemoApp:
    """Holds the one pipeline, the uploaded images and the queue. Thread-safe."""

    def __init__(self, pipeline: Any, *, info: dict[str, Any], max_upload_bytes: int,
                 max_pixels: int, budgets: Budgets, thinking: bool = True,
                 deadline_s: float | None = None, example: Example | None = None) -> None:
        self.pipeline = pipeline  # an ExtractThink (may be set after the socket is bound)
        self.info = info
        self.example = example
        self.max_upload_bytes = max_upload_bytes
        self.max_pixels = max_pixels
        self.budgets = budgets
        # what the page's controls start with; a request may change each of them
        self.defaults = {"thinking": thinking, "hint": budgets.hint > 0,
                         "thinking_budget": budgets.thinking, "extraction_budget": budgets.extraction,
                         "deadline_s": deadline_s}
        self._images: OrderedDict[str, bytes] = OrderedDict()
        self._images_lock = threading.Lock()
        self._run_lock = threading.Lock()
        self._in_flight = 0
        self._count_lock = threading.Lock()

    # ---- uploads ------------------------------------------------------------------------

    def add_image(self, data: bytes) -> dict[str, Any]:
        """Check an upload decodes as an allowed image and keep it; raises ImageError."""
        from runtime.image import load_image

        img = load_image(data, max_pixels=self.max_pixels, max_bytes=self.max_upload_bytes)
        image_id = hashlib.sha256(data).hexdigest()[:32]
        with self._images_lock:
            self._images[image_id] = data
            self._images.move_to_end(image_id)
            while len(self._images) > KEPT_IMAGES:
                self._images.popitem(last=False)
        return {"id": image_id, "width": img.width, "height": img.height, "bytes": len(data)}

    def image(self, image_id: Any) -> bytes:
        if not isinstance(image_id, str) or not image_id:
            raise HTTPError(400, "no image: pick, drop or take a photo first")
        with self._images_lock:
            data = self._images.get(image_id)
        if data is None:
            raise HTTPError(404, "that image is no longer on the server: upload it again")
        return data

    # ---- asking -------------------------------------------------------------------------

    def parse_ask(self, body: Any) -> dict[str, Any]:
        """Validate the page's request into `ExtractThink.stream` arguments."""
        if not isinstance(body, dict):
            raise HTTPError(400, "the request must be a JSON object")
        known = {"image", "question", "options", "thinking", "hint", "thinking_budget",
                 "extraction_budget", "answer_budget", "deadline_s"}
        unknown = sorted(set(body) - known)
        if unknown:
            raise HTTPError(400, f"unknown field(s): {', '.join(unknown)}")
        question = body.get("question")
        if not isinstance(question, str) or not question.strip():
            raise HTTPError(400, "type a question first")
        options = body.get("options")
        if options is not None and (not isinstance(options, list)
                                    or not all(isinstance(o, str) for o in options)):
            raise HTTPError(400, "options must be a list of strings")
        args: dict[str, Any] = {"question": question, "options": options or None}
        for name in ("thinking", "hint"):
            value = body.get(name, self.defaults[name])
            if not isinstance(value, bool):
                raise HTTPError(400, f"{name} must be true or false")
            args[name] = value
        b = self.budgets
        defaults = {"thinking_budget": b.thinking, "extraction_budget": b.extraction,
                    "answer_budget": b.answer if args["thinking"] else b.non_thinking_answer}
        for name, default in defaults.items():
            value = body.get(name)
            if value is None:
                args[name] = default
                continue
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 1_000_000:
                raise HTTPError(400, f"{name.replace('_', ' ')} must be a whole number >= 0")
            args[name] = value
        args["hint_budget"] = b.hint
        deadline = body.get("deadline_s", self.defaults["deadline_s"])
        if deadline is not None:
            if isinstance(deadline, bool) or not isinstance(deadline, (int, float)) or not deadline > 0:
                raise HTTPError(400, "the deadline must be a positive number of seconds (or empty)")
            args["deadline_s"] = float(deadline)
        args["image_bytes"] = self.image(body.get("image"))
        return args

    def start(self, args: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """Check the request (raising InputError/ImageError at once), then return its events.

        The runtime checks every argument and decodes the image when `stream` is called,
        before any model work, so a bad request fails here even while another one runs.
        """
        from runtime.image import load_image

        args = dict(args)
        image = load_image(args.pop("image_bytes"), max_pixels=self.max_pixels,
                           max_bytes=self.max_upload_bytes)
        question, options = args.pop("question"), args.pop("options")
        stream = self.pipeline.stream(image, question, options, **args)
        return self._events(stream)

    def _events(self, stream: Iterator[Any]) -> Iterator[dict[str, Any]]:
        """Wait for the model (telling the visitor how many requests are ahead), then run."""
        with contextlib.closing(stream):  # closing it stops the models mid-request
            with self._count_lock:
                ahead = self._in_flight  # running or waiting before this one
                self._in_flight += 1
            try:
                if not self._run_lock.acquire(blocking=False):
                    yield {"type": "queued", "position": max(ahead, 1)}
                    self._run_lock.acquire()
                try:
                    yield {"type": "started"}
                    yield from self._convert(stream)
                finally:
                    self._run_lock.release()
            finally:
                with self._count_lock:
                    self._in_flight -= 1

    def _convert(self, stream: Iterator[Any]) -> Iterator[dict[str, Any]]:
        """Runtime events -> the page's JSON events, token text batched per TOKEN_FLUSH_S."""
        from runtime.result import Done, TokenEvent, event_to_dict

        pending: dict[str, list[str]] = {}
        last_flush = time.monotonic()
        for ev in stream:
            if isinstance(ev, TokenEvent):
                if ev.text:
                    pending.setdefault(ev.stage, []).append(ev.text)
                if time.monotonic() - last_flush < TOKEN_FLUSH_S:
                    continue
            yield from _flush_tokens(pending)
            last_flush = time.monotonic()
            if isinstance(ev, TokenEvent):
                continue
            if isinstance(ev, Done):
                yield {"type": "done", "result": ev.result.to_dict(), "memory": memory_snapshot()}
            else:
                yield event_to_dict(ev)
        yield from _flush_tokens(pending)


def _flush_tokens(pending: dict[str, list[str]]) -> Iterator[dict[str, Any]]:
    for stage, parts in list(pending.items()):
        if parts:
            yield {"type": "token", "stage": stage, "text": "".join(parts)}
    pending.clear()


def memory_snapshot() -> dict[str, float]:
    import psutil

    vm = psutil.virtual_memory()
    return {
        "rss_mb": round(psutil.Process().memory_info().rss / (1 << 20), 1),
        "system_available_mb": round(vm.available / (1 << 20), 1),
        "system_total_mb": round(vm.total / (1 << 20), 1),
    }


class DemoHandler(BaseHTTPRequestHandler):
    server_version = "edge-demo"
    app: DemoApp  # set on a subclass by make_server

    # -- plumbing --

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (stdlib signature)
        log.info("%s %s", self.address_string(), format % args)

    def _send_json(self, status: int, payload: Any) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for k, v in SECURITY_HEADERS.items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def _error(self, status: int, message: str) -> None:
        log.info("refused (%d): %s", status, message)
        self._send_json(status, {"error": message})

    def _content_length(self) -> int:
        raw = self.headers.get("Content-Length")
        if raw is None:
            raise HTTPError(411, "the request needs a Content-Length")
        try:
            n = int(raw)
        except ValueError:
            raise HTTPError(400, "bad Content-Length") from None
        if n < 0:
            raise HTTPError(400, "bad Content-Length")
        return n

    def _read_body(self, n: int) -> bytes:
        data = self.rfile.read(n)
        if len(data) != n:
            raise HTTPError(400, "the upload was cut short")
        return data

    def _drain(self, n: int) -> None:
        """Read and drop an oversized body so the client gets our answer, not a reset."""
        if n > MAX_DRAIN_BYTES:
            self.close_connection = True
            return
        while n > 0:
            chunk = self.rfile.read(min(n, 1 << 20))
            if not chunk:
                break
            n -= len(chunk)

    # -- routes --

    def do_GET(self) -> None:  # noqa: N802 (stdlib name)
        path = self.path.split("?", 1)[0]
        if path == "/api/info":
            example = {"question": self.app.example.question} if self.app.example else None
            self._send_json(200, {**self.app.info, "example": example, "memory": memory_snapshot(),
                                  "max_upload_bytes": self.app.max_upload_bytes,
                                  "max_pixels": self.app.max_pixels, "defaults": self.app.defaults})
            return
        if path == "/api/example-image":
            if self.app.example is None:
                self._error(404, "this bundle has no example image")
                return
            self.send_response(200)
            self.send_header("Content-Type", self.app.example.content_type)
            self.send_header("Content-Length", str(len(self.app.example.image)))
            for k, v in SECURITY_HEADERS.items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(self.app.example.image)
            return
        if path == "/favicon.ico":
            self.send_response(204)
            self.end_headers()
            return
        entry = STATIC_FILES.get(path)
        if entry is None:
            self._error(404, f"no such page: {path}")
            return
        name, ctype = entry
        body = (STATIC_DIR / name).read_bytes()
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in SECURITY_HEADERS.items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:  # noqa: N802 (stdlib name)
        path = self.path.split("?", 1)[0]
        try:
            if path == "/api/image":
                self._post_image()
            elif path == "/api/ask":
                self._post_ask()
            else:
                self._drain(self._content_length())
                raise HTTPError(404, f"no such endpoint: {path}")
        except HTTPError as exc:
            self._error(exc.status, exc.message)
        except (BrokenPipeError, ConnectionResetError):
            log.info("client went away")
        except EdgeError as exc:
            self._error(400, str(exc))
        except Exception as exc:  # a bug: say so on the page, keep serving
            log.exception("demo request failed")
            with contextlib.suppress(OSError):
                self._error(500, f"internal error: {type(exc).__name__}: {exc}")

    def _post_image(self) -> None:
        n = self._content_length()
        limit = self.app.max_upload_bytes
        if n > limit:
            self._drain(n)
            raise HTTPError(413, f"the image is {_human_bytes(n)}; the limit is {_human_bytes(limit)}")
        if n == 0:
            raise HTTPError(400, "the upload is empty (0 bytes)")
        data = self._read_body(n)
        try:
            meta = self.app.add_image(data)
        except ImageError as exc:
            # the runtime's message names the upload "<bytes>"; say "the upload" instead
            raise HTTPError(415, _upload_message(exc)) from None
        self._send_json(200, meta)

    def _post_ask(self) -> None:
        n = self._content_length()
        if n > MAX_JSON_BYTES:
            self._drain(n)
            raise HTTPError(413, "the request is too large")
        try:
            body = json.loads(self._read_body(n) or b"null")
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise HTTPError(400, "the request is not valid JSON") from None
        args = self.app.parse_ask(body)
        try:
            events = self.app.start(args)
        except (InputError, ImageError) as exc:
            raise HTTPError(400, _upload_message(exc)) from None
        self.send_response(200)
        self.send_header("Content-Type", "application/x-ndjson")
        for k, v in SECURITY_HEADERS.items():
            self.send_header(k, v)
        self.send_header("X-Accel-Buffering", "no")
        self.end_headers()
        self.close_connection = True  # HTTP/1.0 style: the stream ends when the connection does
        with contextlib.closing(events):
            try:
                for ev in events:
                    self._write_event(ev)
            except (BrokenPipeError, ConnectionResetError):
                log.info("client left during a request; stopping it")
            except EdgeError as exc:  # after streaming began: report in-band
                self._write_event({"type": "error", "error": str(exc)})

    def _write_event(self, ev: dict[str, Any]) -> None:
        self.wfile.write(json.dumps(ev).encode() + b"\n")
        self.wfile.flush()


class DemoServer(ThreadingHTTPServer):
    daemon_threads = True


def make_server(app: DemoApp, host: str = "127.0.0.1", port: int = 8080) -> DemoServer:
    """Bind the demo's socket; a port in use (or forbidden) is one clear EdgeError."""
    handler = type("BoundDemoHandler", (DemoHandler,), {"app": app})
    try:
        return DemoServer((host, port), handler)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise EdgeError(f"port {port} on {host} is already in use (another edge demo?); "
                            "choose another with --port") from None
        if exc.errno == errno.EACCES:
            raise EdgeError(f"not allowed to listen on port {port} (ports below 1024 need root); "
                            "choose another with --port") from None
        if exc.errno in (errno.EADDRNOTAVAIL, -2, -3, -5):  # gaierror codes for unknown hosts
            raise EdgeError(f"cannot listen on {host!r}: not an address of this machine") from None
        raise EdgeError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
