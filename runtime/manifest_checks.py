"""What a parsed manifest must satisfy beyond its types, checked before any file is used.

`runtime.config_io.from_dict` guarantees the types (and finite numbers); this module
checks what types cannot say: every path stays inside the bundle and every model file
is listed; shapes are positive and within bounds no real model comes near (a
manifest is untrusted input: a 10^6-pixel `image.size` would make the runtime allocate a
10^6 x 10^6 image); the image preprocessing agrees with the vision encoder's shape
(`image.size` = `vision.image_size`, `tokens_per_image` = (image_size // patch_size)^2);
mean and std are usable (0 <= mean <= 1, std > 0: a std of 0 turns pixels into inf).
Every failure is a `BundleError` naming the field, e.g.
`manifest.json: models.perception.image.size 1000000 is outside 1..2048`.
"""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import PurePosixPath

from runtime.errors import BundleError
from runtime.manifest import (
    ONNX_VISION_QUANTS,
    TEXT_PART,
    Budgets,
    ImageLayout,
    ImagePreprocess,
    Manifest,
    ModelEntry,
    TextShape,
    VisionShape,
)

MAX_IMAGE_SIZE = 2048  # SigLIP-so400m takes 384; a 2048^2 RGB frame is 12 MB as uint8
MIN_STD, MAX_STD = 1e-3, 1e3  # real encoders use 0.2-0.5; std -> 0 makes pixels explode
MAX_FILE_BYTES = 1 << 44  # 16 TiB: a size beyond this is corruption, not a model
MAX_BUDGET = 1 << 20
MAX_POOL = 3  # LLaVA-OneVision's strides: 1 (none), 2 (27 -> 14), 3 (27 -> 9)
MAX_PINPOINTS = 1024  # the paper's anyres_max_9 has 36 (1x1 .. 6x6 tiles)
MAX_TILES_PER_SIDE = 64
_TEXT_BOUNDS = {  # upper bounds far above any real decoder (Qwen3-235B: 94 layers, 151,936 vocab)
    "hidden_size": 1 << 16, "num_layers": 1024, "num_heads": 1024, "num_kv_heads": 1024,
    "head_dim": 4096, "intermediate_size": 1 << 20, "vocab_size": 1 << 24, "context_length": 1 << 24,
}
_VISION_BOUNDS = {"hidden_size": 1 << 16, "num_layers": 1024, "num_heads": 1024, "intermediate_size": 1 << 20}
_SHA256 = re.compile(r"[0-9a-f]{64}")


def safe_relpath(rel: str) -> str:
    """Reject absolute paths, backslashes and '..' so a manifest cannot point outside."""
    p = PurePosixPath(rel)
    if not rel or p.is_absolute() or "\\" in rel or any(part in ("..", "") for part in p.parts):
        raise BundleError(f"manifest names an unsafe path: {ascii(rel)}")
    return str(p)


def check_manifest(m: Manifest, where: str = "manifest") -> None:
    """Raise `BundleError` (prefixed by `where`, the manifest's path) at the first problem."""
    for rel, entry in m.files.items():
        safe_relpath(rel)
        if not 0 <= entry.size <= MAX_FILE_BYTES:
            raise BundleError(f"{where}: files.{ascii(rel)}.size {entry.size} is not a plausible file size")
        if not _SHA256.fullmatch(entry.sha256):
            raise BundleError(f"{where}: files.{ascii(rel)}.sha256 is not 64 lowercase hex digits")
    for role, entry in m.models.items():
        _check_model(m, role, entry, f"{where}: models.{role}")
    _check_budgets(m.budgets, f"{where}: budgets")
    for i, example in enumerate(m.examples):
        image = example.get("image")
        if image is not None:
            try:
                safe_relpath(image)
            except BundleError:
                raise BundleError(f"{where}: examples[{i}].image names an unsafe path: {ascii(image)}") from None


PROJECT_ARCHITECTURES = ("llava-qwen3", "qwen3")
GGUF_ARCHITECTURE = re.compile(r"gguf:[a-z0-9][a-z0-9_.-]{0,63}")


def _check_model(m: Manifest, role: str, entry: ModelEntry, where: str) -> None:
    if entry.role != role:
        raise BundleError(f"{where} says its role is {entry.role!r}")
    if entry.tokenizer not in m.files:
        raise BundleError(f"{where}.tokenizer {ascii(entry.tokenizer)} is not in files")
    if entry.architecture not in PROJECT_ARCHITECTURES and not GGUF_ARCHITECTURE.fullmatch(entry.architecture):
        raise BundleError(f"{where}.architecture {ascii(entry.architecture)} is not one of "
                          f"{', '.join(PROJECT_ARCHITECTURES)} or gguf:<name>")
    if entry.architecture.startswith("gguf:") and any(a.format != "gguf" for a in entry.artifacts):
        raise BundleError(f"{where}: a composed GGUF model ({entry.architecture}) has only gguf artifacts")
    if entry.tokenizer.endswith(".gguf") and not entry.architecture.startswith("gguf:"):
        raise BundleError(f"{where}.tokenizer: only composed GGUF models (gguf:<name>) read their vocabulary "
                          "from a GGUF file")
    if not entry.artifacts:
        raise BundleError(f"{where} has no artifacts")
    if not any(TEXT_PART.get(a.format, "") in a.files for a in entry.artifacts):
        raise BundleError(f"{where} has no artifact with a text model (a gguf 'model' or an onnx 'decoder')")
    for i, art in enumerate(entry.artifacts):
        if art.vision_quant is not None and (art.format != "onnx" or "vision" not in art.files):
            raise BundleError(f"{where}.artifacts[{i}].vision_quant is set but it has no onnx vision graph")
        if art.vision_quant not in (None, *ONNX_VISION_QUANTS):
            raise BundleError(f"{where}.artifacts[{i}].vision_quant {ascii(art.vision_quant)} is not one of "
                              f"{', '.join(ONNX_VISION_QUANTS)}")
        for part, rel in art.files.items():
            if rel not in m.files:
                raise BundleError(f"{where}.artifacts[{i}] ({art.format}) {ascii(part)} file {ascii(rel)} "
                                  "is not in files")
    _check_text(entry.text, f"{where}.text")
    vocab = entry.text.vocab_size
    for f in fields(entry.special_tokens):
        tid = getattr(entry.special_tokens, f.name)
        if tid is not None and not 0 <= tid < vocab:
            raise BundleError(f"{where}.special_tokens.{f.name} {tid} is outside the vocabulary (0..{vocab - 1})")
    if (entry.vision is None) != (entry.image is None):
        raise BundleError(f"{where} needs both 'vision' and 'image' or neither")
    if entry.vision is not None and entry.image is not None:
        _check_vision(entry.vision, f"{where}.vision")
        _check_image(entry.image, entry.vision, f"{where}.image")
    if entry.image_layout is not None:
        if m.format_version < 2:
            raise BundleError(f"{where}.image_layout needs format_version 2 (the manifest says {m.format_version})")
        if entry.vision is None:
            raise BundleError(f"{where}.image_layout is set but the model has no vision encoder")
        _check_layout(m, entry.image_layout, entry, f"{where}.image_layout")


