"""GGUF files people already have -> a bundle (`edge export compose`).

Nothing is converted: each GGUF is hard-linked (or copied) into the bundle as it is and
described from its own header: architecture, shapes, vocabulary, special tokens and
context length from the text model; image size, mean and std from the mmproj, whose
projector output width must equal the text model's embedding width. The chat family is
recognised from `tokenizer.chat_template` by its markers (runtime.chat_family); no
template is ever compiled or rendered. A role not given comes from `--from`, an existing
bundle. The result is assembled under a temporary name, checked with the runtime's own
bundle checks, loaded once with llama.cpp, and only then renamed into place.
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
import shutil
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

from runtime.atomic import check_replaceable, is_empty_dir, staged_dir
from runtime.backends import backend_module
from runtime.backends.base import BackendOptions
from runtime.backends.gguf_file import GGUFInfo, read_gguf_info
from runtime.bundle import MANIFEST_NAME, open_bundle, read_manifest, sha256_file
from runtime.chat_family import detect_chat_family, require_built, special_vocab
from runtime.chat_format import CHAT_TEMPLATE
from runtime.config_io import save_json
from runtime.errors import BundleError, ConfigError
from runtime.gguf_constants import CLIP_ARCH, Keys, arch_key
from runtime.manifest import (
    FORMAT_NAME,
    FORMAT_VERSION,
    Artifact,
    Budgets,
    FileEntry,
    ImagePreprocess,
    Manifest,
    ModelEntry,
    Provenance,
    SpecialTokens,
    TextShape,
    VisionShape,
)
from runtime.progress import Progress

log = logging.getLogger(__name__)

# Projectors whose output mtmd hands over as one image chunk of (size/patch)^2 tokens
# with 1-D positions and a causal mask, which is how the runtime feeds image embeddings.
# Others (qwen2vl mergers: M-RoPE; gemma3: non-causal; idefics3, minicpmv: slicing) are refused.
SUPPORTED_PROJECTORS = ("mlp",)
TEXT_ARRAYS = frozenset({Keys.Tokenizer.LIST, Keys.Tokenizer.TOKEN_TYPE})
# general.file_type (llama_ftype) -> the manifest's quant name; the same values as
# export.gguf.quantize.QUANT_SPECS (a test checks), kept here so that composing needs
# neither torch nor the gguf package.
FTYPE_NAMES = {0: "f32", 1: "f16", 32: "bf16", 7: "q8_0", 2: "q4_0", 3: "q4_1", 8: "q5_0", 9: "q5_1",
               15: "q4_k_m", 17: "q5_k_m", 18: "q6_k"}


@dataclass(frozen=True)
class ComposeRequest:
    out: Path
    perception_gguf: Path | None = None
    mmproj: Path | None = None
    reasoner_gguf: Path | None = None
    from_bundle: Path | None = None  # where roles not given come from
    name: str | None = None
    chat_format: str | None = None  # family override for a GGUF without a chat template
    overwrite: bool = False
    check_load: bool = True  # load each composed model once with llama.cpp before publishing


def _need(info: GGUFInfo, key: str, where: Path) -> object:
    value = info.get(key)
    if value is None:
        raise BundleError(f"{where}: the GGUF has no {key}")
    return value


def _quant_name(info: GGUFInfo) -> str:
    ftype = info.get(Keys.General.FILE_TYPE)
    return FTYPE_NAMES.get(ftype, f"ftype{ftype}") if isinstance(ftype, int) else "unknown"


def text_shape_of(info: GGUFInfo, path: Path) -> TextShape:
    """The decoder's shape from a text GGUF's header (what llama.cpp itself reads)."""
    arch = str(_need(info, Keys.General.ARCHITECTURE, path))
    key = lambda k: arch_key(k, arch)  # noqa: E731
    hidden = int(_need(info, key(Keys.LLM.EMBEDDING_LENGTH), path))
    heads = int(_need(info, key(Keys.Attention.HEAD_COUNT), path))
    kv = info.get(key(Keys.Attention.HEAD_COUNT_KV), heads)
    ff = _need(info, key(Keys.LLM.FEED_FORWARD_LENGTH), path)
    n_vocab = len(_need(info, Keys.Tokenizer.LIST, path))
    return TextShape(
        hidden_size=hidden,
        num_layers=int(_need(info, key(Keys.LLM.BLOCK_COUNT), path)),
        num_heads=heads,
        num_kv_heads=int(max(kv) if isinstance(kv, list) else kv),
        head_dim=int(info.get(key(Keys.Attention.KEY_LENGTH), hidden // heads)),
        intermediate_size=int(max(ff) if isinstance(ff, list) else ff),
        vocab_size=n_vocab,
        context_length=int(_need(info, key(Keys.LLM.CONTEXT_LENGTH), path)),
        rope_theta=float(info.get(key(Keys.Rope.FREQ_BASE), 10000.0)),
        rms_norm_eps=float(info.get(key(Keys.Attention.LAYERNORM_RMS_EPS), 1e-6)),
        tie_word_embeddings=not any(t.name == "output.weight" for t in info.tensors),
    )


def describe_text(path: Path, role: str, override: str | None) -> tuple[ModelEntry, str]:
    """A ModelEntry (artifacts and files filled in later) for a text GGUF, and its chat format."""
    info = read_gguf_info(path, arrays=TEXT_ARRAYS)
    arch = info.get(Keys.General.ARCHITECTURE)
    if not isinstance(arch, str) or arch == CLIP_ARCH:
        raise BundleError(f"{path}: not a text model GGUF (architecture {arch!r})")
    tokens = _need(info, Keys.Tokenizer.LIST, path)
    specials = special_vocab(tokens, info.get(Keys.Tokenizer.TOKEN_TYPE))
    fam = detect_chat_family(info.get(Keys.Tokenizer.CHAT_TEMPLATE), specials, where=str(path), override=override)
    chat_format = require_built(fam, where=str(path))
    eos = info.get(Keys.Tokenizer.EOS_ID)
    end_of_text = specials.get("<|endoftext|>", eos if isinstance(eos, int) else specials["<|im_end|>"])
    special = SpecialTokens(
        im_start=specials["<|im_start|>"], im_end=specials["<|im_end|>"], end_of_text=end_of_text,
        think_start=specials.get("<think>") if fam.thinking else None,
        think_end=specials.get("</think>") if fam.thinking else None,
        image=specials.get("<|image_pad|>") if role == "perception" else None,
    )
    entry = ModelEntry(role=role, architecture=f"gguf:{arch}", text=text_shape_of(info, path), tokenizer="",
                       special_tokens=special, artifacts=(), chat_format=chat_format, source=str(path.resolve()),
                       source_layout="gguf")
    if role == "reasoner" and not fam.thinking:
        log.warning("%s: no <think>/</think> tokens in its vocabulary: the reasoner answers with thinking off",
                    path.name)
    return entry, _quant_name(info)


def describe_mmproj(path: Path, text: TextShape, text_path: Path, *, project_made: bool
                    ) -> tuple[VisionShape, ImagePreprocess]:
    """The vision shape and image preprocessing from an mmproj, checked against the text model.

    `project_made`: the text GGUF carries this project's chat template, so the pair was
    exported here and was trained on stretched images ("resize"); a stock LLaVA-style
    mlp projector saw images padded to a square with the mean colour ("pad")."""
    cv = Keys.ClipVision
    info = read_gguf_info(path, arrays={cv.IMAGE_MEAN, cv.IMAGE_STD})
    if info.get(Keys.General.ARCHITECTURE) != CLIP_ARCH or not info.get(Keys.Clip.HAS_VISION_ENCODER):
        raise BundleError(f"{path}: not a vision mmproj (architecture {info.get(Keys.General.ARCHITECTURE)!r}, "
                          "no vision encoder)")
    projector = info.get(Keys.Clip.PROJECTOR_TYPE) or ("mlp" if info.get(Keys.Clip.HAS_LLAVA_PROJECTOR) else None)
    if projector not in SUPPORTED_PROJECTORS:
        raise BundleError(f"{path}: projector type {projector!r} is not supported (the runtime feeds one image "
                          f"chunk with 1-D positions and a causal mask: {', '.join(SUPPORTED_PROJECTORS)})")
    width = info.get(cv.PROJECTION_DIM)
    if width is None:
        w2 = next((t for t in info.tensors if t.name == "mm.2.weight"), None)
        width = w2.shape[1] if w2 is not None and len(w2.shape) == 2 else None
    if width != text.hidden_size:
        raise BundleError(f"{path}: the projector outputs {width}-wide embeddings but {text_path.name} has "
                          f"embedding width {text.hidden_size}: they do not belong together")
    size, patch = int(_need(info, cv.IMAGE_SIZE, path)), int(_need(info, cv.PATCH_SIZE, path))
    mean, std = _need(info, cv.IMAGE_MEAN, path), _need(info, cv.IMAGE_STD, path)
    if len(mean) != 3 or len(std) != 3:
        raise BundleError(f"{path}: image mean/std must have 3 values each")
    vision = VisionShape(
        image_size=size, patch_size=patch, hidden_size=int(_need(info, cv.EMBEDDING_LENGTH, path)),
        num_layers=int(_need(info, cv.BLOCK_COUNT, path)),
        num_heads=int(_need(info, cv.Attention.HEAD_COUNT, path)),
        intermediate_size=int(_need(info, cv.FEED_FORWARD_LENGTH, path)),
        tokens_per_image=(size // patch) ** 2,
    )
    # The runtime brings the image to the encoder's exact square size itself; mtmd then
    # sees size x size pixels and does no resizing of its own.
    image = ImagePreprocess(size=size, mean=tuple(float(x) for x in mean), std=tuple(float(x) for x in std),
                            mode="resize" if project_made else "pad")
    return vision, image


def _project_made(path: Path) -> bool:
    return read_gguf_info(path).get(Keys.Tokenizer.CHAT_TEMPLATE) == CHAT_TEMPLATE


def place(src: Path, dst: Path) -> None:
    """Hard-link `src` to `dst` (same file system), else copy it."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def _check_inputs(req: ComposeRequest) -> None:
    if (req.perception_gguf is None) != (req.mmproj is None):
        raise ConfigError("--perception-gguf and --mmproj go together (the text model and its vision projector)")
    if req.perception_gguf is None and req.reasoner_gguf is None:
        raise ConfigError("nothing to compose: give --reasoner-gguf and/or --perception-gguf with --mmproj")
    for flag, p in (("--perception-gguf", req.perception_gguf), ("--mmproj", req.mmproj),
                    ("--reasoner-gguf", req.reasoner_gguf)):
        if p is not None and not Path(p).is_file():
            raise ConfigError(f"{flag} {p}: no such file")
    if req.from_bundle is not None and not Path(req.from_bundle).is_dir():
        raise ConfigError(f"--from {req.from_bundle}: not a bundle directory")


