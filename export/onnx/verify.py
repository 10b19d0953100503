"""Parity of exported ONNX graphs against the PyTorch model they came from.

Teacher forcing over real text (>= 200 positions, batch 2): the decoder runs a prefill
of the first half with every position's logits, then one token at a time through its
own KV cache, and each position is compared with one full PyTorch forward pass. For
perception the vision graph is compared with transformers' own `get_image_features`, and
an image prompt (ONNX embed + ONNX vision spliced into the decoder input) with the full
LLaVA forward pass.

fp32 must match to 1e-4 (logits, image embeddings, image-prompt logits) with top-1
agreement >= 0.99. A quantized decoder must keep (1) its relative logit error (error
RMS / logit RMS) within what its type should produce (int8 <= 0.10, int4 <= 0.50; a
broken quantization, wrong layout or scales, is ~1), and (2) the reference's greedy
choice wherever that choice stands clear of the noise: top-1 agreement >= 0.95 over the
positions whose top-1 margin is >= 3x the error RMS (gated when there are >= 20 such
positions). Plain top-1 agreement over all positions is reported: on trained models
nearly every position is decisive, so it matches (2); on deep random-weight models
(Qwen3-0.6B shape: median margin 0.07 logit, int4 noise 0.26) almost none is, and
agreement there measures chance. (3) int8 only: no pair of adjacent weights may be able
to saturate the int16 sums of x86 CPUs without VNNI (see TOLERANCES), so the result does
not depend on the CPU. A float32 vision graph is held to 1e-4 at every quant; an int8 one
(`edge export --vision-quant int8`, recognised from its quantized MatMuls) to the embedding
bounds of `export.embedding_parity` against PyTorch's image features (relative L2 and mean
error <= 0.05, worst token cosine >= 0.99) with the same saturation gate as the decoder; the
int8 embedding table within half a step per row.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

from export.embedding_parity import EMBED_BOUNDS, embedding_metrics
from export.onnx.common import check_quant, model_parts
from runtime.backends.base import BackendOptions
from runtime.backends.onnx import (
    DECODER_EMBEDS,
    DECODER_LOGITS,
    DECODER_LOGITS_INDEX,
    DECODER_MASK,
    DECODER_POSITIONS,
    EMBED_INPUT,
    EMBED_OUTPUT,
    KV_KINDS,
    VISION_INPUT,
    VISION_OUTPUT,
    open_session,
    past_name,
    present_name,
    providers_for,
    session_options,
)
from runtime.tokenizer import BundleTokenizer

log = logging.getLogger(__name__)

# Why these values (measured numbers: docs/onnx.md, "Verification"):
# - fp32: the graphs compute what PyTorch does in another order; 1e-4 is ~100x the
#   differences measured (4e-7 tiny, 4e-6 Qwen3-0.6B shape).
# - logits_rel_rms (error RMS / logit RMS) is the quantization noise. int8 gives 0.018 on
#   the tiny models and 0.056 on a deep random Qwen3-0.6B-shape decoder (more layers to
#   accumulate through); int4 0.15 / 0.35-0.41. The gates sit above what the type produces
#   on every model measured and far below a broken quantization (wrong layout or scales,
#   scrambled weights: ~1), so they separate "noisy as expected" from "wrong".
# - int8_weight_pair_max: the largest |w[2k]| + |w[2k+1]| of any *signed* int8 weight column
#   (0 for the uint8 weights the exporter writes). x86 CPUs without VNNI add each such pair of
#   u8 x s8 products into a saturating int16, so 255 * pair must stay <= 32767 (pair <= 128)
#   for every CPU to compute the same integers. 8-bit signed weights (pairs up to 254) gave
#   0.107 instead of 0.018 on such a CPU, an error the noise gate alone only just catches on
#   some CPUs and not at all on others; this gate refuses such a file on any CPU.
INT8_PAIR_LIMIT = 128
TOLERANCES: dict[str, dict[str, float]] = {
    "fp32": {"logits_max_diff": 1e-4, "vision_max_diff": 1e-4, "embed_max_diff": 1e-6,
             "top1_agreement": 0.99},
    "int8": {"vision_max_diff": 1e-4, "logits_rel_rms": 0.10, "top1_agreement_decisive": 0.95,
             "int8_weight_pair_max": INT8_PAIR_LIMIT},
    "int4": {"vision_max_diff": 1e-4, "logits_rel_rms": 0.50, "top1_agreement_decisive": 0.95},
}
DECISIVE_MARGIN = 3.0  # a position is decisive when its top-1 margin >= this * noise RMS
MIN_DECISIVE = 20  # fewer decisive positions than this: agreement is reported, not gated
MIN_POSITIONS = 224  # teacher-forced positions per sequence (two sequences: 448)

VERIFY_TEXT = (
    "The image shows a red circle to the left of a blue square on a grey background. "
    "Question: How many triangles are there? Options: A. 1 B. 2 C. 3 D. 4\nAnswer: B\n"
    "def area(w, h):\n    return w * h  # 3.14 2025 42\n"
    "Let me think step by step: the green star is above the yellow hexagon, so the answer is C. "
)


def _teacher_ids(tokenizer_dir: Path, vocab: int, n: int) -> np.ndarray:
    """Two different real-text sequences of n ids each (the second starts mid-text)."""
    ids = BundleTokenizer(Path(tokenizer_dir) / "tokenizer.json").encode_plain(VERIFY_TEXT)
    ids = [i for i in ids if i < vocab]
    if not ids:
        raise ValueError("the tokenizer produced no ids inside the model's vocabulary")
    reps = -(-(2 * n + len(ids) // 2) // len(ids))
    stream = np.array(ids * reps, dtype=np.int64)
    off = len(ids) // 2
    return np.stack([stream[:n], stream[off : off + n]])


def _decoder_feed(embeds: np.ndarray, past: list[np.ndarray], start: int, keep: np.ndarray,
                  n_layers: int) -> dict[str, np.ndarray]:
    batch, seq = embeds.shape[:2]
    feed = {
        DECODER_EMBEDS: embeds.astype(np.float32),
        DECODER_MASK: np.ones((batch, start + seq), dtype=np.int64),
        DECODER_POSITIONS: np.tile(np.arange(start, start + seq, dtype=np.int64), (batch, 1)),
        DECODER_LOGITS_INDEX: keep.astype(np.int64),
    }
    names = [past_name(i, k) for i in range(n_layers) for k in KV_KINDS]
    feed.update(zip(names, past, strict=True))
    return feed


def run_teacher_forced(decoder: Any, embeds: np.ndarray, n_layers: int, kv_heads: int,
                       head_dim: int, prefill: int) -> np.ndarray:
    """Logits for every position: prefill `prefill` positions, then one step at a time."""
    batch, n = embeds.shape[:2]
    outs = [DECODER_LOGITS] + [present_name(i, k) for i in range(n_layers) for k in KV_KINDS]
    past = [np.zeros((batch, kv_heads, 0, head_dim), np.float32)] * (2 * n_layers)
    feed = _decoder_feed(embeds[:, :prefill], past, 0, np.arange(prefill), n_layers)
    res = decoder.run(outs, feed)
    logits, past = [res[0]], res[1:]
    for t in range(prefill, n):
        res = decoder.run(outs, _decoder_feed(embeds[:, t : t + 1], past, t, np.zeros(1), n_layers))
        logits.append(res[0])
        past = res[1:]
    return np.concatenate(logits, axis=1)


def _decisive_agreement(logits: np.ndarray, ref: np.ndarray) -> dict[str, Any]:
    """Top-1 agreement where the reference's choice stands clear of the noise.

    With error RMS sigma, a position whose top-1 margin is >= 3 sigma should keep its
    argmax unless the quantization is biased; below that, flips are chance. Trained
    models are decisive almost everywhere; deep random-weight models almost nowhere.
    """
    sigma = float(np.sqrt(((logits - ref.astype(np.float64)) ** 2).mean()))
    top2 = np.partition(ref, -2, axis=-1)[..., -2:]
    margin = top2[..., 1] - top2[..., 0]
    decisive = margin >= DECISIVE_MARGIN * sigma
    same = logits.argmax(-1) == ref.argmax(-1)
    return {
        "logits_noise_rms": sigma,
        "ref_median_margin": float(np.median(margin)),
        "decisive_positions": int(decisive.sum()),
        "top1_agreement_decisive": float(same[decisive].mean()) if decisive.any() else None,
    }


def int8_weight_pair_max(path: Path) -> int:
    """max over MatMulInteger int8 weights of |w[2k, n]| + |w[2k+1, n]| (pairs along K, as
    the saturating x86 kernels add them); 0 when the graph has none."""
    model = onnx.load(str(path))
    weights = {n.input[1] for n in model.graph.node if n.op_type == "MatMulInteger"}
    worst = 0
    for init in model.graph.initializer:
        if init.name in weights and init.data_type == onnx.TensorProto.INT8:
            w = np.abs(numpy_helper.to_array(init).astype(np.int32))
            w = w.reshape(w.shape[0], -1)
            if w.shape[0] % 2:
                w = np.concatenate([w, np.zeros((1, w.shape[1]), np.int32)])
            worst = max(worst, int(w.reshape(w.shape[0] // 2, 2, -1).sum(1).max()))
    return worst


def is_int8_graph(path: Path) -> bool:
    """Whether the graph's MatMuls were quantized (dynamic int8: MatMulInteger nodes)."""
    model = onnx.load(str(path), load_external_data=False)
    return any(n.op_type in ("MatMulInteger", "DynamicQuantizeMatMul") for n in model.graph.node)


