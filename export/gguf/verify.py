"""Parity of exported GGUF files against the torch model they came from.

Everything runs through the project's own llama.cpp backend (`runtime.backends.llamacpp`)
with an f32 KV cache, so what is verified is what the runtime will execute:
- text decoder, teacher-forced one position at a time (the KV-cache path), against the
  torch decoder's logits over the same ids: max/mean |diff|, top-1 agreement, and the
  per-position correlation of the logit vectors; for quantized files also against torch
  running the file's own dequantized weights, which separates runtime/layout errors from
  quantization noise;
- tokenization: llama.cpp's tokenizer (specials parsed) against the HF tokenizer on a
  varied text set (code, CJK, emoji, whitespace runs, digits, ChatML with <think>);
- perception: mmproj image embeddings against `get_image_features` on the same pixels
  (a gradient + noise image, so any resampling by mtmd would show), and a prompt with
  the image spliced in against the full LLaVA forward pass.
Tolerances depend on the quantization; the result says which were used and "passed".
"""

from __future__ import annotations

import copy
import logging
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from gguf import GGUFReader, quants
from tokenizers import Tokenizer

from export.checkpoint import image_preprocess
from export.embedding_parity import probe_image
from export.gguf.mmproj import vision_parts, write_mmproj_parts
from export.gguf.mmproj_parity import MMPROJ_BOUNDS, compare_mmproj
from export.gguf.mmproj_requant import file_quant
from export.gguf.quantize import QUANT_SPECS, quant_spec
from export.gguf.text import text_parts, text_tensor_params
from runtime.backends.base import BackendOptions
from runtime.backends.llamacpp import GGUFTokenizer, load_gguf
from runtime.image import SIGLIP_MEAN, SIGLIP_STD

log = logging.getLogger(__name__)

N_POSITIONS = 256

# Text the tokenizer check runs on; also used by the tests.
TOKENIZER_TEXTS: tuple[str, ...] = (
    "The image shows a red circle to the left of a blue square.",
    "def area(r: float) -> float:\n    return 3.14159 * r ** 2  # πr²\n\tif x != 0:\n\t\tpass",
    "图像中有一只猫坐在桌子上。東京タワーは赤い。한국어 텍스트도 있습니다.",
    "Emoji: 😀👍🏽🇯🇵 ❤️ 🤖 — and a family 👨‍👩‍👧‍👦.",
    "whitespace   runs\n\n\n   and\t\ttabs    end   ",
    "Digits 0123456789 1234567 3.14159 -42 1e-10 2025-01-31 $1,000,000.00",
    "<|im_start|>user\nHow many cats?<|im_end|>\n<|im_start|>assistant\n<think>\nCount them.\n</think>\n\nAnswer: B<|im_end|>",
    "It's, they're, we'll, I'd, you've; CAPS'S don't WON'T",
    "Mixed: naïve café — «quotes» “curly” ‘single’ … ellipsis ½ ¼ ™ ©",
    "    indented code\n        more\n",
)

PASSAGE = (
    "The image shows a red circle to the left of a blue square on a grey background. "
    "Question: How many triangles are there? Options: A. 1 B. 2 C. 3 D. 4\n"
    "Let me think step by step. The description says there are two triangles, so B.\n"
    "def f(x):\n    return x * 2  # double it\nNumbers 0 1 2 3 42 100 2025 3.14\n"
    "A green star is above a yellow hexagon; the word CAT is written in black. "
)