def compose_bundle(req: ComposeRequest, progress: Progress | None = None) -> Path:
    """Write the composed bundle at `req.out`; returns its path."""
    progress = progress or (lambda stage, frac: None)
    _check_inputs(req)
    out = Path(req.out).resolve()
    if out.exists() and not req.overwrite and not is_empty_dir(out):
        raise ConfigError(f"{out} already exists (use --force to replace it)")
    check_replaceable(out, marker=MANIFEST_NAME)
    base = read_manifest(req.from_bundle) if req.from_bundle is not None else None
    progress("read headers", 0.0)
    models: dict[str, ModelEntry] = {}
    placed: dict[str, Path] = {}  # bundle-relative name -> source file
    if req.perception_gguf is not None:
        entry, quant = describe_text(Path(req.perception_gguf), "perception", req.chat_format)
        vision, image = describe_mmproj(Path(req.mmproj), entry.text, Path(req.perception_gguf),
                                        project_made=_project_made(Path(req.perception_gguf)))
        files = {"model": "perception.gguf", "mmproj": "perception-mmproj.gguf"}
        placed.update({"perception.gguf": Path(req.perception_gguf), "perception-mmproj.gguf": Path(req.mmproj)})
        models["perception"] = replace(entry, tokenizer="perception.gguf", vision=vision, image=image,
                                       artifacts=(Artifact(format="gguf", quant=quant, files=files),))
    if req.reasoner_gguf is not None:
        entry, quant = describe_text(Path(req.reasoner_gguf), "reasoner", req.chat_format)
        placed["reasoner.gguf"] = Path(req.reasoner_gguf)
        models["reasoner"] = replace(entry, tokenizer="reasoner.gguf",
                                     artifacts=(Artifact(format="gguf", quant=quant, files={"model": "reasoner.gguf"}),))
    if base is not None:
        for role, entry in base.models.items():
            if role not in models:
                models[role] = replace(entry, chat_format=entry.chat_format or base.chat_format)
                for rel in (entry.tokenizer, *(r for a in entry.artifacts for r in a.files.values())):
                    placed[rel] = Path(req.from_bundle) / rel
        for ex in base.examples:
            if ex.get("image"):
                placed[ex["image"]] = Path(req.from_bundle) / ex["image"]
    with staged_dir(out, marker=MANIFEST_NAME) as tmp:
        for i, (rel, src) in enumerate(placed.items()):
            progress(f"place {rel}", 0.1 + 0.5 * i / len(placed))
            (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
            place(src, tmp / rel)
        progress("hash", 0.6)
        entries = {rel: FileEntry(size=(tmp / rel).stat().st_size, sha256=sha256_file(tmp / rel)) for rel in placed}
        for role, rel_names in (("perception", ("perception.gguf", "perception-mmproj.gguf")),
                                ("reasoner", ("reasoner.gguf",))):
            if role in models and models[role].source_layout == "gguf" and rel_names[0] in entries:
                models[role] = replace(models[role], source_files={Path(placed[r]).name: entries[r].sha256
                                                                  for r in rel_names})
        manifest = Manifest(
            format=FORMAT_NAME, format_version=FORMAT_VERSION, name=req.name or out.name,
            models={r: models[r] for r in ("perception", "reasoner") if r in models}, files=entries,
            provenance=Provenance(tool="edge export compose", tool_version=_version(),
                                  created=datetime.now(timezone.utc).isoformat(timespec="seconds")),
            budgets=base.budgets if base is not None else Budgets(),
            examples=base.examples if base is not None else (),
        )
        save_json(manifest, tmp / MANIFEST_NAME)
        open_bundle(tmp, verify="full")
        if req.check_load:
            progress("load check", 0.8)
            _load_check(tmp, [r for r in models if models[r].source_layout == "gguf"])
    progress("done", 1.0)
    return out


def _load_check(root: Path, roles: list[str]) -> None:
    """Load each composed model once with llama.cpp (text model, mmproj through mtmd) and
    check it against the manifest: what llama.cpp cannot load is refused here, by file."""
    bundle = open_bundle(root, verify="size")
    module = backend_module("llamacpp")
    for role in roles:
        entry = bundle.model(role)
        lm, vision = module.load(bundle, role, entry.artifacts[0],
                                 BackendOptions(threads=1, context_length=min(512, entry.text.context_length)))
        if vision is not None:
            vision.close()
        lm.close()


def _version() -> str:
    try:
        return importlib.metadata.version("extract-think-edge")
    except importlib.metadata.PackageNotFoundError:
        return "0+unknown"
