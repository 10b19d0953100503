"""Baseline: a plain onnxruntime session loop over the bundle's ONNX graphs.

What a user would write with onnxruntime and numpy alone: `InferenceSession`s with the
same thread count, `session.run` with numpy feeds, the KV cache handed back as numpy
arrays every step, greedy argmax with banned ids masked. The graph I/O names are those
of docs/onnx.md; nothing of the project's runtime is on the hot path.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from benchmarks.inputs import prompt_runs
from runtime.errors import BackendUnavailableError
from runtime.image import SIGLIP_MEAN, SIGLIP_STD


def _ort():
    try:  # the backend library is an optional extra: loaded when the baseline runs
        import onnxruntime
    except ImportError as exc:
        raise BackendUnavailableError("onnxruntime", "onnx", str(exc)) from None
    return onnxruntime


class RawOnnx:
    def __init__(self, decoder: str | Path, embed: str | Path, *, threads: int, num_layers: int,
                 num_kv_heads: int, head_dim: int, vision: str | Path | None = None,
                 mean: Sequence[float] = SIGLIP_MEAN, std: Sequence[float] = SIGLIP_STD) -> None:
        ort = _ort()
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.log_severity_level = 3
        cpu = ["CPUExecutionProvider"]
        self.decoder = ort.InferenceSession(str(decoder), so, providers=cpu)
        self.embed = ort.InferenceSession(str(embed), so, providers=cpu)
        self.vision = ort.InferenceSession(str(vision), so, providers=cpu) if vision else None
        self.num_layers, self.kv_heads, self.head_dim = num_layers, num_kv_heads, head_dim
        self.mean = np.asarray(mean, dtype=np.float32)
        self.std = np.asarray(std, dtype=np.float32)
        self.out_names = [o.name for o in self.decoder.get_outputs()]

    def _empty_past(self) -> dict[str, np.ndarray]:
        z = np.zeros((1, self.kv_heads, 0, self.head_dim), dtype=np.float32)
        return {f"past_key_values.{i}.{k}": z for i in range(self.num_layers) for k in ("key", "value")}

    def _step(self, embeds: np.ndarray, past: dict[str, np.ndarray], n_past: int) -> tuple[np.ndarray, dict]:
        n = embeds.shape[0]
        feeds = {
            "inputs_embeds": embeds[None].astype(np.float32),
            "attention_mask": np.ones((1, n_past + n), dtype=np.int64),
            "position_ids": np.arange(n_past, n_past + n, dtype=np.int64)[None],
            "logits_index": np.array([n - 1], dtype=np.int64),
            **past,
        }
        outs = dict(zip(self.out_names, self.decoder.run(self.out_names, feeds), strict=True))
        new_past = {f"past_key_values.{i}.{k}": outs[f"present.{i}.{k}"]
                    for i in range(self.num_layers) for k in ("key", "value")}
        return outs["logits"][0, -1], new_past

    def _embed(self, ids: Sequence[int]) -> np.ndarray:
        return self.embed.run(["inputs_embeds"], {"input_ids": np.asarray([ids], dtype=np.int64)})[0][0]

    def generate(self, prompt: Sequence[int | None], n_new: int, *, ban: Sequence[int] = (),
                 image_embeds: np.ndarray | None = None) -> dict[str, float]:
        ban_arr = np.asarray(sorted(set(ban)), dtype=np.int64)
        t0 = time.perf_counter()
        # the prompt as one embeddings matrix (text rows + image rows)
        parts = [image if ids is None else self._embed(ids) for ids, image in prompt_runs(prompt, image_embeds)]
        x = np.concatenate(parts, axis=0)
        logits, past = self._step(x, self._empty_past(), 0)
        n_past = x.shape[0]
        t1 = time.perf_counter()
        out = []
        for _ in range(n_new):
            logits = logits.copy()
            if ban_arr.size:
                logits[ban_arr] = -np.inf
            tid = int(np.argmax(logits))
            out.append(tid)
            logits, past = self._step(self._embed([tid]), past, n_past)
            n_past += 1
        t2 = time.perf_counter()
        return {"prefill_s": t1 - t0, "decode_s": t2 - t1, "total_s": t2 - t0, "ids": out}

    def encode_image(self, pixels: np.ndarray) -> tuple[float, np.ndarray]:
        if self.vision is None:
            raise RuntimeError("no vision graph")
        t0 = time.perf_counter()
        x = (pixels.astype(np.float32) / 255.0 - self.mean) / self.std
        x = np.ascontiguousarray(x.transpose(2, 0, 1)[None])
        emb = self.vision.run(["image_embeds"], {"pixel_values": x})[0][0]
        return time.perf_counter() - t0, emb

    def close(self) -> None:
        self.decoder = self.embed = self.vision = None