# Pass criteria per quantization. f32 must match to the 1e-3. Quantized files are
# judged by the mean per-position logit correlation: greedy top-1 agreement is reported
# but not required, because random-weight models have nearly flat logits where tiny
# errors flip the argmax (random Qwen3-0.6B shape: q8_0 top-1 0.86 at correlation
# 0.9995, q4_k_m 0.29 at 0.965), while trained models have peaked ones.
TOLERANCES: dict[str, dict[str, float]] = {
    "f32": {"max_abs_logit_diff": 1e-3, "top1_agreement": 0.99},
    "f16": {"logit_correlation": 0.9999},
    "bf16": {"logit_correlation": 0.999},
    "q8_0": {"logit_correlation": 0.999},
    "q6_k": {"logit_correlation": 0.99},
    "q5_k_m": {"logit_correlation": 0.98},
    "q5_0": {"logit_correlation": 0.98},
    "q5_1": {"logit_correlation": 0.98},
    "q4_k_m": {"logit_correlation": 0.95},
    "q4_0": {"logit_correlation": 0.95},
    "q4_1": {"logit_correlation": 0.95},
}
# llama.cpp vs torch running the file's own (dequantized) weights: only the runtime's
# activation rounding remains (tiny models: 0.99998 for every quant; a wrong RoPE base: 0.96)
DEQUANT_TOLERANCE = {"dequant_logit_correlation": 0.999, "gguf_missing_tensors": 0}
_AT_LEAST = ("top1_agreement", "logit_correlation", "multimodal_logit_correlation",
             "dequant_logit_correlation", "mmproj_vs_f16_embed_min_token_cosine")
# relative to the embeddings' largest magnitude, so it holds for any model scale
IMAGE_TOLERANCE = {"image_embed_rel_diff": 1e-2}
# a Q8_0 mmproj against torch: quantization noise (the F16 comparison bounds it properly)
QUANTIZED_MMPROJ_IMAGE_TOLERANCE = 0.1
TOKENIZER_TOLERANCE = {"tokenizer_mismatches": 0}


def pixels(image: np.ndarray, mean: Any = SIGLIP_MEAN, std: Any = SIGLIP_STD):
    """uint8 [H, W, 3] -> normalised float32 torch tensor [1, 3, H, W]."""
    import torch  # heavy, and only the parity check needs it

    x = torch.tensor(image, dtype=torch.float32).permute(2, 0, 1)[None] / 255.0
    m = torch.tensor(mean, dtype=torch.float32)[None, :, None, None]
    s = torch.tensor(std, dtype=torch.float32)[None, :, None, None]
    return (x - m) / s


def sample_ids(tokenizer_json: Path, n: int) -> list[int]:
    tok = Tokenizer.from_file(str(tokenizer_json))
    ids: list[int] = []
    while len(ids) < n:
        ids += tok.encode(PASSAGE + " ".join(TOKENIZER_TEXTS[:6]), add_special_tokens=False).ids
    return ids[:n]


def torch_text_logits(model: Any, ids: list[int]) -> np.ndarray:
    import torch  # heavy, and only the parity check needs it

    parts = text_parts(model)
    with torch.no_grad():
        hidden = parts.decoder(input_ids=torch.tensor([ids])).last_hidden_state
        return parts.lm_head(hidden)[0].float().numpy()


def dequantized_copy(model: Any, gguf_path: Path) -> tuple[Any, list[str]]:
    """A copy of `model` whose decoder weights are the GGUF's, dequantized.

    llama.cpp running a quantized file should match *this* model closely: what remains is
    the runtime's own error (activation rounding), not the quantization's, so a layout,
    RoPE or vocabulary mistake stands out even where quantization noise is large.
    Returns the copy and the names of decoder tensors the file lacks.
    """
    import torch  # heavy, and only the parity check needs it

    clone = copy.deepcopy(model)
    params = text_tensor_params(text_parts(clone))
    seen = set()
    with torch.no_grad():
        for t in GGUFReader(gguf_path).tensors:
            p = params.get(t.name)
            if p is None:
                continue
            data = np.array(quants.dequantize(t.data, t.tensor_type), dtype=np.float32)  # writable copy
            if tuple(data.shape) != tuple(p.shape):
                continue  # reported as missing: llama.cpp would not load it either
            p.copy_(torch.from_numpy(data).to(p.dtype))
            seen.add(t.name)
    return clone.eval(), sorted(set(params) - seen)


