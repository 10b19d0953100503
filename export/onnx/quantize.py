"""Weight quantization of the exported float32 decoder with onnxruntime's quantizers.

- int8: `quantize_dynamic`, per-channel symmetric 7-bit weights (`reduce_range`, stored as
  int8 in [-64, 64]) for every MatMul with a constant weight (projections, MLP, lm_head);
  uint8 activations are quantized per call. Why 7 bits: onnxruntime multiplies u8
  activations by s8 weights, and on x86 CPUs without VNNI (AVX2, AVX-512 before Cascade
  Lake: MLAS's AVX2/AVX512Core kernels) it does so with `vpmaddubsw`, which adds each
  adjacent pair of products into a *saturating* int16. With 8-bit weights a pair reaches
  255 * 127 * 2 = 64770 > 32767 and the sum is clipped: the tiny test models' logit error
  went from 0.018 (VNNI, exact) to 0.107 of the logit RMS on such a CPU. With |w| <= 64 a
  pair is at most 255 * 64 * 2 = 32640: the saturating kernels compute the exact integers
  too (checked under emulation of an AVX2 CPU: 0.026 there and here), at the cost of one
  weight bit on every CPU (0.018 -> 0.026).
  docs/onnx.md has the measurements per configuration.
- int4: `MatMulNBits` (block-wise 4-bit weights, block 32, symmetric; accuracy_level 4 =
  int8 activations inside the kernel, the fast CPU path).
The KV cache, norms, rotary tables and attention stay float32.
"""

from __future__ import annotations

import logging
from pathlib import Path

from export.onnx.common import EXTERNAL_DATA_THRESHOLD

log = logging.getLogger(__name__)

INT4_BLOCK_SIZE = 32
INT4_ACCURACY_LEVEL = 4
# 7-bit int8 weights: no u8 x s8 pair sum can saturate int16 (see the module docstring)
INT8_REDUCE_RANGE = True


def _weight_bytes(path: Path) -> int:
    """Bytes of weights in an exported graph (the .onnx plus its external data)."""
    return sum(p.stat().st_size for p in path.parent.iterdir()
               if p.name == path.name or p.name.startswith(path.name + "."))


def quantize_decoder(src: Path, dst: Path, quant: str) -> None:
    """Write a `quant` copy of the float32 graph `src` to `dst`."""
    from onnxruntime.quantization import QuantType, quantize_dynamic  # heavy, optional: local

    size = _weight_bytes(src)
    if quant == "int8":
        external = size / 4 > EXTERNAL_DATA_THRESHOLD
        quantize_dynamic(
            src, dst, op_types_to_quantize=["MatMul"], per_channel=True, reduce_range=INT8_REDUCE_RANGE,
            weight_type=QuantType.QInt8, use_external_data_format=external,
            extra_options={"MatMulConstBOnly": True},
        )
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