def _agreement(a: np.ndarray, b: np.ndarray) -> float:
    return float((a.argmax(-1) == b.argmax(-1)).mean())


def _max_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.float64) - b.astype(np.float64)).max())


def _rel_rms(a: np.ndarray, ref: np.ndarray) -> float:
    """RMS error relative to the reference's RMS: how much noise quantization adds."""
    ref64 = ref.astype(np.float64)
    return float(np.sqrt(((a - ref64) ** 2).mean() / max((ref64**2).mean(), 1e-30)))


def verify_onnx(bundle_root: Path, files: dict[str, str], quant: str, model: Any,
                tokenizer_dir: Path) -> dict:
    """Compare the exported graphs in `bundle_root` with `model`; JSON-able report."""
    import onnxruntime as ort  # heavy optional dependencies: only the check needs them
    import torch
    from transformers import LlavaForConditionalGeneration

    quant = check_quant(quant)
    role = "perception" if isinstance(model, LlavaForConditionalGeneration) else "reasoner"
    parts = model_parts(model, role)
    cfg = parts.text_config
    root = Path(bundle_root)
    so, providers = session_options(ort, BackendOptions()), providers_for(ort, BackendOptions())
    embed = open_session(ort, root / files["embed"], so, providers)
    decoder = open_session(ort, root / files["decoder"], so, providers)
    metrics: dict[str, Any] = {}

    ids = _teacher_ids(tokenizer_dir, cfg.vocab_size, MIN_POSITIONS)
    with torch.no_grad():
        t_ids = torch.from_numpy(ids)
        ref_embeds = parts.embed_tokens(t_ids).numpy()
        ref_logits = parts.lm_head(parts.language_model(input_ids=t_ids).last_hidden_state).numpy()
    embeds = embed.run([EMBED_OUTPUT], {EMBED_INPUT: ids})[0]
    metrics["embed_max_diff"] = _max_diff(embeds, ref_embeds)
    logits = run_teacher_forced(decoder, embeds, cfg.num_hidden_layers, cfg.num_key_value_heads,
                                cfg.head_dim, prefill=MIN_POSITIONS // 2)
    metrics["logits_max_diff"] = _max_diff(logits, ref_logits)
    metrics["top1_agreement"] = _agreement(logits, ref_logits)
    metrics["logits_rel_rms"] = _rel_rms(logits, ref_logits)
    metrics.update(_decisive_agreement(logits, ref_logits))
    metrics["positions"] = int(ids.size)
    if quant == "int8":
        metrics["int8_weight_pair_max"] = int8_weight_pair_max(root / files["decoder"])

    tol = dict(TOLERANCES[quant])
    int8_vision = role == "perception" and is_int8_graph(root / files["vision"])
    if role == "perception":
        metrics.update(_verify_vision(root / files["vision"], ort, so, providers, model, parts,
                                      embed, decoder, ids[0, :16]))
    if int8_vision:
        # quantization noise, judged like a Q8_0 mmproj (export.embedding_parity)
        metrics["vision_int8_weight_pair_max"] = int8_weight_pair_max(root / files["vision"])
        tol.pop("vision_max_diff", None)
        tol.update({f"vision_{k}": limit for k, (limit, _) in EMBED_BOUNDS.items()})
        tol["vision_int8_weight_pair_max"] = INT8_PAIR_LIMIT
    if quant != "fp32":
        # The int8 table's error is bounded by half a quantization step of each row.
        amax = float(parts.embed_tokens.weight.detach().abs().amax().item())
        tol["embed_max_diff"] = amax / 254 * 1.001 + 1e-7
    checks = {}
    for name, bound in sorted(tol.items()):
        value = metrics.get(name)
        if name == "top1_agreement_decisive" and metrics["decisive_positions"] < MIN_DECISIVE:
            continue  # margins below the noise everywhere: argmax flips are coin tosses
        if value is not None:
            at_least = "agreement" in name or "cosine" in name
            checks[name] = bool(value >= bound if at_least else value <= bound)
    if quant == "fp32" and not int8_vision and "image_logits_max_diff" in metrics:
        # Quantized decoders are judged on the >= 200 text positions; the image prompt's
        # few dozen positions are reported for them, not gated (too few to be stable).
        checks["image_logits_max_diff"] = metrics["image_logits_max_diff"] <= tol["logits_max_diff"]
    report = {
        "format": "onnx", "role": role, "quant": quant, "files": dict(files),
        "metrics": metrics, "tolerances": tol, "checks": checks, "passed": all(checks.values()),
    }
    log.info("onnx verify %s %s: %s", role, quant, "passed" if report["passed"] else "FAILED")
    return report


def _verify_vision(path: Path, ort: Any, so: Any, providers: list[str], model: Any,
                   parts: Any, embed: Any, decoder: Any, text_ids: np.ndarray) -> dict[str, float]:
    import torch

    vision = open_session(ort, path, so, providers)
    size = parts.vision_config.image_size
    pixels = np.random.default_rng(0).uniform(-1, 1, (2, 3, size, size)).astype(np.float32)
    with torch.no_grad():
        feats = model.model.get_image_features(pixel_values=torch.from_numpy(pixels))
        feats = getattr(feats, "pooler_output", feats)
        ref = torch.stack(list(feats)).numpy()
    got = vision.run([VISION_OUTPUT], {VISION_INPUT: pixels})[0]
    out = {"vision_max_diff": _max_diff(got, ref)}
    width = got.shape[-1]
    out.update({f"vision_{k}": v for k, v in embedding_metrics(got.reshape(-1, width), ref.reshape(-1, width)).items()})

    # One image prompt end to end: text, the image's tokens, text again.
    cfg = parts.text_config
    n_img = got.shape[1]
    image_id = model.config.image_token_id
    ids = np.concatenate([text_ids[:6], np.full(n_img, image_id), text_ids[6:]])[None]
    with torch.no_grad():
        ref_logits = model(input_ids=torch.from_numpy(ids),
                           pixel_values=torch.from_numpy(pixels[:1])).logits.numpy()
    safe = np.where(ids == image_id, 0, ids)  # the image rows are replaced below
    embeds = embed.run([EMBED_OUTPUT], {EMBED_INPUT: safe})[0]
    embeds[0, 6 : 6 + n_img] = got[0]
    logits = run_teacher_forced(decoder, embeds, cfg.num_hidden_layers, cfg.num_key_value_heads,
                                cfg.head_dim, prefill=ids.shape[1] - 4)
    out["image_logits_max_diff"] = _max_diff(logits, ref_logits)
    out["image_top1_agreement"] = _agreement(logits, ref_logits)
    return out
