"""The bytes of a request's image: from a `data:` URL, or fetched over http(s) when allowed.

A `data:` URL is decoded with strict base64 after its size is checked from its length,
so an oversized image is refused before it is decoded. Remote images are off unless the
server runs with `--allow-remote-images`; then only http and https are fetched (no
redirect to another scheme), with a time limit for the whole fetch and the same size
limit, checked from Content-Length and again while reading. Whether the bytes are an
allowed image is `runtime.image.load_image`'s job, as for every other input.
"""

from __future__ import annotations

import base64
import binascii
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass

from edge.serve.errors import APIError, bad_request

_DATA_URL = re.compile(r"^data:([^,;]*)((?:;[^,;]*)*),", re.IGNORECASE)
REMOTE_SCHEMES = ("http", "https")
_CHUNK = 64 << 10


@dataclass(frozen=True)
class ImageSource:
    """Where the image of a request is: the URL as the client sent it."""

    url: str

    @property
    def remote(self) -> bool:
        return urllib.parse.urlsplit(self.url).scheme.lower() in REMOTE_SCHEMES

    def describe(self) -> str:
        return "a data: URL" if not self.remote else self.url[:200]


def _human(n: int) -> str:
    return f"{n / (1 << 20):.1f} MB" if n >= 1 << 20 else f"{n / 1024:.0f} KB"


def check_url(url: str, *, allow_remote: bool, param: str) -> ImageSource:
    """Refuse, before any work, a URL the server will not read."""
    scheme = urllib.parse.urlsplit(url).scheme.lower() if ":" in url else ""
    if scheme == "data":
        if _DATA_URL.match(url) is None:
            raise bad_request("the image URL is not a valid data: URL (data:image/png;base64,...)", param)
        return ImageSource(url)
    if scheme in REMOTE_SCHEMES:
        if not allow_remote:
            raise bad_request("this server does not fetch remote images (start it with --allow-remote-images); "
                              "send the image inline as a data: URL", param)
        return ImageSource(url)
    raise bad_request("image_url must be a data: URL (or http(s) when the server allows remote images); "
                      "file paths and other schemes are refused", param)


def decode_data_url(url: str, max_bytes: int) -> bytes:
    m = _DATA_URL.match(url)
    if m is None:
        raise bad_request("the image URL is not a valid data: URL")
    media, params = m.group(1).strip().lower(), m.group(2).lower()
    if media and not media.startswith("image/") and media != "application/octet-stream":
        raise bad_request(f"the data: URL holds {media!r}, not an image")
    if ";base64" not in params:
        raise bad_request("the image data: URL must be base64-encoded (data:image/png;base64,...)")
    payload = url[m.end():]
    if len(payload) * 3 // 4 > max_bytes + 3:  # before decoding anything
        raise APIError(413, f"the image is about {_human(len(payload) * 3 // 4)}; the limit is {_human(max_bytes)}",
                       code="image_too_large")
    try:
        data = base64.b64decode("".join(payload.split()), validate=True)
    except (binascii.Error, ValueError):
        raise bad_request("the image data: URL is not valid base64") from None
    if not data:
        raise bad_request("the image is empty (0 bytes)")
    if len(data) > max_bytes:
        raise APIError(413, f"the image is {_human(len(data))}; the limit is {_human(max_bytes)}",
                       code="image_too_large")
    return data


class _SameSchemeRedirects(urllib.request.HTTPRedirectHandler):
    """Follow redirects to http(s) only (urllib would also follow one to ftp)."""

    max_redirections = 3

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # noqa: ANN001 (stdlib signature)
        if urllib.parse.urlsplit(newurl).scheme.lower() not in REMOTE_SCHEMES:
            raise urllib.error.URLError(f"redirect to a non-http(s) URL refused: {newurl[:100]}")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def fetch_remote(url: str, max_bytes: int, timeout_s: float) -> bytes:
    """GET an http(s) image, at most `max_bytes`, within `timeout_s` overall. Blocking."""
    opener = urllib.request.build_opener(_SameSchemeRedirects())
    started = time.monotonic()
    request = urllib.request.Request(url, headers={"User-Agent": "extract-think-edge", "Accept": "image/*"})
    try:
        with opener.open(request, timeout=timeout_s) as resp:
            length = resp.headers.get("Content-Length")
            if length is not None and length.isdigit() and int(length) > max_bytes:
                raise APIError(413, f"the remote image is {_human(int(length))}; the limit is {_human(max_bytes)}",
                               code="image_too_large")
            parts, total = [], 0
            while True:
                if time.monotonic() - started > timeout_s:
                    raise bad_request(f"fetching the remote image took longer than {timeout_s:g} s")
                chunk = resp.read(_CHUNK)
                if not chunk:
                    break
                total += len(chunk)
                if total > max_bytes:
                    raise APIError(413, f"the remote image is larger than the limit of {_human(max_bytes)}",
                                   code="image_too_large")
                parts.append(chunk)
    except urllib.error.HTTPError as exc:
        if 300 <= exc.code < 400:  # urllib refuses redirects to file: and the like itself
            raise bad_request("fetching the remote image failed: redirect to a non-http(s) URL refused") from None
        raise bad_request(f"fetching the remote image failed: HTTP {exc.code}") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise bad_request(f"fetching the remote image failed: {reason}") from None
    data = b"".join(parts)
    if not data:
        raise bad_request("the remote image is empty (0 bytes)")
    return data


def image_bytes(source: ImageSource, *, max_bytes: int, timeout_s: float) -> bytes:
    """The image's bytes (blocking for a remote one: call it from a worker thread)."""
    if source.remote:
        return fetch_remote(source.url, max_bytes, timeout_s)
    return decode_data_url(source.url, max_bytes)
