"""Qwen3-0.6B shape (random weights, Qwen3 tokenizer, vocab 151,936) -> quantized ONNX.

Slow: run with `.venv/bin/pytest tests/export/test_onnx_large.py -m slow -s`. Export
and decoding each run in a fresh process so their peak RSS is their own; the numbers
(file sizes, export time, peak RSS, parity, decode tokens/s through the backend and
through a raw onnxruntime loop in the same process) are printed and saved as JSON.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.blocked_imports import run_without

ROOT = Path(__file__).resolve().parents[2]

EXPORT = r"""
import json, resource, sys, time
from pathlib import Path
from training.models.builders import build_reasoner, qwen3_config
from training.models.sizes import qwen3_0_6b
from export.onnx import export_onnx, verify_onnx
from tests.onnx_support import write_onnx_bundle
tok, out, bundle = (Path(a) for a in sys.argv[1:4])
quant = sys.argv[4]
model = build_reasoner(qwen3_config(qwen3_0_6b(), eos_token_id=151645, pad_token_id=151643))
rss_model = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
t = time.perf_counter()
files = export_onnx(model, tok, out, role="reasoner", quant=quant)
export_s = time.perf_counter() - t
rss_export = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
t = time.perf_counter()
report = verify_onnx(out, files, quant, model, tok)
verify_s = time.perf_counter() - t
write_onnx_bundle(bundle, out, files, model, tok, role="reasoner", quant=quant)
print(json.dumps({
    "export_s": round(export_s, 1), "verify_s": round(verify_s, 1),
    "peak_rss_mb_model_built": round(rss_model), "peak_rss_mb_export": round(rss_export),
    "files": {k: [v, (out / v).stat().st_size] for k, v in files.items()},
    "verify": report,
}))
"""

DECODE = r"""
import json, resource, statistics, sys, time
import numpy as np
import onnxruntime as ort
from runtime.backends.base import BackendOptions
from runtime.backends.onnx import load
from runtime.bundle import open_bundle
bundle = open_bundle(sys.argv[1])
lm, _ = load(bundle, "reasoner", bundle.artifact("reasoner", "onnx"), BackendOptions())
text = bundle.model("reasoner").text
prompt = np.random.default_rng(0).integers(0, 151000, 128).tolist()
steps = 64

class Raw:  # the plain loop: numpy in, numpy out, presents fed back as past
    def __init__(self, dec, emb):
        self.dec, self.emb, self.n = dec, emb, 0
        self.names = [f"past_key_values.{i}.{k}" for i in range(text.num_layers) for k in ("key", "value")]
        self.past = [np.zeros((1, text.num_kv_heads, 0, text.head_dim), np.float32)] * len(self.names)
    def feed_tokens(self, ids):
        e = self.emb.run(None, {"input_ids": np.asarray(ids, np.int64)[None]})[0]
        s = e.shape[1]
        feed = {"inputs_embeds": e, "attention_mask": np.ones((1, self.n + s), np.int64),
                "position_ids": np.arange(self.n, self.n + s, dtype=np.int64)[None],
                "logits_index": np.array([s - 1], np.int64), **dict(zip(self.names, self.past))}
        out = self.dec.run(None, feed)
        self.past, self.n = out[1:], self.n + s
        return out[0][0, -1]

def fresh(name):
    if name.startswith("raw"):
        return Raw(lm._decoder, lm._embed)
    lm.reset()
    return lm

res = {}
# Interleaved, twice each: the machine is shared, so compare medians of paired runs.
for name in ("warmup", "backend", "raw", "backend2", "raw2"):
    m = fresh(name)
    t = time.perf_counter()
    tok = int(m.feed_tokens(prompt).argmax())
    prefill = time.perf_counter() - t
    times, toks = [], [tok]
    for _ in range(steps):
        t = time.perf_counter()
        tok = int(m.feed_tokens([tok]).argmax())
        times.append(time.perf_counter() - t)
        toks.append(tok)
    res[name] = {"prefill_s": prefill, "step_median_s": statistics.median(times), "tokens": toks}
assert res["backend"]["tokens"] == res["raw"]["tokens"], "backend and raw loop disagree"
med = lambda a, b: statistics.median([res[a]["step_median_s"], res[b]["step_median_s"]])
print(json.dumps({
    "threads": lm._decoder.get_session_options().intra_op_num_threads,
    "prompt_tokens": len(prompt), "decode_steps": steps,
    "prefill_tokens_per_s": round(len(prompt) / min(res["backend"]["prefill_s"], res["backend2"]["prefill_s"]), 1),
    "decode_tokens_per_s": round(1 / med("backend", "backend2"), 2),
    "raw_loop_decode_tokens_per_s": round(1 / med("raw", "raw2"), 2),
    "backend_over_raw_step_time": round(med("backend", "backend2") / med("raw", "raw2"), 3),
    "peak_rss_mb_decode": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
}))
"""


def _run(code: str, *args: str, blocked: tuple[str, ...] = ()) -> dict:
    res = run_without(blocked, code, args=args, cwd=ROOT, timeout=3600)
    assert res.returncode == 0, res.stderr[-4000:]
    return json.loads(res.stdout.strip().splitlines()[-1])


@pytest.mark.slow
@pytest.mark.parametrize("quant", ["int4", "int8"])
def test_qwen3_0_6b_shape_export_and_decode(tmp_path, qwen3_tokenizer_dir, quant):
    out, bundle = tmp_path / "onnx", tmp_path / "bundle"
    exp = _run(EXPORT, str(qwen3_tokenizer_dir), str(out), str(bundle), quant)
    dec = _run(DECODE, str(bundle), blocked=("torch", "transformers"))  # decoding is torch-free, like on a device
    summary = {"quant": quant, **{k: v for k, v in exp.items() if k != "verify"},
               "verify_metrics": exp["verify"]["metrics"], "verify_passed": exp["verify"]["passed"],
               **dec}
    (tmp_path / f"qwen3-0.6b-{quant}.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2))
    # A 151,936-row lm_head in 4 bits (block 32) and the rest: well under the 2.4 GB fp32.
    decoder_bytes = exp["files"]["decoder"][1]
    assert decoder_bytes < (450e6 if quant == "int4" else 700e6)
    assert exp["files"]["embed"][1] < 170e6  # int8 table, not the 622 MB float one
    metrics = exp["verify"]["metrics"]
    assert metrics["positions"] >= 400
    # Random deep models have top-1 margins of ~0.07 logit, mostly below the quantization
    # noise, so plain top-1 agreement is chance here; verify_onnx gates the relative logit
    # error (a broken quantization, wrong layout or scales, is ~1 or more) and agreement
    # at the positions that stand clear of the noise.
    assert metrics["logits_rel_rms"] < (0.5 if quant == "int4" else 0.1), metrics
    if quant == "int8":  # some positions stand clear of the int8 noise; they must agree
        assert metrics["decisive_positions"] >= 20 and metrics["top1_agreement_decisive"] >= 0.95
    assert exp["verify"]["passed"], exp["verify"]["checks"]
    assert dec["decode_tokens_per_s"] > 0
