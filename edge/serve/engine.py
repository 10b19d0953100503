"""The queue in front of the one pipeline: admission, order, cancellation, shutdown.

A request is admitted (or refused with 429 when `max_queue` requests already wait behind
the running one), its image is decoded and checked by `ExtractThink.stream` on the HTTP
side, and its event iterator is put in a FIFO. One worker thread takes the requests in
order and pulls their events; each event is handed to the request's asyncio queue on the
server's event loop. A `Job` is also the runtime's cancel flag (`is_set()`): a client
that leaves, a request timeout or the server stopping sets it, and the runtime stops at
its next check (before every token) with `Cancelled`; a job cancelled while it waits is
skipped when its turn comes.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import math
import queue
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from edge.serve.errors import APIError
from edge.serve.metrics import Metrics
from runtime.errors import Cancelled, EdgeError
from runtime.result import BudgetAction, Done, Event, Result, StageFinished, TokenEvent

log = logging.getLogger(__name__)

OUTCOMES = ("ok", "cancelled", "timeout", "shutdown", "error")


@dataclass(frozen=True)
class Started:
    """The worker took the job: it waited `queue_s` seconds."""

    queue_s: float


@dataclass(frozen=True)
class Finished:
    """The job's last item. `outcome` is one of OUTCOMES; `error` is set for "error"."""

    outcome: str
    result: Result | None = None
    error: BaseException | None = None


class Job:
    """One admitted request: its events' channel to the event loop and its cancel flag."""

    def __init__(self, loop: asyncio.AbstractEventLoop, stopping: threading.Event, ahead: int,
                 events: bool = True) -> None:
        self.id = "chatcmpl-" + uuid.uuid4().hex[:24]
        self.created = int(time.time())
        self.admitted = time.monotonic()
        self.ahead = ahead  # requests running or waiting before this one, at admission
        self.stream: Iterator[Event] | None = None
        self.events = events  # hand over every runtime event (streaming), or only the result
        self._loop = loop
        # the worker appends, the event loop drains; the loop is woken once per batch, not
        # once per token (each wake-up costs a system call and a turn of the GIL)
        self._items: collections.deque[Any] = collections.deque()
        self._items_lock = threading.Lock()
        self._woken = False  # a wake-up is on its way to the loop
        self._wake = asyncio.Event()
        self._flag = threading.Event()
        self._stopping = stopping
        self.cancel_reason: str | None = None

    # -- the runtime's cancel flag --

    def is_set(self) -> bool:
        return self._flag.is_set() or self._stopping.is_set()

    def cancel(self, reason: str) -> None:
        """Stop the job (first reason wins): "cancelled" (client left) or "timeout"."""
        if self.cancel_reason is None:
            self.cancel_reason = reason
        self._flag.set()

    def outcome_of_cancel(self) -> str:
        return self.cancel_reason or "shutdown"

    # -- the channel --

    def push(self, item: Any) -> None:
        """From the worker thread: hand one item to the event loop."""
        with self._items_lock:
            self._items.append(item)
            if self._woken:
                return
            self._woken = True
        try:
            self._loop.call_soon_threadsafe(self._wake.set)
        except RuntimeError:  # the loop is closed: nobody is listening any more
            self.cancel("cancelled")

    def take(self) -> list[Any]:
        """What has arrived, without waiting."""
        with self._items_lock:
            items = list(self._items)
            self._items.clear()
        return items

    async def next_items(self, timeout: float) -> list[Any]:
        """Everything the worker has handed over, waiting up to `timeout` for the first
        item ([] on timeout). Tokens that arrive while the loop is busy come as one batch."""
        deadline = self._loop.time() + timeout
        while True:
            with self._items_lock:
                items = list(self._items)
                self._items.clear()
                self._woken = False
            self._wake.clear()
            if items:
                return items
            left = deadline - self._loop.time()
            if left <= 0:
                return []
            try:
                await asyncio.wait_for(self._wake.wait(), left)
            except TimeoutError:
                return []


