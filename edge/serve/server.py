"""Binding, running and stopping the server in the right order.

1. `bind()` takes the port before the slow pipeline load, so a port in use is one clear
   error at once (port 0 picks a free one, read back with `getsockname`).
2. `run()` hands the socket to uvicorn with our h11 protocol (a connection that does not
   send a complete request head within `header_timeout_s` is closed: uvicorn has no such
   limit of its own), keep-alive 5 s, a connection limit, and `timeout_graceful_shutdown`
   = the drain time.
3. On SIGTERM or SIGINT uvicorn stops accepting, lets running requests finish for up to the
   drain time, then cancels what is left; `run()` returns. The caller then stops the
   engine (cancelling anything still queued, joining the worker thread) and only then
   closes the pipeline, so no model is freed under a running request.

uvicorn re-raises a signal it caught once it has shut down; `quiet_signals()` installs
handlers that take that re-raise without killing the process, so a stop by systemd ends
with exit code 0.
"""

from __future__ import annotations

import contextlib
import errno
import signal
import socket
from collections.abc import Iterator
from typing import Any

from runtime.errors import EdgeError

KEEP_ALIVE_S = 5
BACKLOG = 128


def bind(host: str, port: int) -> socket.socket:
    """A bound TCP socket on host:port, or one EdgeError line saying why not."""
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror:
        raise EdgeError(f"cannot listen on {host!r}: not an address of this machine") from None
    family, kind, proto, _, addr = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(addr)
        sock.listen(BACKLOG)  # connections made before uvicorn starts wait instead of being refused
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise EdgeError(f"port {port} on {host} is already in use (another edge serve?); "
                            "choose another with --port") from None
        if exc.errno == errno.EACCES:
            raise EdgeError(f"not allowed to listen on port {port} (ports below 1024 need root); "
                            "choose another with --port") from None
        if exc.errno == errno.EADDRNOTAVAIL:
            raise EdgeError(f"cannot listen on {host!r}: not an address of this machine") from None
        raise EdgeError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.set_inheritable(True)
    return sock


def bound_port(sock: socket.socket) -> int:
    return sock.getsockname()[1]


def protocol_class(header_timeout_s: float) -> type:
    """uvicorn's h11 protocol, closing a connection whose request head is late."""
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class HeadTimeoutH11Protocol(H11Protocol):
        """Close the connection when no request head has arrived `header_timeout_s` after it
        opened or after the previous response: uvicorn's keep-alive timer stops at the first
        byte, so a client sending its head a byte at a time would hold the connection."""

        def _arm(self) -> None:
            timer = getattr(self, "_head_timer", None)
            if timer is not None:
                timer.cancel()
            self._head_cycle = self.cycle
            self._head_timer = self.loop.call_later(header_timeout_s, self._head_late)

        def _head_late(self) -> None:
            waiting = self.cycle is self._head_cycle and (self.cycle is None or self.cycle.response_complete)
            if waiting and not self.transport.is_closing():
                self.transport.close()

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            self._arm()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing():
                self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            timer = getattr(self, "_head_timer", None)
            if timer is not None:
                timer.cancel()
            super().connection_lost(exc)

    return HeadTimeoutH11Protocol


@contextlib.contextmanager
def quiet_signals() -> Iterator[list[int]]:
    """SIGTERM/SIGINT only noted (uvicorn installs its own while it runs); yields the
    list of signals received."""
    received: list[int] = []

    def note(signum: int, frame: Any) -> None:
        received.append(signum)

    old = {sig: signal.signal(sig, note) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield received
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)


def run(app: Any, sock: socket.socket, *, drain_timeout_s: float, header_timeout_s: float,
        max_connections: int, access_log: bool) -> None:
    """Serve `app` on `sock` until SIGTERM/SIGINT, draining for up to `drain_timeout_s`."""
    import uvicorn  # the `serve` extra; checked by the command before anything loads

    config = uvicorn.Config(
        app, log_config=None, access_log=access_log, lifespan="off", ws="none",
        http=protocol_class(header_timeout_s), timeout_keep_alive=KEEP_ALIVE_S,
        timeout_graceful_shutdown=drain_timeout_s, limit_concurrency=max_connections,
        server_header=False, proxy_headers=False, backlog=BACKLOG,
    )
    uvicorn.Server(config).run(sockets=[sock])