def _compare_logits(out: np.ndarray, ref: np.ndarray) -> dict[str, float]:
    diff = np.abs(out - ref)
    a = out - out.mean(-1, keepdims=True)
    b = ref - ref.mean(-1, keepdims=True)
    corr = (a * b).sum(-1) / np.sqrt((a * a).sum(-1) * (b * b).sum(-1) + 1e-30)
    return {
        "max_abs_logit_diff": float(diff.max()),
        "mean_abs_logit_diff": float(diff.mean()),
        "top1_agreement": float((out.argmax(-1) == ref.argmax(-1)).mean()),
        # Pearson correlation of the logit vectors, per position: quantization noise
        # lowers it slightly, a broken export (layout, RoPE, vocab) drops it towards 0
        "logit_correlation": float(corr.mean()),
        "min_logit_correlation": float(corr.min()),
        "ref_logit_scale": float(np.abs(ref).max()),
        "n_positions": int(ref.shape[0]),
    }


def check_tokenizer(gguf_tok: Any, tokenizer_json: Path) -> dict[str, Any]:
    hf = Tokenizer.from_file(str(tokenizer_json))
    bad = []
    n_tokens = 0
    for text in TOKENIZER_TEXTS:
        want = hf.encode(text, add_special_tokens=False).ids
        got = gguf_tok.tokenize_with_specials(text)
        n_tokens += len(want)
        if got != want:
            bad.append(text[:40])
    return {"tokenizer_texts": len(TOKENIZER_TEXTS), "tokenizer_tokens": n_tokens,
            "tokenizer_mismatches": len(bad), "tokenizer_mismatched_texts": bad}


def _perception_metrics(model: Any, lm: Any, vision: Any, ids: list[int],
                        checkpoint_dir: Path) -> dict[str, Any]:
    import torch  # heavy, and only the parity check needs it

    cfg = model.config
    size = int(cfg.vision_config.image_size)
    image = probe_image(size)
    prep = image_preprocess(checkpoint_dir, size)
    pix = pixels(image, prep.mean, prep.std)
    emb = vision.encode(image)
    with torch.no_grad():
        ref = model.model.get_image_features(pixel_values=pix).pooler_output[0].float().numpy()
    out: dict[str, Any] = {"tokens_per_image": int(emb.shape[0])}
    if emb.shape != ref.shape:
        out["image_embed_shape_mismatch"] = [list(emb.shape), list(ref.shape)]
        out["image_embed_max_diff"] = float("inf")
        return out
    diff = np.abs(emb - ref)
    out["image_embed_max_diff"] = float(diff.max())
    out["image_embed_rel_diff"] = float(diff.max() / max(1e-12, float(np.abs(ref).max())))

    # the whole multimodal path: prefix tokens, image embeddings, suffix tokens
    n_img = emb.shape[0]
    prefix, suffix = ids[:8], ids[8:40]
    full = prefix + [int(cfg.image_token_id)] * n_img + suffix
    with torch.no_grad():
        hf = model(input_ids=torch.tensor([full]), pixel_values=pix).logits[0].float().numpy()
    lm.reset()
    lm.feed_tokens(prefix)
    lm.feed_embeddings(emb)
    got = np.stack([lm.feed_tokens([t]) for t in suffix])
    mm = _compare_logits(got, hf[len(prefix) + n_img:])
    out["multimodal_max_abs_logit_diff"] = mm["max_abs_logit_diff"]
    out["multimodal_top1_agreement"] = mm["top1_agreement"]
    out["multimodal_logit_correlation"] = mm["logit_correlation"]
    return out


