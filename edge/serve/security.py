"""What every request passes before a route sees it, and how bodies are read.

- Host: a browser page on another site can point its own domain at 127.0.0.1 (DNS
  rebinding) and then talk to a loopback server as if same-origin; the Host header still
  names the attacker's domain. So Host must be one of this server's names: loopback names,
  the bound address, (when bound to every interface) the machine's names and addresses,
  and those given with `--allowed-host` (`*` turns the check off, e.g. behind a proxy).
- Origin (sent by browsers on cross-site and POST requests): must be this server's own
  origin (an allowed host on the bound port) or a host given with `--allowed-host`.
- API key (`--api-key`): `Authorization: Bearer <key>` on /v1/* and /metrics, compared in
  constant time; the page and /health stay open.
- POST bodies must be `application/json` (a cross-site form or `text/plain` POST is
  refused before it is read) and are read with a size limit and a time limit.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import json
import socket
import urllib.parse
from collections.abc import Iterable
from typing import Any

import psutil
from starlette.datastructures import Headers
from starlette.requests import Request

from edge.serve.errors import APIError

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1", "localhost.localdomain")
WILDCARDS = ("0.0.0.0", "::", "")
OPEN_PATHS = ("/health",)  # never need the API key (the page's files are open too)


def _norm(host: str) -> str:
    return host.strip().strip("[]").rstrip(".").lower()


def machine_names() -> set[str]:
    """This machine's host names and interface addresses (for a server bound to 0.0.0.0)."""
    names = {socket.gethostname(), socket.getfqdn(), socket.gethostname() + ".local"}
    for addrs in psutil.net_if_addrs().values():
        for a in addrs:
            if a.family in (socket.AF_INET, socket.AF_INET6):
                names.add(a.address.split("%")[0])
    return {_norm(n) for n in names if n}


class Guard:
    def __init__(self, *, host: str, port: int, api_key: str | None, allowed_hosts: Iterable[str] = ()) -> None:
        self.port = port
        self.api_key = api_key
        extra = {_norm(h) for h in allowed_hosts}
        self.any_host = "*" in extra
        self.extra_hosts = extra - {"*"}
        hosts = {_norm(h) for h in LOOPBACK_NAMES} | self.extra_hosts
        if _norm(host) in WILDCARDS:
            hosts |= machine_names()
        else:
            hosts.add(_norm(host))
        self.hosts = hosts

    def host_ok(self, name: str | None) -> bool:
        if self.any_host:
            return True
        if not name:
            return False
        name = _norm(name)
        if name in self.hosts:
            return True
        try:
            return ipaddress.ip_address(name).is_loopback
        except ValueError:
            return False

    def _host_header(self, value: str) -> str:
        try:
            return urllib.parse.urlsplit("//" + value).hostname or ""
        except ValueError:
            return ""

    def origin_ok(self, origin: str) -> bool:
        if self.any_host:
            return True
        try:
            parts = urllib.parse.urlsplit(origin)
            port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
        except ValueError:
            return False
        if parts.scheme not in ("http", "https") or not parts.hostname:
            return False
        host = _norm(parts.hostname)
        return host in self.extra_hosts or (self.host_ok(host) and port == self.port)

    def check(self, method: str, path: str, headers: Headers) -> None:
        """Raise APIError for a request this server must not answer."""
        if not self.host_ok(self._host_header(headers.get("host", ""))):
            raise APIError(403, "this server does not answer for that Host name (add it with --allowed-host)",
                           code="host_not_allowed")
        origin = headers.get("origin")
        if origin is not None and not self.origin_ok(origin):
            raise APIError(403, f"cross-origin requests from {origin[:100]} are refused", code="origin_not_allowed")
        if self.api_key is not None and (path.startswith("/v1/") or path == "/metrics"):
            self._check_key(headers.get("authorization"))
        if method == "POST":
            media = headers.get("content-type", "").split(";", 1)[0].strip().lower()
            if media != "application/json":
                raise APIError(415, "send the request body as JSON with Content-Type: application/json",
                               code="unsupported_media_type")

    def _check_key(self, header: str | None) -> None:
        www = {"WWW-Authenticate": "Bearer"}
        if not header:
            raise APIError(401, "missing API key: send it as Authorization: Bearer <key>",
                           code="invalid_api_key", headers=www)
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), self.api_key.encode()):
            raise APIError(401, "incorrect API key", code="invalid_api_key", headers=www)


async def read_json(request: Request, *, limit: int, timeout_s: float) -> Any:
    """The body as JSON: 413 over `limit` bytes (from Content-Length, else while reading),
    408 when it does not arrive within `timeout_s`, 400 when it is not JSON."""
    length = request.headers.get("content-length")
    if length is not None:
        if not length.isdigit():
            raise APIError(400, "bad Content-Length")
        if int(length) > limit:
            raise APIError(413, f"the request body is {int(length):,} bytes; the limit is {limit:,}",
                           code="body_too_large")

    async def read() -> bytes:
        parts, total = [], 0
        async for chunk in request.stream():
            total += len(chunk)
            if total > limit:
                raise APIError(413, f"the request body is over the limit of {limit:,} bytes", code="body_too_large")
            parts.append(chunk)
        return b"".join(parts)

    try:
        raw = await asyncio.wait_for(read(), timeout_s)
    except TimeoutError:
        raise APIError(408, f"the request body did not arrive within {timeout_s:g} s") from None
    if not raw.strip():
        raise APIError(400, "the request body is empty: send a JSON object")
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise APIError(400, "the request body is not valid JSON (UTF-8)") from None
