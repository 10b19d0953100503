"""The HTTP endpoints: /v1/chat/completions, /v1/models, /health, /metrics.

A completion request goes: body read (size and time limits) -> parsed and checked
(`chat_request`) -> admitted to the queue (429 when full) -> image fetched or decoded and
the whole request checked by `ExtractThink.stream` in a worker thread (400 for anything
wrong, before any model work) -> queued for the one pipeline -> answered as one JSON
object, or streamed as SSE. A client that disconnects cancels its request (waiting or
running); a request running past `--request-timeout` is cancelled and answered 504 (or,
once streaming, with an in-band error).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any

import anyio
import psutil
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse

from edge.serve.chat_request import ChatRequest, parse_chat_request
from edge.serve.config import ServeConfig
from edge.serve.engine import Engine, Finished, Job, Started
from edge.serve.errors import APIError, from_edge_error
from edge.serve.images import image_bytes
from edge.serve.metrics import Metrics
from edge.serve.responses import ChunkWriter, completion, event_frames
from edge.serve.security import read_json
from runtime.errors import EdgeError
from runtime.image import load_image
from runtime.pipeline import ExtractThink
from runtime.result import Done

KEEPALIVE_S = 15.0  # an SSE comment this often while a streamed request waits
# a stream writes at most this often: tokens that come faster go out together (one write
# and one wake-up per batch rather than per token; a person does not see 20 ms)
STREAM_FLUSH_S = 0.02
PREPARE_THREADS = 2  # requests decoding images at once (each may hold a large image)

router = APIRouter()


def shutdown_error() -> APIError:
    return APIError(503, "the server is shutting down; the request was stopped", code="shutdown")


@dataclass
class ServeState:
    """What the routes share (app.state.serve)."""

    config: ServeConfig
    pipeline: ExtractThink
    engine: Engine
    metrics: Metrics
    limiter: anyio.CapacityLimiter = dataclasses.field(default_factory=lambda: anyio.CapacityLimiter(PREPARE_THREADS))
    stopping: bool = False


def state_of(request: Request) -> ServeState:
    return request.app.state.serve


# ---- small endpoints --------------------------------------------------------------------------


def memory_snapshot() -> dict[str, float]:
    vm = psutil.virtual_memory()
    return {"rss_mb": round(psutil.Process().memory_info().rss / (1 << 20), 1),
            "system_available_mb": round(vm.available / (1 << 20), 1),
            "system_total_mb": round(vm.total / (1 << 20), 1)}


@router.get("/health")
async def health(request: Request) -> dict[str, Any]:
    st = state_of(request)
    return {"status": "stopping" if st.stopping else "ok", "model": st.config.model_id,
            "queue": {"waiting": st.engine.waiting, "running": st.engine.running,
                      "capacity": st.config.max_queue},
            "memory": memory_snapshot()}


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    return PlainTextResponse(state_of(request).metrics.render(), media_type="text/plain; version=0.0.4")


def _created(iso: str) -> int:
    try:
        return int(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp())
    except ValueError:
        return 0


def model_card(st: ServeState) -> dict[str, Any]:
    cfg, et = st.config, st.pipeline
    manifest = et.bundle.manifest
    modules = {}
    for role, label in et.backends().items():
        backend, _, fmt_quant = label.partition(" ")
        fmt, _, quant = fmt_quant.partition("/")
        modules[role] = {"architecture": manifest.models[role].architecture, "backend": backend,
                         "format": fmt, "quant": quant}
    return {
        "id": cfg.model_id, "object": "model", "created": _created(manifest.provenance.created),
        "owned_by": "extract-think-edge",
        "extract_think": {
            "bundle": manifest.name, "modules": modules, "residency": et.residency,
            "budgets": dataclasses.asdict(cfg.budgets), "reasoning_effort": cfg.effort,
            "thinking": cfg.thinking, "deadline_s": cfg.deadline_s,
            "limits": {"max_image_bytes": cfg.max_image_bytes, "max_pixels": cfg.max_pixels,
                       "max_body_bytes": cfg.max_body_bytes, "max_queue": cfg.max_queue,
                       "request_timeout_s": cfg.request_timeout_s,
                       "remote_images": cfg.allow_remote_images},
            **cfg.info,
        },
    }


@router.get("/v1/models")
async def list_models(request: Request) -> dict[str, Any]:
    return {"object": "list", "data": [model_card(state_of(request))]}


@router.get("/v1/models/{model_id:path}")
async def get_model(model_id: str, request: Request) -> dict[str, Any]:
    st = state_of(request)
    if model_id != st.config.model_id:
        raise APIError(404, f"no model {model_id!r}: this server serves {st.config.model_id!r}",
                       param="model", code="model_not_found")
    return model_card(st)


# ---- chat completions ---------------------------------------------------------------------------


def _prepare(st: ServeState, chat: ChatRequest, job: Job) -> Any:
    """In a worker thread: fetch/decode the image and check everything (raises at once)."""
    cfg = st.config
    image = None
    if chat.image is not None:
        data = image_bytes(chat.image, max_bytes=cfg.max_image_bytes, timeout_s=cfg.remote_image_timeout_s)
        image = load_image(data, max_pixels=cfg.max_pixels, max_bytes=cfg.max_image_bytes)
    return st.pipeline.stream(image, chat.question, chat.options, cancel=job, **chat.stream_kwargs())


@router.post("/v1/chat/completions")
async def chat_completions(request: Request) -> Response:
    st = state_of(request)
    cfg = st.config
    chat = parse_chat_request(await read_json(request, limit=cfg.max_body_bytes, timeout_s=cfg.body_timeout_s), cfg)
    job = st.engine.admit(asyncio.get_running_loop(), events=chat.stream)  # a whole answer needs no tokens
    try:
        stream = await anyio.to_thread.run_sync(partial(_prepare, st, chat, job), limiter=st.limiter)
    except EdgeError as exc:
        st.engine.release(job)
        raise from_edge_error(exc) from None
    except BaseException:
        st.engine.release(job)
        raise
    st.engine.enqueue(job, stream)
    if chat.stream:
        return SSEResponse(partial(sse_frames, st, job, chat), job)
    return await _complete(st, job, request)


async def watch_disconnect(receive: Callable, job: Job) -> None:
    """Cancel `job` when the client goes away (the body has been read: the next message
    the server gets for this request is the disconnect)."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            job.cancel("cancelled")
            return


