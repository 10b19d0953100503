"""Paper-scale shape: random-weight Qwen3-0.6B with the real Qwen3 tokenizer -> Q4_K_M GGUF.

Run with `pytest tests/export/test_gguf_slow.py -m slow -s`: prints file size, export
time, parity and decode speed (2 and 1 threads) through the llama.cpp backend. About 3
minutes and 6 GB of RAM on a 2-core machine. Timings are reported, never asserted; the
load average is printed with them because llama.cpp's spinning thread pool slows down
sharply when another process holds one of the cores.
"""

from __future__ import annotations

import json
import os
import time

import numpy as np
import pytest


@pytest.mark.slow
def test_qwen3_0_6b_q4_k_m(tmp_path, qwen3_tokenizer_dir, record_property):
    from export.gguf import export_gguf, verify_gguf
    from runtime.backends.base import BackendOptions
    from runtime.backends.llamacpp import load_gguf
    from runtime.tokenizer import BundleTokenizer
    from training.models.builders import build_reasoner, qwen3_config
    from training.models.sizes import qwen3_0_6b

    tok = BundleTokenizer(qwen3_tokenizer_dir / "tokenizer.json")
    model = build_reasoner(qwen3_config(qwen3_0_6b(), eos_token_id=tok.token_id("<|im_end|>"),
                                        pad_token_id=tok.token_id("<|endoftext|>")))
    result: dict[str, object] = {}
    t0 = time.perf_counter()
    files = export_gguf(model, qwen3_tokenizer_dir, tmp_path, role="reasoner", quant="q4_k_m")
    result["export_s"] = round(time.perf_counter() - t0, 1)
    size = (tmp_path / files["model"]).stat().st_size
    result["size_mb"] = round(size / 1e6, 1)
    assert 300e6 < size < 500e6  # ~4.8 bits/weight for 0.6B parameters (tied embeddings)
    assert sorted(p.name for p in tmp_path.iterdir()) == [files["model"]]  # temporaries removed

    report = verify_gguf(tmp_path, files, "q4_k_m", model, qwen3_tokenizer_dir)
    m = report["metrics"]
    result.update({k: round(m[k], 4) for k in ("logit_correlation", "top1_agreement", "mean_abs_logit_diff")})
    assert m["tokenizer_mismatches"] == 0
    assert report["passed"], m

    del model
    prompt = tok.encode_plain("The image shows a red circle to the left of a blue square. " * 4)
    for threads in (2, 1):  # 2 is the target; 1 is robust when another process holds a core
        lm, _ = load_gguf(tmp_path / files["model"], options=BackendOptions(threads=threads, context_length=512))
        try:
            t0 = time.perf_counter()
            logits = lm.feed_tokens(prompt)
            result[f"prefill_tok_s_{threads}t"] = round(len(prompt) / (time.perf_counter() - t0), 1)
            logits = lm.feed_tokens([int(np.argmax(logits))])  # warm-up step
            n = 64
            t0 = time.perf_counter()
            for _ in range(n):
                logits = lm.feed_tokens([int(np.argmax(logits))])
            result[f"decode_tok_s_{threads}t"] = round(n / (time.perf_counter() - t0), 1)
        finally:
            lm.close()
    result["loadavg"] = [round(x, 2) for x in os.getloadavg()]
    for k, v in result.items():
        record_property(k, v)
    print("\nqwen3-0.6b q4_k_m:", json.dumps(result))
