"""GGUF names and numbers, each written once: the metadata keys and value types our writer
(`export.gguf`) puts in a file, and the ones our reader (`runtime.backends.gguf_file`) and
the llama.cpp backend look for.

Plain data, no numpy and no `gguf` import, so the torch-free runtime can use it. The
layout and names follow gguf-py's `gguf.constants` (`Keys.General.ARCHITECTURE`,
`Keys.ClipVision.IMAGE_SIZE`, `GGUFValueType.UINT32`...), and a test checks every name
here against that package where it has the same one. Keys with `{arch}` are per
architecture: `Keys.LLM.CONTEXT_LENGTH.format(arch=QWEN3_ARCH)`.
"""

from __future__ import annotations

from enum import IntEnum

QWEN3_ARCH = "qwen3"  # general.architecture of a Qwen3 text model
CLIP_ARCH = "clip"  # general.architecture of an mmproj (vision encoder + projector)
MLP_PROJECTOR = "mlp"  # clip.projector_type of the LLaVA 2-layer GELU projector
GPT2_TOKENIZER = "gpt2"  # tokenizer.ggml.model: byte-level BPE
QWEN2_PRE_TOKENIZER = "qwen2"  # tokenizer.ggml.pre: Qwen2/Qwen3's split regex


class Keys:
    """Metadata keys, grouped as in gguf-py."""

    class General:
        ARCHITECTURE = "general.architecture"
        NAME = "general.name"
        ALIGNMENT = "general.alignment"
        FILE_TYPE = "general.file_type"
        QUANTIZATION_VERSION = "general.quantization_version"

    class LLM:
        VOCAB_SIZE = "{arch}.vocab_size"
        CONTEXT_LENGTH = "{arch}.context_length"
        EMBEDDING_LENGTH = "{arch}.embedding_length"
        BLOCK_COUNT = "{arch}.block_count"
        FEED_FORWARD_LENGTH = "{arch}.feed_forward_length"

    class Attention:
        HEAD_COUNT = "{arch}.attention.head_count"
        HEAD_COUNT_KV = "{arch}.attention.head_count_kv"
        LAYERNORM_RMS_EPS = "{arch}.attention.layer_norm_rms_epsilon"
        KEY_LENGTH = "{arch}.attention.key_length"
        VALUE_LENGTH = "{arch}.attention.value_length"

    class Rope:
        FREQ_BASE = "{arch}.rope.freq_base"

    class Tokenizer:
        MODEL = "tokenizer.ggml.model"
        PRE = "tokenizer.ggml.pre"
        LIST = "tokenizer.ggml.tokens"
        TOKEN_TYPE = "tokenizer.ggml.token_type"
        MERGES = "tokenizer.ggml.merges"
        BOS_ID = "tokenizer.ggml.bos_token_id"
        EOS_ID = "tokenizer.ggml.eos_token_id"
        PAD_ID = "tokenizer.ggml.padding_token_id"
        ADD_BOS = "tokenizer.ggml.add_bos_token"
        CHAT_TEMPLATE = "tokenizer.chat_template"

    class Clip:
        HAS_VISION_ENCODER = "clip.has_vision_encoder"
        HAS_LLAVA_PROJECTOR = "clip.has_llava_projector"
        PROJECTOR_TYPE = "clip.projector_type"

    class ClipVision:
        IMAGE_SIZE = "clip.vision.image_size"
        PATCH_SIZE = "clip.vision.patch_size"
        EMBEDDING_LENGTH = "clip.vision.embedding_length"
        FEED_FORWARD_LENGTH = "clip.vision.feed_forward_length"
        BLOCK_COUNT = "clip.vision.block_count"
        PROJECTION_DIM = "clip.vision.projection_dim"
        IMAGE_MEAN = "clip.vision.image_mean"
        IMAGE_STD = "clip.vision.image_std"
        USE_GELU = "clip.use_gelu"  # gguf-py files it under ClipVision although it has no ".vision"
        # Not in gguf-py's Keys (llama.cpp's clip loader reads it by this name): the vision
        # layers whose output the projector takes.
        FEATURE_LAYER = "clip.vision.feature_layer"

        class Attention:
            HEAD_COUNT = "clip.vision.attention.head_count"
            LAYERNORM_EPS = "clip.vision.attention.layer_norm_epsilon"


def arch_key(key: str, arch: str) -> str:
    """A per-architecture key with its architecture filled in."""
    return key.format(arch=arch)


class GGUFValueType(IntEnum):
    """The type id stored before every metadata value."""

    UINT8 = 0
    INT8 = 1
    UINT16 = 2
    INT16 = 3
    UINT32 = 4
    INT32 = 5
    FLOAT32 = 6
    BOOL = 7
    STRING = 8
    ARRAY = 9
    UINT64 = 10
    INT64 = 11
    FLOAT64 = 12


# Little-endian struct format and size of each scalar value type.
SCALAR_FORMATS: dict[GGUFValueType, tuple[str, int]] = {
    GGUFValueType.UINT8: ("<B", 1), GGUFValueType.INT8: ("<b", 1),
    GGUFValueType.UINT16: ("<H", 2), GGUFValueType.INT16: ("<h", 2),
    GGUFValueType.UINT32: ("<I", 4), GGUFValueType.INT32: ("<i", 4),
    GGUFValueType.FLOAT32: ("<f", 4), GGUFValueType.BOOL: ("<?", 1),
    GGUFValueType.UINT64: ("<Q", 8), GGUFValueType.INT64: ("<q", 8),
    GGUFValueType.FLOAT64: ("<d", 8),
}


class GGMLType(IntEnum):
    """Tensor (and KV-cache) element types, as gguf-py's `GGMLQuantizationType`: the ones a
    model file can hold (Q8_1 and Q8_K are llama.cpp's internal activation types)."""

    F32 = 0
    F16 = 1
    Q4_0 = 2
    Q4_1 = 3
    Q5_0 = 6
    Q5_1 = 7
    Q8_0 = 8
    Q2_K = 10
    Q3_K = 11
    Q4_K = 12
    Q5_K = 13
    Q6_K = 14
    I8 = 24
    I16 = 25
    I32 = 26
    I64 = 27
    F64 = 28
    BF16 = 30


# (elements per block, bytes per block) of each type above: enough to bounds-check a
# tensor's data before native code reads it.
GGML_BLOCK_SIZES: dict[GGMLType, tuple[int, int]] = {
    GGMLType.F32: (1, 4), GGMLType.F16: (1, 2), GGMLType.Q4_0: (32, 18), GGMLType.Q4_1: (32, 20),
    GGMLType.Q5_0: (32, 22), GGMLType.Q5_1: (32, 24), GGMLType.Q8_0: (32, 34),
    GGMLType.Q2_K: (256, 84), GGMLType.Q3_K: (256, 110), GGMLType.Q4_K: (256, 144),
    GGMLType.Q5_K: (256, 176), GGMLType.Q6_K: (256, 210),
    GGMLType.I8: (1, 1), GGMLType.I16: (1, 2), GGMLType.I32: (1, 4), GGMLType.I64: (1, 8),
    GGMLType.F64: (1, 8), GGMLType.BF16: (1, 2),
}


class TokenType(IntEnum):
    """`tokenizer.ggml.token_type` values."""

    NORMAL = 1
    UNKNOWN = 2
    CONTROL = 3
    USER_DEFINED = 4
    UNUSED = 5
    BYTE = 6
