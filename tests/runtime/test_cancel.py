"""Cancelling a running request, and closing the pipeline under it, on both backends."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from PIL import Image

from runtime.backends import FORMAT_BACKEND, load_model
from runtime.backends.base import BackendOptions
from runtime.cancel import Cancellation
from runtime.errors import Cancelled, InputError
from runtime.generation import PREFILL_CHUNK, Session
from runtime.pipeline import ExtractThink
from runtime.result import TokenEvent
from tests.support.blocked_imports import REPO

BACKENDS = ("llamacpp", "onnx")
BACKEND_FORMAT = {backend: fmt for fmt, backend in FORMAT_BACKEND.items()}
OPTIONS = ["one", "two", "three"]
LONG = dict(hint=False, extraction_budget=8, thinking_budget=1500, answer_budget=8, sampling="greedy")

# Another thread closes the pipeline while this one decodes a long thinking stage. Run in a
# child process: freeing a llama.cpp context under a running decode is a SIGSEGV.
CLOSE_DURING_REQUEST = """
import json, sys, threading
from runtime.errors import Cancelled
from runtime.pipeline import ExtractThink
from runtime.result import TokenEvent

bundle, backend, image = sys.argv[1:4]
et = ExtractThink.load(bundle, backend=backend, threads=1)
thinking = threading.Event()
out = {"tokens_after_close": 0}
closed = threading.Event()

def consume():
    try:
        for ev in et.stream(image, "How many shapes?", ["one", "two", "three"], hint=False,
                            extraction_budget=8, thinking_budget=1500, answer_budget=8, sampling="greedy"):
            if isinstance(ev, TokenEvent) and ev.stage == "thinking":
                thinking.set()
                out["tokens_after_close"] += closed.is_set()
        out["end"] = "finished"
    except Cancelled as exc:
        out["end"] = "cancelled: " + str(exc)
    except BaseException as exc:
        out["end"] = f"{type(exc).__name__}: {exc}"

worker = threading.Thread(target=consume)
worker.start()
assert thinking.wait(120), "thinking never started"
et.close()
closed.set()
worker.join(120)
out["alive"] = worker.is_alive()
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def image():
    return (np.random.default_rng(3).random((40, 40, 3)) * 255).astype(np.uint8)


@pytest.fixture(scope="module", params=BACKENDS)
def et(request, rt_bundle):
    pipe = ExtractThink.load(rt_bundle, backend=request.param, threads=1)
    yield pipe
    pipe.close()


@pytest.mark.parametrize("backend", BACKENDS)
def test_close_from_another_thread_cancels_the_running_request(rt_bundle_dir, tmp_path, image, backend):
    path = tmp_path / "image.png"
    Image.fromarray(image).save(path)
    proc = subprocess.run([sys.executable, "-c", CLOSE_DURING_REQUEST, str(rt_bundle_dir), backend, str(path)],
                          capture_output=True, text=True, timeout=600, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]  # no SIGSEGV, no traceback
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["end"] == "cancelled: the pipeline was closed while the request ran", out
    assert not out["alive"]


def test_cancel_event_stops_one_request_and_the_pipeline_goes_on(et, image):
    cancel = threading.Event()
    seen = []
    with pytest.raises(Cancelled, match="the request was cancelled"):
        for ev in et.stream(image, "How many shapes?", OPTIONS, cancel=cancel, **LONG):
            if isinstance(ev, TokenEvent) and ev.stage == "thinking":
                seen.append(ev.token_id)
                if len(seen) == 3:
                    cancel.set()
    assert len(seen) == 3  # not one token after the cancel
    # The KV cache and the caches are consistent: the next request runs and answers.
    result = et.answer(image, "How many shapes?", OPTIONS, hint=False, extraction_budget=8, thinking_budget=8,
                       answer_budget=8)
    assert result.answer_found and result.stages["thinking"].tokens <= 8


def test_cancel_set_before_the_request_starts(et, image):
    cancel = threading.Event()
    cancel.set()
    events = et.stream(image, "How many shapes?", OPTIONS, cancel=cancel, **LONG)
    with pytest.raises(Cancelled):
        next(events)
    with pytest.raises(InputError, match="is_set"):
        et.stream(image, "How many shapes?", OPTIONS, cancel="yes")


