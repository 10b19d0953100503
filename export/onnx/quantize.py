"""Weight quantization of the exported float32 decoder with onnxruntime's quantizers.

- int8: `quantize_dynamic`, per-channel asymmetric uint8 weights for every MatMul with a
  constant weight (projections, MLP, lm_head); uint8 activations are quantized per call.
  Why uint8 and not the usual int8: onnxruntime multiplies u8 activations by s8 weights,
  and on x86 CPUs without VNNI (AVX2, AVX-512 before Cascade Lake: MLAS's AVX2/AVX512Core
  kernels) it does so with `vpmaddubsw`, which adds each adjacent pair of products into a
  *saturating* int16: 255 * 127 * 2 = 64770 > 32767, and the tiny test models' logit error
  went from 0.018 (exact, VNNI) to 0.107 of the logit RMS on such a CPU. u8 x u8 products
  are widened to 16 bits first on every x86 kernel (and use dot-product instructions on
  ARM), so every CPU computes the exact integers. 7-bit int8 weights (`reduce_range`) also
  avoid the saturation but cost one bit everywhere: 0.087 instead of 0.056 on a random
  Qwen3-0.6B-shape decoder, too close to the 0.10 gate. docs/onnx.md has the measurements.
- int4: `MatMulNBits` (block-wise 4-bit weights, block 32, symmetric; accuracy_level 4 =
  int8 activations inside the kernel, the fast CPU path).
The KV cache, norms, rotary tables and attention stay float32.

The vision graph (SigLIP tower + projector) can be int8 too (`quantize_vision`, `edge export
--vision-quant int8`): per-channel weights for every MatMul with a constant weight (attention
projections, MLP, projector); the patch convolution, the position embeddings, the norms and
the attention products stay float32. Two weight layouts (`VISION_LAYOUTS`):
- "s7" (first choice): signed weights in 7 bits (`reduce_range`). onnxruntime runs u8 x s8
  with its fast kernels (VNNI `vpdpbusd` where the CPU has it), and 7 bits keep every
  adjacent pair's int16 sum below saturation on CPUs without VNNI (the verifier's pair gate).
  Measured on a random SigLIP-so400m tower at 384 px, 2 threads of an AVX-512 VNNI CPU:
  0.71 s per image against 2.15 s for uint8 weights (3.0x), rel L2 0.043 off float32;
- "u8": uint8 weights as in the decoders, rel L2 0.025 there: exact integers on every CPU
  but no u8 x u8 fast kernel on x86. The exporter falls back to it when the 7-bit graph is
  outside the embedding bounds (`export.onnx.export_onnx`).
"""

from __future__ import annotations

import logging
from pathlib import Path

from export.onnx.common import EXTERNAL_DATA_THRESHOLD

log = logging.getLogger(__name__)

INT4_BLOCK_SIZE = 32
INT4_ACCURACY_LEVEL = 4
# uint8 weights: no u8 x s8 kernel, so no int16 saturation on any CPU (module docstring)
INT8_WEIGHT_TYPE = "QUInt8"


def _weight_bytes(path: Path) -> int:
    """Bytes of weights in an exported graph (the .onnx plus its external data)."""
    return sum(p.stat().st_size for p in path.parent.iterdir()
               if p.name == path.name or p.name.startswith(path.name + "."))


def quantize_decoder(src: Path, dst: Path, quant: str) -> None:
    """Write a `quant` copy of the float32 graph `src` to `dst`."""
    size = _weight_bytes(src)
    if quant == "int8":
        _int8(src, dst, external=size / 4 > EXTERNAL_DATA_THRESHOLD)
    elif quant == "int4":
        from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

        external = size / 6 > EXTERNAL_DATA_THRESHOLD
        quantizer = MatMulNBitsQuantizer(
            str(src), bits=4, block_size=INT4_BLOCK_SIZE, is_symmetric=True,
            accuracy_level=INT4_ACCURACY_LEVEL, op_types_to_quantize=("MatMul",),
        )
        quantizer.process()
        quantizer.model.save_model_to_file(str(dst), use_external_data_format=external)
    else:
        raise ValueError(f"no quantizer for {quant!r}")
    log.info("quantized %s -> %s (%s)", src.name, dst.name, quant)


# vision weight layout -> (onnxruntime QuantType name, reduce_range); first choice first
VISION_LAYOUTS: dict[str, tuple[str, bool]] = {"s7": ("QInt8", True), "u8": (INT8_WEIGHT_TYPE, False)}


def quantize_vision(src: Path, dst: Path, layout: str = "s7") -> None:
    """Write an int8 copy of the float32 vision graph `src` to `dst` with the weight
    `layout` of `VISION_LAYOUTS` (module docstring)."""
    weight_type, reduce_range = VISION_LAYOUTS[layout]
    _int8(src, dst, external=_weight_bytes(src) / 4 > EXTERNAL_DATA_THRESHOLD,
          weight_type=weight_type, reduce_range=reduce_range)
    log.info("quantized %s -> %s (int8, %s weights)", src.name, dst.name, layout)


def _int8(src: Path, dst: Path, *, external: bool, weight_type: str = INT8_WEIGHT_TYPE,
          reduce_range: bool = False) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic  # heavy, optional: local

    quantize_dynamic(
        src, dst, op_types_to_quantize=["MatMul"], per_channel=True, reduce_range=reduce_range,
        weight_type=QuantType[weight_type], use_external_data_format=external,
        extra_options={"MatMulConstBOnly": True},
    )
