"""Weight quantization of the exported float32 decoder with onnxruntime's quantizers.

- int8: `quantize_dynamic`, per-channel symmetric int8 weights for every MatMul with a
  constant weight (projections, MLP, lm_head); activations are quantized on the fly.
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


def _weight_bytes(path: Path) -> int:
    """Bytes of weights in an exported graph (the .onnx plus its external data)."""
    return sum(p.stat().st_size for p in path.parent.iterdir()
               if p.name == path.name or p.name.startswith(path.name + "."))


def quantize_decoder(src: Path, dst: Path, quant: str) -> None:
    """Write a `quant` copy of the float32 graph `src` to `dst`."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    size = _weight_bytes(src)
    if quant == "int8":
        external = size / 4 > EXTERNAL_DATA_THRESHOLD
        quantize_dynamic(
            src, dst, op_types_to_quantize=["MatMul"], per_channel=True,
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