def _quantized_mmproj_metrics(model: Any, text_model: Path, mmproj: Path, checkpoint_dir: Path) -> dict[str, float]:
    """The quantized mmproj against an F16 one written from the same torch model."""
    size = int(model.config.vision_config.image_size)
    prep = image_preprocess(checkpoint_dir, size)
    with tempfile.TemporaryDirectory(prefix="mmproj-f16-") as tmp:
        ref = Path(tmp) / "mmproj-f16.gguf"
        write_mmproj_parts(vision_parts(model), ref, QUANT_SPECS["f16"], name="reference", mean=prep.mean,
                           std=prep.std)
        metrics = compare_mmproj(text_model, ref, mmproj, probe_image(size))
    return {f"mmproj_vs_f16_{k}": v for k, v in metrics.items()}


def verify(root: Path, files: dict[str, str], quant: str, model: Any, tokenizer_dir: Path) -> dict:
    spec = quant_spec(quant)
    tol = dict(TOLERANCES[spec.name])
    tokenizer_json = Path(tokenizer_dir) / "tokenizer.json"
    mmproj = root / files["mmproj"] if "mmproj" in files else None
    ids = sample_ids(tokenizer_json, N_POSITIONS)
    ref = torch_text_logits(model, ids)
    deq_model, missing = (model, []) if spec.name == "f32" else dequantized_copy(model, root / files["model"])
    deq_ref = ref if deq_model is model else torch_text_logits(deq_model, ids)
    # one thread: the numbers do not depend on it, and llama.cpp's spinning thread pool
    # slows down by 10-100x when another process holds a core (shared export machines)
    options = BackendOptions(threads=1, kv_cache_type="f32", context_length=len(ids) + 1024)
    lm, vision = load_gguf(root / files["model"], mmproj, options)
    try:
        lm.reset()
        out = np.stack([lm.feed_tokens([t]) for t in ids])
        metrics: dict[str, Any] = _compare_logits(out, ref)
        if deq_model is not model:
            deq = _compare_logits(out, deq_ref)
            metrics.update({f"dequant_{k}": deq[k] for k in
                            ("max_abs_logit_diff", "top1_agreement", "logit_correlation")})
            metrics["gguf_missing_tensors"] = len(missing)
            tol.update(DEQUANT_TOLERANCE)
        tok = GGUFTokenizer(lm)
        try:
            metrics.update(check_tokenizer(tok, tokenizer_json))
        finally:
            tok.close()
        tol.update(TOKENIZER_TOLERANCE)
        if vision is not None:
            metrics.update(_perception_metrics(deq_model, lm, vision, ids, Path(tokenizer_dir)))
            tol.update(IMAGE_TOLERANCE)
            mm_quant = file_quant(mmproj)
            if mm_quant not in ("f32", "f16"):  # a quantized mmproj: judged against an F16 one
                metrics.update(_quantized_mmproj_metrics(model, root / files["model"], mmproj, Path(tokenizer_dir)))
                tol.update({f"mmproj_vs_f16_{k}": limit for k, (limit, _) in MMPROJ_BOUNDS.items()})
                tol["image_embed_rel_diff"] = QUANTIZED_MMPROJ_IMAGE_TOLERANCE
                tol["multimodal_logit_correlation"] = DEQUANT_TOLERANCE["dequant_logit_correlation"]
            elif spec.name == "f32":  # f32 mmproj + f32 decoder: the whole path is near-exact
                tol["multimodal_max_abs_logit_diff"] = 1e-2
            else:  # the reference is the dequantized model here
                tol["multimodal_logit_correlation"] = DEQUANT_TOLERANCE["dequant_logit_correlation"]
    finally:
        if vision is not None:
            vision.close()
        lm.close()

    checks = {}
    for key, limit in tol.items():
        value = metrics.get(key)
        ok = value is not None and (value >= limit if key in _AT_LEAST else value <= limit)
        checks[key] = bool(ok)
    passed = all(checks.values())
    log.info("gguf %s parity: %s (%s)", spec.name, "passed" if passed else "FAILED",
             ", ".join(f"{k}={metrics.get(k)}" for k in tol))
    return {"format": "gguf", "quant": spec.name, "files": dict(files), "metrics": metrics,
            "tolerances": tol, "checks": checks, "passed": passed}