def _in_range(value: int | float, lo: int | float, hi: int | float, what: str) -> None:
    if not lo <= value <= hi:
        raise BundleError(f"{what} {value} is outside {lo}..{hi}")


def _check_text(t: TextShape, where: str) -> None:
    for name, hi in _TEXT_BOUNDS.items():
        _in_range(getattr(t, name), 1, hi, f"{where}.{name}")
    if t.num_heads % t.num_kv_heads:
        raise BundleError(f"{where}: num_heads {t.num_heads} is not a multiple of num_kv_heads {t.num_kv_heads}")
    if t.rope_theta <= 0:
        raise BundleError(f"{where}.rope_theta {t.rope_theta} must be positive")
    if not 0 < t.rms_norm_eps < 1:
        raise BundleError(f"{where}.rms_norm_eps {t.rms_norm_eps} must be in (0, 1)")


def _check_vision(v: VisionShape, where: str) -> None:
    _in_range(v.image_size, 1, MAX_IMAGE_SIZE, f"{where}.image_size")
    _in_range(v.patch_size, 1, v.image_size, f"{where}.patch_size")
    for name, hi in _VISION_BOUNDS.items():
        _in_range(getattr(v, name), 1, hi, f"{where}.{name}")
    grid = v.image_size // v.patch_size
    if v.tokens_per_image != grid * grid:
        raise BundleError(f"{where}.tokens_per_image {v.tokens_per_image} does not match "
                          f"image_size {v.image_size} / patch_size {v.patch_size} ({grid}x{grid} = {grid * grid})")


def _check_image(img: ImagePreprocess, vision: VisionShape, where: str) -> None:
    _in_range(img.size, 1, MAX_IMAGE_SIZE, f"{where}.size")
    if img.size != vision.image_size:
        raise BundleError(f"{where}.size {img.size} differs from vision.image_size {vision.image_size} "
                          "(the encoder takes exactly that square)")
    for i, (mean, std) in enumerate(zip(img.mean, img.std, strict=True)):
        _in_range(mean, 0.0, 1.0, f"{where}.mean[{i}]")
        if not MIN_STD <= std <= MAX_STD:
            raise BundleError(f"{where}.std[{i}] {std} is outside {MIN_STD}..{MAX_STD:g} "
                              "(pixels are divided by it)")


def _check_layout(m: Manifest, lay: ImageLayout, entry: ModelEntry, where: str) -> None:
    _in_range(lay.pool, 1, MAX_POOL, f"{where}.pool")
    tile = entry.vision.image_size
    if len(lay.pinpoints) > MAX_PINPOINTS:
        raise BundleError(f"{where}.pinpoints has {len(lay.pinpoints)} entries, over {MAX_PINPOINTS}")
    for i, (w, h) in enumerate(lay.pinpoints):
        if not (0 < w <= tile * MAX_TILES_PER_SIDE and 0 < h <= tile * MAX_TILES_PER_SIDE) or w % tile or h % tile:
            raise BundleError(f"{where}.pinpoints[{i}] {w}x{h} is not a multiple of the {tile} px view "
                              f"(1..{MAX_TILES_PER_SIDE} views a side)")
    if lay.max_tiles is not None:
        _in_range(lay.max_tiles, 1, MAX_TILES_PER_SIDE ** 2, f"{where}.max_tiles")
    if lay.newline is not None:
        safe_relpath(lay.newline)
        if lay.newline not in m.files:
            raise BundleError(f"{where}.newline {ascii(lay.newline)} is not in files")
        want = entry.text.hidden_size * 4
        if m.files[lay.newline].size != want:
            raise BundleError(f"{where}.newline is {m.files[lay.newline].size} bytes, expected {want} "
                              f"(float32 x text.hidden_size {entry.text.hidden_size})")
    if lay.input_mode == "anyres" and (not lay.pinpoints or lay.newline is None):
        raise BundleError(f"{where}: input_mode anyres needs pinpoints and a newline file")


def _check_budgets(b: Budgets, where: str) -> None:
    for f in fields(b):
        _in_range(getattr(b, f.name), 0, MAX_BUDGET, f"{where}.{f.name}")
