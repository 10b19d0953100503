"""Errors the server answers with, as OpenAI-style error objects.

    {"error": {"message": "...", "type": "invalid_request_error", "param": "seed", "code": null}}

Clients (the official `openai` package among them) map the HTTP status to an exception
class (400 BadRequestError, 401 AuthenticationError, 429 RateLimitError...) and show
`message`, so every refusal says what was wrong and, where there is one, which field.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from runtime.errors import (
    BundleError,
    ContextOverflowError,
    EdgeError,
    ImageError,
    InputError,
    MemoryPlanError,
)

TYPES = {
    400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
    404: "not_found_error", 408: "timeout_error", 413: "invalid_request_error",
    415: "invalid_request_error", 429: "rate_limit_error", 500: "server_error",
    503: "server_error", 504: "timeout_error",
}


class APIError(Exception):
    """An HTTP error answer: status, message, the offending field, extra headers."""

    def __init__(self, status: int, message: str, *, param: str | None = None, code: str | None = None,
                 headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.headers = dict(headers or {})

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": TYPES.get(self.status, "invalid_request_error"),
                          "param": self.param, "code": self.code}}


def bad_request(message: str, param: str | None = None) -> APIError:
    return APIError(400, message, param=param)


def from_edge_error(exc: EdgeError) -> APIError:
    """A runtime error -> the answer a client gets: its own mistakes are 400s, the
    bundle's or the machine's are 5xx."""
    message = str(exc).replace("<bytes>: ", "")  # the runtime names an in-memory image "<bytes>"
    if isinstance(exc, (InputError, ImageError, ContextOverflowError)):
        return APIError(400, message, code="image_error" if isinstance(exc, ImageError) else None)
    if isinstance(exc, MemoryPlanError):
        return APIError(503, message)
    if isinstance(exc, BundleError):
        return APIError(500, message, code="bundle_error")
    return APIError(500, message)
