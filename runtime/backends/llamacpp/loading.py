"""Loading GGUF files (alone, or a bundle's artifact checked against its manifest)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from runtime.backends.base import BackendOptions
from runtime.backends.gguf_file import GGUFInfo, read_gguf_info
from runtime.backends.llamacpp.language_model import LlamaCppLanguageModel
from runtime.backends.llamacpp.library import llama_lib
from runtime.backends.llamacpp.native_model import NativeModel
from runtime.backends.llamacpp.vision import MtmdVisionEncoder
from runtime.bundle import Bundle
from runtime.chat_format import SPECIAL_ROLES
from runtime.errors import BundleError, ConfigError
from runtime.gguf_constants import QWEN3_ARCH, Keys
from runtime.manifest import Artifact, ModelEntry
from runtime.threads import default_threads

DEFAULT_CONTEXT = 4096  # for stock GGUFs (no manifest): llama.cpp's default would be n_ctx_train


def load_gguf(
    model_path: str | os.PathLike[str],
    mmproj_path: str | os.PathLike[str] | None = None,
    options: BackendOptions | None = None,
    *,
    image_size: int | None = None,
) -> tuple[LlamaCppLanguageModel, MtmdVisionEncoder | None]:
    """Load a GGUF text model (and optionally its mmproj) outside of a bundle.

    Without `options.context_length` the context is min(4096, the model's trained length).
    `image_size` (else the mmproj's) is the exact square size `encode` accepts.
    """
    options = options or BackendOptions()
    threads = options.threads or default_threads()
    model = NativeModel(Path(model_path), options.gpu_layers)
    try:
        n_train = int(llama_lib()[0].llama_model_n_ctx_train(model.ptr))
        n_ctx = options.context_length or min(DEFAULT_CONTEXT, n_train)
        lm = LlamaCppLanguageModel(model, n_ctx=n_ctx, threads=threads, kv_cache_type=options.kv_cache_type)
    finally:
        model.release()  # the LM holds its own reference now (or loading failed)
    vision = None
    if mmproj_path is not None:
        try:
            vision = MtmdVisionEncoder(lm._model, Path(mmproj_path), threads=threads,
                                       use_gpu=options.gpu_layers != 0, image_size=image_size)
        except BaseException:
            lm.close()
            raise
    return lm, vision


def load(
    bundle: Bundle, role: str, artifact: Artifact, options: BackendOptions
) -> tuple[LlamaCppLanguageModel, MtmdVisionEncoder | None]:
    """Load `role`'s GGUF artifact from a checked bundle and verify it against the manifest."""
    entry = bundle.model(role)
    if artifact.format != "gguf":
        raise BundleError(f"the llama.cpp backend loads gguf artifacts, not {artifact.format}")
    if "model" not in artifact.files:
        raise BundleError(f"the {role} gguf artifact has no 'model' file")
    # another backend runs the vision graph (runtime.backends.load_model): no mmproj here
    own_vision = entry.vision is not None and options.runs_vision("llamacpp")
    if own_vision and "mmproj" not in artifact.files:
        raise BundleError(f"the {role} gguf artifact has no 'mmproj' file for its vision encoder")
    ctx_len = options.context_length or entry.text.context_length
    if ctx_len > entry.text.context_length:
        raise ConfigError(
            f"context length {ctx_len} exceeds the {role} model's trained {entry.text.context_length}"
        )
    opts = BackendOptions(threads=options.threads, context_length=ctx_len, gpu_layers=options.gpu_layers,
                          providers=options.providers, kv_cache_type=options.kv_cache_type)
    mmproj = bundle.path(artifact.files["mmproj"]) if own_vision else None
    if mmproj is not None:
        # From the header, before native code: the vision encoder sizes its buffers by the
        # image size, so a manifest that disagrees with the mmproj must stop here.
        cv = Keys.ClipVision
        check_mmproj(read_gguf_info(mmproj, arrays={cv.IMAGE_MEAN, cv.IMAGE_STD}), entry, role)
    image_size = entry.vision.image_size if own_vision else None
    # a composed model's vocabulary is its own GGUF's (nothing to compare)
    tokenizer_size = 0 if entry.tokenizer.endswith(".gguf") else _tokenizer_size(bundle.path(entry.tokenizer))
    lm, vision = load_gguf(bundle.path(artifact.files["model"]), mmproj, opts, image_size=image_size)
    try:
        check_against_manifest(lm, vision, entry, role)
        if lm.n_vocab < tokenizer_size:
            raise BundleError(
                f"the {role} GGUF has {lm.n_vocab} vocabulary rows but the bundle tokenizer "
                f"defines {tokenizer_size} ids"
            )
    except BaseException:
        if vision is not None:
            vision.close()
        lm.close()
        raise
    return lm, vision


def _tokenizer_size(path: Path) -> int:
    """Highest id + 1 in a tokenizer.json (BPE ranks and added tokens)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        ids = list((data.get("model") or {}).get("vocab", {}).values())
        ids += [t["id"] for t in data.get("added_tokens", [])]
        return max(int(i) for i in ids) + 1 if ids else 0
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise BundleError(f"{path}: not a readable tokenizer.json ({exc})") from None


def check_against_manifest(lm: LlamaCppLanguageModel, vision: MtmdVisionEncoder | None,
                           entry: ModelEntry, role: str) -> None:
    """Raise BundleError when the loaded files do not have the manifest's shapes."""
    llama = llama_lib()[0]
    m = lm._model
    t = entry.text
    arch = m.meta(Keys.General.ARCHITECTURE)
    got = {
        "architecture": arch,
        "hidden_size": m.n_embd,
        "num_layers": int(llama.llama_model_n_layer(m.ptr)),
        "num_heads": int(llama.llama_model_n_head(m.ptr)),
        "num_kv_heads": int(llama.llama_model_n_head_kv(m.ptr)),
        "vocab_size": m.n_vocab,
        "context_length": int(llama.llama_model_n_ctx_train(m.ptr)),
    }
    composed = entry.architecture.startswith("gguf:")
    want = {"architecture": entry.architecture[len("gguf:"):] if composed else QWEN3_ARCH, "hidden_size": t.hidden_size, "num_layers": t.num_layers,
            "num_heads": t.num_heads, "num_kv_heads": t.num_kv_heads, "vocab_size": t.vocab_size,
            "context_length": t.context_length}
    bad = [f"{k} {got[k]} != {want[k]}" for k in want if got[k] != want[k]]
    if bad:
        raise BundleError(f"the {role} GGUF does not match the manifest: {', '.join(bad)}")
    for name, tid in vars(entry.special_tokens).items():
        if tid is None:
            continue
        if not 0 <= tid < m.n_vocab:
            raise BundleError(f"the manifest's {name} id {tid} is outside the GGUF vocabulary ({m.n_vocab})")
        text = llama.llama_vocab_get_text(m.vocab, tid).decode("utf-8", errors="replace")
        # a composed ChatML model without <|endoftext|> ends text with its own EOS token
        if name in SPECIAL_ROLES and text != SPECIAL_ROLES[name] and not (composed and name == "end_of_text"):
            raise BundleError(
                f"the manifest's {name} id {tid} is {text!r} in the GGUF vocabulary "
                "(tokenizer and model do not belong together)"
            )
    if vision is not None and vision.tokens_per_image != entry.vision.tokens_per_image:
        raise BundleError(
            f"the mmproj makes {vision.tokens_per_image} tokens per image, the manifest says "
            f"{entry.vision.tokens_per_image}"
        )


def check_mmproj(info: GGUFInfo, entry: ModelEntry, role: str) -> None:
    """Raise BundleError when an mmproj's header disagrees with the manifest's vision shape
    or image preprocessing (the image size on both, mean and std)."""
    v, pre, t = entry.vision, entry.image, entry.text
    cv = Keys.ClipVision
    checks = {
        "image_size": (info.get(cv.IMAGE_SIZE), v.image_size),
        "patch_size": (info.get(cv.PATCH_SIZE), v.patch_size),
        "hidden_size": (info.get(cv.EMBEDDING_LENGTH), v.hidden_size),
        "num_layers": (info.get(cv.BLOCK_COUNT), v.num_layers),
        "projection_dim": (info.get(cv.PROJECTION_DIM), t.hidden_size),
    }
    if pre is not None:
        checks["image.size"] = (info.get(cv.IMAGE_SIZE), pre.size)
    bad = [f"{k} {a} != {b}" for k, (a, b) in checks.items() if a != b]
    mean, std = info.get(cv.IMAGE_MEAN), info.get(cv.IMAGE_STD)
    if pre is not None and (mean is None or std is None
                            or not np.allclose(mean, pre.mean, atol=1e-6) or not np.allclose(std, pre.std, atol=1e-6)):
        bad.append(f"mean/std {mean}/{std} != {list(pre.mean)}/{list(pre.std)}")
    if bad:
        raise BundleError(f"the {role} mmproj does not match the manifest: {', '.join(bad)}")