def test_a_request_waiting_for_its_turn_can_be_cancelled(et, image):
    """Requests take turns; one that waits behind a long request stops when cancelled,
    without waiting for the other to finish."""
    first, second = threading.Event(), threading.Event()
    running = et.stream(image, "How many shapes?", OPTIONS, cancel=first, **LONG)
    next(running)  # the first request holds the pipeline
    outcome = {}

    def queued():
        try:
            et.answer(image, "Which colour?", OPTIONS, cancel=second, **LONG)
            outcome["end"] = "finished"
        except Cancelled as exc:
            outcome["end"] = str(exc)

    worker = threading.Thread(target=queued)
    worker.start()
    time.sleep(0.2)
    second.set()
    worker.join(30)
    assert not worker.is_alive() and outcome["end"] == "the request was cancelled"
    first.set()
    with pytest.raises(Cancelled):
        list(running)


class SetAfter:
    """A flag that turns set after it has been asked `n` times."""

    def __init__(self, n: int) -> None:
        self.n, self.asked = n, 0

    def is_set(self) -> bool:
        self.asked += 1
        return self.asked > self.n


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_long_prefill_stops_between_chunks(rt_bundle, backend):
    lm, _ = load_model(rt_bundle, "reasoner", backend, rt_bundle.artifact("reasoner", BACKEND_FORMAT[backend]),
                       BackendOptions(threads=1, context_length=2048))
    try:
        session = Session(lm)
        prompt = [(7 * i) % 500 + 10 for i in range(2 * PREFILL_CHUNK + 100)]
        with pytest.raises(Cancelled, match="stop"):
            session.prefill(prompt, cancel=Cancellation().watch(SetAfter(1), "stop"))
        assert lm.n_past == session.n_past == PREFILL_CHUNK  # one chunk in, then the check
        _, reused = session.prefill(prompt)  # the fed chunk is kept and reused
        assert reused == PREFILL_CHUNK and lm.n_past == len(prompt)
    finally:
        lm.close()


@pytest.mark.parametrize("backend", BACKENDS)
def test_close_while_the_consumer_holds_an_event(rt_bundle, image, backend):
    """A stream waiting for its consumer is not in native code: close frees at once, and the
    stream ends with the cancellation when it is pulled again."""
    pipe = ExtractThink.load(rt_bundle, backend=backend, threads=1)
    events = pipe.stream(image, "How many shapes?", OPTIONS, **LONG)
    assert next(events).stage == "vision"
    t0 = time.perf_counter()
    pipe.close()
    assert time.perf_counter() - t0 < 30
    assert pipe.loaded_roles() == ()
    with pytest.raises(Cancelled, match="closed"):
        next(events)
    with pytest.raises(InputError, match="closed"):
        pipe.stream(image, "How many shapes?", OPTIONS)
    pipe.close()  # twice is fine


def test_a_second_request_on_the_thread_running_one_is_refused(et, image):
    """A request started while this thread's own stream holds the pipeline would wait for
    itself forever: it is refused at once, and the first request goes on."""
    running = et.stream(image, "How many shapes?", OPTIONS, **LONG)
    next(running)
    outcome = {}

    def nested():
        try:
            et.answer(image, "Which colour?", OPTIONS, hint=False, extraction_budget=4, thinking_budget=4,
                      answer_budget=4, sampling="greedy")
            outcome["end"] = "finished"
        except InputError as exc:
            outcome["end"] = str(exc)

    # run on this thread, bounded: a deadlock would hang the test run
    done = threading.Event()
    watchdog = threading.Timer(20, lambda: done.is_set() or et.close())
    watchdog.start()
    try:
        nested()
    except Cancelled:
        outcome["end"] = "deadlocked (cancelled by the watchdog)"
    finally:
        done.set()
        watchdog.cancel()
    assert outcome["end"].startswith("a request is already running on this thread"), outcome
    running.close()
    assert et.answer(image, "Which colour?", OPTIONS, hint=False, extraction_budget=4, thinking_budget=4,
                     answer_budget=4, sampling="greedy").answer_text