async def follow(job: Job, timeout_s: float, flush_s: float = 0.0) -> AsyncIterator[list[Any]]:
    """The job's items in batches until `Finished`; [] every KEEPALIVE_S while idle. At the
    deadline the job is cancelled as timed out (its Finished then says "timeout"). With
    `flush_s`, a batch waits that long after its first item for the items behind it."""
    deadline = job.admitted + timeout_s
    while True:
        left = deadline - time.monotonic()
        wait = KEEPALIVE_S if job.cancel_reason else max(0.0, min(KEEPALIVE_S, left))
        items = await job.next_items(wait)
        if not items:
            if time.monotonic() >= deadline and job.cancel_reason is None:
                job.cancel("timeout")
            yield []
            continue
        if flush_s and not isinstance(items[-1], Finished):
            await asyncio.sleep(flush_s)
            items += job.take()
        yield items
        if isinstance(items[-1], Finished):
            return


def _failure(end: Finished, cfg: ServeConfig) -> APIError:
    if end.outcome == "timeout":
        return APIError(504, f"the request did not finish within {cfg.request_timeout_s:g} s "
                        "(--request-timeout); it was stopped", code="timeout")
    if end.outcome == "shutdown":
        return shutdown_error()
    if end.outcome == "cancelled":
        return APIError(503, "the request was cancelled", code="cancelled")
    if isinstance(end.error, EdgeError):
        return from_edge_error(end.error)
    return APIError(500, f"internal error: {type(end.error).__name__}: {end.error}")