class Engine:
    """One worker thread running admitted jobs in order on one pipeline."""

    def __init__(self, *, max_queue: int, metrics: Metrics) -> None:
        self.max_queue = max_queue
        self.metrics = metrics
        self._fifo: queue.Queue[Job | None] = queue.Queue()
        self._lock = threading.Lock()
        self._waiting = 0  # admitted, not started (being checked, or in the FIFO)
        self._running: Job | None = None
        self._stopping = threading.Event()
        self._mean_s: float | None = None  # moving average of run times, for Retry-After
        self._thread = threading.Thread(target=self._work, name="edge-serve-worker", daemon=True)

    def start(self) -> None:
        self._thread.start()

    @property
    def waiting(self) -> int:
        return self._waiting

    @property
    def running(self) -> bool:
        return self._running is not None

    def retry_after(self) -> int:
        ahead = self._waiting + (1 if self._running else 0)
        return max(1, min(3600, math.ceil((self._mean_s or 1.0) * ahead)))

    def admit(self, loop: asyncio.AbstractEventLoop, *, events: bool = True) -> Job:
        """A place in the queue, or APIError 429 (queue full) / 503 (shutting down)."""
        with self._lock:
            if self._stopping.is_set():
                raise APIError(503, "the server is shutting down")
            ahead = self._waiting + (1 if self._running else 0)
            if ahead > self.max_queue:
                raise APIError(429, f"the server is busy: {ahead} request(s) ahead and the queue holds "
                               f"{self.max_queue}; retry later", code="queue_full",
                               headers={"Retry-After": str(self.retry_after())})
            self._waiting += 1
            self._gauges()
        return Job(loop, self._stopping, ahead, events)

    def release(self, job: Job) -> None:
        """Give back the place of a job that will not be queued (its request was refused)."""
        with self._lock:
            self._waiting -= 1
            self._gauges()

    def enqueue(self, job: Job, stream: Iterator[Event]) -> None:
        job.stream = stream
        self._fifo.put(job)

    def stop(self, timeout: float = 120.0) -> bool:
        """Cancel what runs and waits, let the worker finish; True when it has."""
        self._stopping.set()
        self._fifo.put(None)
        if self._thread.is_alive():
            self._thread.join(timeout)
        return not self._thread.is_alive()

    # -- the worker thread --

    def _gauges(self) -> None:
        self.metrics.set("queue_depth", self._waiting)
        self.metrics.set("running", 1 if self._running else 0)

    def _work(self) -> None:
        while True:
            job = self._fifo.get()
            if job is None:
                return
            with self._lock:
                self._waiting -= 1
                self._running = job
                self._gauges()
            started = time.monotonic()
            try:
                end = self._run(job, started - job.admitted)
            finally:
                with self._lock:
                    self._running = None
                    self._gauges()
            took = time.monotonic() - started
            if end.outcome == "ok":
                self._mean_s = took if self._mean_s is None else 0.8 * self._mean_s + 0.2 * took
            self.metrics.inc("completions_total", outcome=end.outcome)
            self.metrics.observe("request_seconds", time.monotonic() - job.admitted)
            if end.outcome != "ok":
                log.info("request %s ended: %s%s", job.id, end.outcome, f" ({end.error})" if end.error else "")
            job.push(end)

    def _run(self, job: Job, queue_s: float) -> Finished:
        self.metrics.observe("queue_wait_seconds", queue_s)
        job.push(Started(queue_s))
        assert job.stream is not None
        try:
            if job.is_set():  # cancelled (or timed out) while it waited
                raise Cancelled("the request was cancelled before it started")
            result = None
            for ev in job.stream:
                self._count(ev)
                if isinstance(ev, Done):
                    result = ev.result
                if job.events:
                    job.push(ev)
            return Finished("ok", result=result)
        except Cancelled:
            return Finished(job.outcome_of_cancel())
        except EdgeError as exc:
            return Finished("error", error=exc)
        except Exception as exc:  # a bug: keep serving, say so in the answer and the log
            log.exception("request %s failed", job.id)
            return Finished("error", error=exc)
        finally:
            close = getattr(job.stream, "close", None)
            if close is not None:
                close()

    def _count(self, ev: Event) -> None:
        m = self.metrics
        if isinstance(ev, TokenEvent):
            if ev.token_id >= 0:
                m.inc("tokens_total", stage=ev.stage)
        elif isinstance(ev, StageFinished):
            m.observe("stage_seconds", ev.stats.seconds, stage=ev.stage)
        elif isinstance(ev, BudgetAction):
            m.inc("budget_events_total", kind=ev.event.kind)
        elif isinstance(ev, Done):
            for cache, hit in ev.result.cache_hits.items():
                if hit:
                    m.inc("cache_hits_total", cache=cache)
