"""The ONNX graphs' contract: input/output names and shapes `export.onnx` writes and the
ONNX backend checks before it runs them (see `runtime.backends.onnx` for the graphs).

Every check compares a loaded `InferenceSession`'s declared inputs and outputs with the
manifest's shapes and raises `BundleError` naming the graph and the mismatch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from runtime.errors import BundleError
from runtime.manifest import ImagePreprocess, TextShape, VisionShape

# Graph I/O names: the contract between export.onnx and this backend.
EMBED_INPUT = "input_ids"
EMBED_OUTPUT = "inputs_embeds"
DECODER_EMBEDS = "inputs_embeds"
DECODER_MASK = "attention_mask"
DECODER_POSITIONS = "position_ids"
DECODER_LOGITS_INDEX = "logits_index"
DECODER_LOGITS = "logits"
VISION_INPUT = "pixel_values"
VISION_OUTPUT = "image_embeds"
KV_KINDS = ("key", "value")


def past_name(layer: int, kind: str) -> str:
    return f"past_key_values.{layer}.{kind}"


def present_name(layer: int, kind: str) -> str:
    return f"present.{layer}.{kind}"


def _check_arg(where: str, arg: Any, dims: Sequence[int | None], dtype: str) -> None:
    """`dims`: an int must match exactly, None accepts any (dynamic) size."""
    shape = list(arg.shape)
    ok = len(shape) == len(dims) and all(
        d is None or s == d for s, d in zip(shape, dims, strict=True)
    )
    if not ok:
        want = ["?" if d is None else d for d in dims]
        raise BundleError(f"{where}: {arg.name} has shape {shape}, manifest expects {want}")
    if arg.type != dtype:
        raise BundleError(f"{where}: {arg.name} is {arg.type}, expected {dtype}")


def _io(session: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    return ({a.name: a for a in session.get_inputs()}, {a.name: a for a in session.get_outputs()})


def _require(where: str, have: dict[str, Any], names: Sequence[str], kind: str) -> None:
    missing = [n for n in names if n not in have]
    extra = sorted(set(have) - set(names))
    if missing or extra:
        detail = []
        if missing:
            detail.append(f"missing {kind} {', '.join(missing[:4])}")
        if extra:
            detail.append(f"unexpected {kind} {', '.join(extra[:4])}")
        raise BundleError(f"{where}: graph does not match the manifest ({'; '.join(detail)})")


def check_decoder(where: str, session: Any, text: TextShape) -> None:
    ins, outs = _io(session)
    kv_names = [past_name(i, k) for i in range(text.num_layers) for k in KV_KINDS]
    out_kv = [present_name(i, k) for i in range(text.num_layers) for k in KV_KINDS]
    fixed = [DECODER_EMBEDS, DECODER_MASK, DECODER_POSITIONS, DECODER_LOGITS_INDEX]
    _require(where, ins, [*fixed, *kv_names], "input")
    _require(where, outs, [DECODER_LOGITS, *out_kv], "output")
    _check_arg(where, ins[DECODER_EMBEDS], [None, None, text.hidden_size], "tensor(float)")
    _check_arg(where, ins[DECODER_MASK], [None, None], "tensor(int64)")
    _check_arg(where, ins[DECODER_POSITIONS], [None, None], "tensor(int64)")
    _check_arg(where, ins[DECODER_LOGITS_INDEX], [None], "tensor(int64)")
    _check_arg(where, outs[DECODER_LOGITS], [None, None, text.vocab_size], "tensor(float)")
    kv = [None, text.num_kv_heads, None, text.head_dim]
    for name in kv_names:
        _check_arg(where, ins[name], kv, "tensor(float)")
    for name in out_kv:
        _check_arg(where, outs[name], kv, "tensor(float)")


def check_embed(where: str, session: Any, text: TextShape) -> None:
    ins, outs = _io(session)
    _require(where, ins, [EMBED_INPUT], "input")
    _require(where, outs, [EMBED_OUTPUT], "output")
    _check_arg(where, ins[EMBED_INPUT], [None, None], "tensor(int64)")
    _check_arg(where, outs[EMBED_OUTPUT], [None, None, text.hidden_size], "tensor(float)")
    # The table's row count is not in the graph's I/O: look up the last id once, so a
    # short table fails here and not halfway through a generation.
    try:
        last = np.array([[text.vocab_size - 1]], dtype=np.int64)
        session.run([EMBED_OUTPUT], {EMBED_INPUT: last})
    except Exception:
        raise BundleError(
            f"{where}: the embedding table has fewer than {text.vocab_size} rows"
        ) from None


def check_vision(
    where: str, session: Any, vision: VisionShape, image: ImagePreprocess, hidden: int
) -> None:
    if image.size != vision.image_size:
        raise BundleError(
            f"{where}: image size {image.size} != vision image_size {vision.image_size}"
        )
    ins, outs = _io(session)
    _require(where, ins, [VISION_INPUT], "input")
    _require(where, outs, [VISION_OUTPUT], "output")
    _check_arg(where, ins[VISION_INPUT], [None, 3, image.size, image.size], "tensor(float)")
    _check_arg(where, outs[VISION_OUTPUT], [None, vision.tokens_per_image, hidden], "tensor(float)")