async def _complete(st: ServeState, job: Job, request: Request) -> Response:
    watcher = asyncio.create_task(watch_disconnect(request.receive, job))
    try:
        queue_s, end = 0.0, None
        async for items in follow(job, st.config.request_timeout_s):
            for item in items:
                if isinstance(item, Started):
                    queue_s = item.queue_s
                elif isinstance(item, Finished):
                    end = item
    except asyncio.CancelledError:  # the server stops and the drain time is over
        job.cancel("shutdown")
        raise shutdown_error() from None
    finally:
        watcher.cancel()
    assert end is not None
    if end.outcome != "ok" or end.result is None:
        raise _failure(end, st.config)
    return JSONResponse(completion(job.id, job.created, st.config.model_id, end.result, queue_s))


async def sse_frames(st: ServeState, job: Job, chat: ChatRequest) -> AsyncIterator[bytes]:
    writer = ChunkWriter(job.id, job.created, st.config.model_id)
    yield writer.role()
    if job.ahead:
        yield writer.extra({"type": "queued", "position": job.ahead})
    queue_s, end, result = 0.0, None, None
    async for items in follow(job, st.config.request_timeout_s, STREAM_FLUSH_S):
        if not items:
            yield b": keep-alive\n\n"
            continue
        frames: list[bytes] = []
        events: list[Any] = []
        for item in items:
            if isinstance(item, (Started, Finished)):
                frames += event_frames(writer, events)
                events = []
                if isinstance(item, Started):
                    queue_s = item.queue_s
                    frames.append(writer.extra({"type": "started", "queue_s": round(queue_s, 6)}))
                else:
                    end = item
            else:
                if isinstance(item, Done):
                    result = item.result
                events.append(item)
        frames += event_frames(writer, events)
        if frames:
            yield b"".join(frames)
    assert end is not None
    if end.outcome == "ok" and result is not None:
        yield writer.finish(result, queue_s)
        if chat.include_usage:
            yield writer.usage(result)
    else:  # after the 200 went out, errors travel in-band, as OpenAI's streams carry them
        yield writer.error(_failure(end, st.config).body())
    yield writer.done()


class SSEResponse(StreamingResponse):
    """Server-sent events that cancel the job when the client leaves.

    Written here rather than with Starlette's StreamingResponse, whose disconnect handling
    depends on the ASGI version the server speaks; this one watches for the disconnect
    message and for a failed send, and cancels the job in both cases."""

    def __init__(self, frames: Callable[[], AsyncIterator[bytes]], job: Job) -> None:
        self.status_code = 200
        self.media_type = "text/event-stream; charset=utf-8"
        self.background = None
        self.init_headers({"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})  # no Content-Length
        self.frames = frames
        self.job = job

    async def __call__(self, scope: Any, receive: Callable, send: Callable) -> None:
        watcher = asyncio.create_task(watch_disconnect(receive, self.job))
        frames = self.frames()
        started = finished = False
        try:
            await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
            started = True
            async for frame in frames:
                await send({"type": "http.response.body", "body": frame, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            finished = True
        except OSError:  # the client went away while we wrote (uvicorn's ClientDisconnected)
            pass
        except asyncio.CancelledError:  # the server stops and the drain time is over
            self.job.cancel("shutdown")
            if started:  # end the stream properly: the client learns why
                with contextlib.suppress(OSError):
                    end = ChunkWriter.error(shutdown_error().body()) + ChunkWriter.done()
                    await send({"type": "http.response.body", "body": end, "more_body": True})
                    await send({"type": "http.response.body", "body": b"", "more_body": False})
                    finished = True
        finally:
            watcher.cancel()
            if not finished:
                self.job.cancel("cancelled")
            await frames.aclose()
