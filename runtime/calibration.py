"""First speeds for deadline mode when nothing was measured or remembered yet.

A loaded model is probed: one prefill of `PROBE_PROMPT` tokens, then single-token
decode steps (the median step, so one preempted step does not count) until
`PROBE_DECODE` steps or `PROBE_SECONDS`. A model that is not loaded (sequential
residency) is estimated from a probed one by the weights' sizes: decoding streams the
weights once per token, and prefill compute grows with the parameters, i.e. with the
bytes at one quantization. The image encoder is estimated from the manifest's shapes:
its parameters x tokens per image, at the perception model's measured prefill rate.
The first real stages replace every one of these numbers.
"""

from __future__ import annotations

import logging
import statistics
import time
from collections.abc import Iterable

import numpy as np

from runtime.deadline import Throughput
from runtime.manifest import TextShape, VisionShape
from runtime.model_slot import ModelSlot, ModelSlots
from runtime.speeds import SpeedBook

log = logging.getLogger(__name__)

PROBE_PROMPT = 32
PROBE_DECODE = 16
PROBE_SECONDS = 0.25


def probe(slot: ModelSlot) -> Throughput:
    """Prefill and decode speed of a loaded model (its KV cache is cleared afterwards)."""
    lm, session = slot.lm, slot.session
    n = max(1, min(PROBE_PROMPT, lm.n_ctx - PROBE_DECODE - 1))
    ids = [int(i) for i in np.linspace(1, slot.control.vocab_size - 1, n, dtype=np.int64)]
    session.reset()
    try:
        t0 = time.perf_counter()
        logits = lm.feed_tokens(ids)
        prefill_s = time.perf_counter() - t0
        steps: list[float] = []
        token = int(np.argmax(logits)) % slot.control.vocab_size
        while len(steps) < PROBE_DECODE and (len(steps) < 3 or sum(steps) < PROBE_SECONDS):
            t = time.perf_counter()
            token = int(np.argmax(lm.feed_tokens([token]))) % slot.control.vocab_size
            steps.append(time.perf_counter() - t)
    finally:
        session.reset()
    return Throughput(n / max(prefill_s, 1e-9), 1.0 / max(statistics.median(steps), 1e-9))


def text_params(t: TextShape) -> int:
    """Weights a token passes through in the decoder (embedding lookup and lm_head left out)."""
    attn = t.hidden_size * t.head_dim * (2 * t.num_heads + 2 * t.num_kv_heads)
    return t.num_layers * (attn + 3 * t.hidden_size * t.intermediate_size)


def vision_params(v: VisionShape, text_hidden: int) -> int:
    layer = 4 * v.hidden_size ** 2 + 2 * v.hidden_size * v.intermediate_size
    return v.num_layers * layer + v.hidden_size * text_hidden + text_hidden ** 2  # + the 2-layer projector


def vision_seconds(slot: ModelSlot, prefill_tps: float) -> float:
    """One image through the vision tower, as a prefill of its tokens through a model of
    the tower's size."""
    entry = slot.entry
    if entry is None or entry.vision is None:
        return 0.0
    ratio = vision_params(entry.vision, entry.text.hidden_size) / max(text_params(entry.text), 1)
    return entry.vision.tokens_per_image * ratio / prefill_tps


def calibrate(speeds: SpeedBook, slots: ModelSlots, roles: Iterable[str]) -> dict[str, Throughput]:
    """Give every role in `roles` without a known speed an estimate; returns the estimates.

    Every loaded model without a speed is probed; the others are scaled from a probed or
    known one by weight size. With nothing loaded and nothing known the defaults stay.
    """
    missing = [r for r in roles if r in slots and not speeds.known(r)]
    if not missing:
        return {}
    found = {r: probe(slots[r]) for r in slots if slots[r].loaded and not speeds.known(r)}
    known = {**speeds.snapshot(), **found}
    reference = next((r for r in known if r in slots), None)
    for role in missing:
        if role in found or reference is None:
            continue
        base = known[reference]
        scale = slots[reference].weight_bytes / max(slots[role].weight_bytes, 1)
        found[role] = Throughput(base.prefill_tps * scale, base.decode_tps * scale)
    for role, t in found.items():
        if slots[role].entry is not None and slots[role].entry.vision is not None:
            t = found[role] = Throughput(t.prefill_tps, t.decode_tps, vision_seconds(slots[role], t.prefill_tps))
        speeds.estimate(role, t)
        log.info("deadline: no measured speed for the %s model yet; estimated prefill %.0f tok/s, "
                 "decode %.1f tok/s, image %.2f s", role, t.prefill_tps, t.decode_tps, t.vision_s)
    return found
