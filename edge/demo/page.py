"""The demo page's routes on the `edge serve` app: the page, its two files, the example.

    GET /              index.html (app.js and style.css beside it; nothing else is served)
    GET /demo/example  the bundle's first example: {"question", "options", "image": data: URL}

The page talks to the server's public API only (/v1/models, /health and streamed
/v1/chat/completions), so the demo and any other client go through the same checks.
"""

from __future__ import annotations

import base64
import mimetypes
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from edge.serve.errors import APIError
from runtime.bundle import Bundle, safe_relpath
from runtime.manifest import example_options

STATIC_DIR = Path(__file__).resolve().parent
STATIC_FILES = {  # URL path -> (file, content type)
    "/": ("index.html", "text/html; charset=utf-8"),
    "/index.html": ("index.html", "text/html; charset=utf-8"),
    "/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/style.css": ("style.css", "text/css; charset=utf-8"),
}
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' blob: data:; media-src 'self' blob:; "
    "style-src 'self'; script-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; "
    "frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


@dataclass(frozen=True)
class Example:
    """The bundle's example, offered on the page as a one-click start."""

    question: str
    options: tuple[str, ...]
    image: bytes
    content_type: str

    @classmethod
    def from_bundle(cls, bundle: Bundle) -> Example | None:
        manifest = bundle.manifest
        for ex in manifest.examples:
            rel = ex.get("image")
            if ex.get("question") and rel in manifest.files:
                path = bundle.root / safe_relpath(rel)
                ctype = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
                return cls(ex["question"], example_options(ex), path.read_bytes(), ctype)
        return None

    def to_dict(self) -> dict[str, Any]:
        url = f"data:{self.content_type};base64," + base64.b64encode(self.image).decode()
        return {"question": self.question, "options": list(self.options), "image": url}


router = APIRouter()


def _static(name: str, ctype: str) -> Response:
    return Response((STATIC_DIR / name).read_bytes(), media_type=ctype, headers=SECURITY_HEADERS)


for _path, (_name, _ctype) in STATIC_FILES.items():
    router.add_api_route(_path, lambda n=_name, c=_ctype: _static(n, c), methods=["GET"], include_in_schema=False)


@router.get("/favicon.ico", include_in_schema=False)
async def favicon() -> Response:
    return Response(status_code=204)


@router.get("/demo/example", include_in_schema=False)
async def example(request: Request) -> Response:
    ex: Example | None = request.app.state.demo_example
    if ex is None:
        raise APIError(404, "this bundle has no example")
    return JSONResponse(ex.to_dict(), headers=SECURITY_HEADERS)
