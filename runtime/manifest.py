"""The bundle manifest: the one contract between `export` and `runtime`.

Schema documented in docs/bundle-format.md. Everything here is plain data; loading
goes through `runtime.config_io.from_dict`, which rejects unknown keys and wrong types,
then `runtime.manifest_checks`, which checks references, bounds and shapes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from runtime.errors import BundleError

FORMAT_NAME = "extract-think-bundle"
FORMAT_VERSION = 2
# Version 2 added the optional ModelEntry fields chat_format, source_revision, source_files,
# source_layout and image_layout; a version-1 manifest is a version-2 one without them
# (single view, no pooling).
READABLE_FORMAT_VERSIONS = (1, 2)

BackendFormat = Literal["gguf", "onnx"]
Role = Literal["perception", "reasoner"]
# Prompt families the runtime builds (runtime.chat_format): Qwen3's ChatML with think tags,
# and plain ChatML (SmolLM2, Qwen2.5...: the same turns, no think block).
ChatFormatName = Literal["qwen3-chatml", "chatml"]

# Quantization names, owned here: the exporters make exactly these (a test exports every
# one), `edge export --quant`, profiles and manifests use them. Full precision is "f32" in
# GGUF and "fp32" in ONNX; ONNX also accepts "f32" (QUANT_ALIASES), so "f32" means full
# precision in every format.
GGUF_QUANTS: tuple[str, ...] = (
    "f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "q5_0", "q5_1", "q4_k_m", "q5_k_m", "q6_k",
)
ONNX_QUANTS: tuple[str, ...] = ("fp32", "int8", "int4")
ONNX_VISION_QUANTS: tuple[str, ...] = ("fp32", "int8")  # the onnx vision graph (`Artifact.vision_quant`)
# the file that makes an artifact a text model; an onnx artifact with only `vision` is a
# vision graph for `vision_backend="onnx"` beside the model's gguf text decoder
TEXT_PART = {"gguf": "model", "onnx": "decoder"}
QUANT_ALIASES: dict[str, dict[str, str]] = {"gguf": {}, "onnx": {"f32": "fp32"}}
# Every name a format accepts (its quants and their aliases), e.g. in a profile's list.
KNOWN_QUANTS: dict[str, tuple[str, ...]] = {
    "gguf": GGUF_QUANTS + tuple(QUANT_ALIASES["gguf"]),
    "onnx": ONNX_QUANTS + tuple(QUANT_ALIASES["onnx"]),
}


def canonical_quant(fmt: str, name: str) -> str | None:
    """The quant `name` stands for in format `fmt` (aliases resolved), None if unknown."""
    name = QUANT_ALIASES.get(fmt, {}).get(name, name)
    return name if name in {"gguf": GGUF_QUANTS, "onnx": ONNX_QUANTS}.get(fmt, ()) else None


@dataclass(frozen=True)
class FileEntry:
    size: int
    sha256: str


@dataclass(frozen=True)
class TextShape:
    """Decoder dimensions; the runtime checks loaded models against these."""

    hidden_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    intermediate_size: int
    vocab_size: int
    context_length: int
    rope_theta: float
    rms_norm_eps: float
    tie_word_embeddings: bool


@dataclass(frozen=True)
class VisionShape:
    image_size: int
    patch_size: int
    hidden_size: int
    num_layers: int  # layers actually run (the feature layer's depth)
    num_heads: int
    intermediate_size: int
    tokens_per_image: int
    projector: Literal["mlp2x_gelu"] = "mlp2x_gelu"


@dataclass(frozen=True)
class ImagePreprocess:
    """How pixels reach the vision encoder, exactly as training saw them."""

    size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    resample: Literal["bicubic", "bilinear"] = "bicubic"
    # "resize": stretch to size x size (SigLIP processor); "pad": pad to a square with
    # the mean colour first (LLaVA "pad" aspect mode), then resize.
    mode: Literal["resize", "pad"] = "resize"


@dataclass(frozen=True)
class ImageLayout:
    """How an image becomes image tokens (LLaVA-OneVision), after the vision encoder.

    `input_mode`: "single" (one view, `vision.tokens_per_image` tokens before pooling) or
    "anyres" (a base view + tiles from `pinpoints`, unpadded, shrunk past `max_tiles`
    tiles, `newline` after every row: see `runtime.anyres`). `pool`: bilinear pooling
    stride of each view's grid after the projector (1 none, 2: 27x27 -> 14x14, 3: -> 9x9).
    `pinpoints` ((width, height) px, checkpoint order), `max_tiles` and `newline` (a
    bundle-relative raw float32 file of `text.hidden_size` values) come from a converted
    paper checkpoint; a bundle that has them can run either mode.
    """

    input_mode: Literal["single", "anyres"] = "single"
    pool: int = 1
    pinpoints: tuple[tuple[int, int], ...] = ()
    max_tiles: int | None = None
    newline: str | None = None


@dataclass(frozen=True)
class SpecialTokens:
    """Ids of the tokens the runtime steers by (see runtime.chat_format.SPECIAL_ROLES)."""

    im_start: int
    im_end: int
    end_of_text: int
    think_start: int | None = None
    think_end: int | None = None
    image: int | None = None


@dataclass(frozen=True)
class Artifact:
    """One exported form of a model. `files` maps a part to a bundle-relative path.

    gguf parts: "model" (text decoder), "mmproj" (vision encoder + projector).
    onnx parts: "decoder" (inputs_embeds + KV cache -> logits), "embed" (ids -> embeds),
    "vision" (pixel_values -> image embeddings). `quant` is the text decoder's;
    `vision_quant` the onnx vision graph's ("fp32" or "int8"; None: no vision graph, or a
    manifest written before it was recorded, whose graph is float32).
    """

    format: BackendFormat
    quant: str
    files: dict[str, str]
    vision_quant: str | None = None


@dataclass(frozen=True)
class ModelEntry:
    role: Role
    # "llava-qwen3"/"qwen3": exported by this project; "gguf:<arch>": a GGUF file composed
    # as it is (`edge export compose`), <arch> its general.architecture.
    architecture: str
    text: TextShape
    tokenizer: str  # bundle-relative path of a tokenizer.json, or of the GGUF model whose vocabulary is used
    special_tokens: SpecialTokens
    artifacts: tuple[Artifact, ...]
    vision: VisionShape | None = None
    image: ImagePreprocess | None = None
    system_prompt: str | None = None
    source: str | None = None  # checkpoint folder or hub id it was exported from
    source_sha256: str | None = None  # hash of the source weights (parity checks)
    chat_format: ChatFormatName | None = None  # None: the manifest's chat_format
    source_revision: str | None = None  # hub sources: the resolved 40-hex commit
    source_files: dict[str, str] = field(default_factory=dict)  # source file -> sha256 (hub, compose)
    # "llava-onevision": the paper's released layout, converted on the fly before export
    source_layout: Literal["project", "llava-onevision", "gguf"] = "project"

    def prompt_format(self, default: str) -> str:
        return self.chat_format or default
    image_layout: ImageLayout | None = None  # None: single view, no pooling (version 1)


@dataclass(frozen=True)
class Budgets:
    """Default token budgets; edge presets are much smaller than the paper's 4096."""

    hint: int = 24
    extraction: int = 256
    thinking: int = 512
    answer: int = 64
    non_thinking_answer: int = 128


@dataclass(frozen=True)
class Provenance:
    tool: str
    tool_version: str
    created: str  # ISO 8601 UTC
    notes: str = ""


def example_options(example: dict[str, str]) -> tuple[str, ...]:
    """A manifest example's options: its "options" text, one per line (none for an open question)."""
    return tuple(o.strip() for o in example.get("options", "").split("\n") if o.strip())


@dataclass(frozen=True)
class Manifest:
    format: Literal["extract-think-bundle"]
    format_version: int
    name: str
    models: dict[str, ModelEntry]  # keyed by role
    files: dict[str, FileEntry]  # every file the bundle holds, bundle-relative
    provenance: Provenance
    budgets: Budgets = field(default_factory=Budgets)
    chat_format: ChatFormatName = "qwen3-chatml"
    examples: tuple[dict[str, str], ...] = ()  # {"image", "question", "answer"} demos

    def model(self, role: str) -> ModelEntry:
        try:
            return self.models[role]
        except KeyError:
            raise BundleError(f"bundle {self.name!r} has no {role} model") from None

    def formats(self) -> set[str]:
        return {a.format for m in self.models.values() for a in m.artifacts}
