"""The FastAPI application: routes, the guard in front of them, errors as OpenAI objects.

`create_app(state)` builds it around a `ServeState` (config, pipeline, engine, metrics).
The guard (`security.Guard`) runs as plain ASGI middleware before routing, so a refused
request (Host, Origin, API key, content type) is answered before any body is read. Every
answer is counted in `edge_serve_http_requests_total{route,code}`. FastAPI's own docs
pages are off: the API is documented in docs/serve.md.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException

from edge.serve.errors import APIError
from edge.serve.routes import ServeState, router
from edge.serve.security import Guard

log = logging.getLogger(__name__)

KNOWN_ROUTES = ("/v1/chat/completions", "/v1/models", "/health", "/metrics", "/demo/example")


def error_response(exc: APIError) -> JSONResponse:
    return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)


def _route_label(path: str) -> str:
    if path.startswith("/v1/models"):
        return "/v1/models"
    return path if path in KNOWN_ROUTES else ("page" if path in ("/", "/index.html", "/app.js", "/style.css")
                                             else "other")


class GuardMiddleware:
    """Refuse what `Guard` refuses; count every answer by route and status."""

    def __init__(self, app: Any, state: ServeState, guard: Guard) -> None:
        self.app = app
        self.state = state
        self.guard = guard

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = {"code": 500}

        async def counting_send(message: Any) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            try:
                self.guard.check(scope["method"], scope["path"], Headers(scope=scope))
            except APIError as exc:
                log.info("refused %s %s: %d %s", scope["method"], scope["path"], exc.status, exc.message)
                await error_response(exc)(scope, receive, counting_send)
                return
            await self.app(scope, receive, counting_send)
        finally:
            self.state.metrics.inc("http_requests_total", route=_route_label(scope["path"]),
                                   code=str(status["code"]))


def create_app(state: ServeState, *, demo_example: Any = None) -> FastAPI:
    cfg = state.config
    app = FastAPI(title="extract-think-edge", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.serve = state
    app.state.demo_example = demo_example
    app.include_router(router)
    if cfg.demo:
        from edge.demo.page import router as page_router  # only `edge demo` serves the page

        app.include_router(page_router)

    @app.exception_handler(APIError)
    async def api_error(request: Request, exc: APIError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        message = f"no such endpoint: {request.method} {request.url.path}" if exc.status_code in (404, 405) \
            else str(exc.detail)
        return error_response(APIError(exc.status_code, message, headers=getattr(exc, "headers", None)))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(APIError(400, f"bad request: {exc.errors()[:1]}"))

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        log.exception("%s %s failed", request.method, request.url.path)
        return error_response(APIError(500, f"internal error: {type(exc).__name__}: {exc}"))

    guard = Guard(host=cfg.host, port=cfg.port, api_key=cfg.api_key, allowed_hosts=cfg.allowed_hosts)
    app.add_middleware(GuardMiddleware, state=state, guard=guard)
    return app
