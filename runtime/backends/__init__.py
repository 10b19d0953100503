"""Backend factory: a bundle artifact's format -> the backend module that runs it.

Backends are imported only when used, and their libraries only inside them, so
`import runtime` works with neither llama_cpp nor onnxruntime installed; asking for a
backend whose library is missing raises `BackendUnavailableError` naming the extra.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from collections.abc import Mapping
from types import ModuleType

from runtime.errors import BackendUnavailableError, BundleError, InputError
from runtime.manifest import TEXT_PART

# backend name -> (bundle format, python library, human name, pip extra)
BACKENDS: dict[str, tuple[str, str, str, str]] = {
    "llamacpp": ("gguf", "llama_cpp", "llama.cpp", "llamacpp"),
    "onnx": ("onnx", "onnxruntime", "onnxruntime", "onnx"),
}
FORMAT_BACKEND = {fmt: name for name, (fmt, *_rest) in BACKENDS.items()}
AUTO_ORDER = ("llamacpp", "onnx")  # llama.cpp first: mmapped weights, fastest on CPUs
# backends that can run a model's vision graph beside a text model on another backend
VISION_BACKENDS = ("onnx",)


def library_installed(backend: str) -> bool:
    """Whether the backend's library can be imported (without importing it)."""
    lib = BACKENDS[backend][1]
    if lib in sys.modules:
        return sys.modules[lib] is not None
    try:
        return importlib.util.find_spec(lib) is not None
    except (ImportError, ValueError):
        return False


def require(backend: str) -> None:
    if backend not in BACKENDS:
        raise InputError(f"unknown backend {backend!r} (choose from auto, {', '.join(BACKENDS)})")
    _, lib, human, extra = BACKENDS[backend]
    if not library_installed(backend):
        raise BackendUnavailableError(human, extra, f"python module {lib!r} not found")


def backend_module(backend: str) -> ModuleType:
    require(backend)
    try:
        return importlib.import_module(f"runtime.backends.{backend}")
    except ImportError as exc:
        _, lib, human, extra = BACKENDS[backend]
        raise BackendUnavailableError(human, extra, str(exc)) from None


_QUANT_ALIASES = {"fp32": "f32", "fp16": "f16"}  # ONNX and GGUF spell full precision differently


def _same_quant(a: str, b: str) -> bool:
    a, b = a.lower(), b.lower()
    return _QUANT_ALIASES.get(a, a) == _QUANT_ALIASES.get(b, b)


def choose_artifact(bundle, role: str, backend: str = "auto", quant: str | None = None):
    """(backend name, Artifact) for `role`: the requested backend, or the first installed one."""
    entry = bundle.model(role)
    # a vision-only artifact (an onnx `vision` graph beside gguf text) never runs the text
    runnable = [a for a in entry.artifacts if TEXT_PART.get(a.format, "") in a.files]
    have = ", ".join(f"{a.format}/{a.quant}" for a in runnable)
    if backend != "auto":
        if backend not in BACKENDS:
            raise InputError(f"unknown backend {backend!r} (choose from auto, {', '.join(BACKENDS)})")
        fmt = BACKENDS[backend][0]
        matching = [a for a in runnable if a.format == fmt and (quant is None or _same_quant(a.quant, quant))]
        if not matching:
            want = "/".join(x for x in (fmt, quant) if x)
            raise BundleError(f"bundle has no {want} artifact for the {role} model (has: {have})")
        require(backend)
        return backend, matching[0]
    candidates = [a for a in runnable if quant is None or _same_quant(a.quant, quant)]
    if not candidates:
        raise BundleError(f"bundle has no {quant} artifact for the {role} model (has: {have})")
    for name in AUTO_ORDER:
        fmt = BACKENDS[name][0]
        for art in candidates:
            if art.format == fmt and library_installed(name):
                return name, art
    # Nothing runnable: name the backend the bundle would need.
    require(FORMAT_BACKEND[candidates[0].format])
    raise BundleError(f"no runnable artifact for the {role} model (has: {have})")  # pragma: no cover


def artifact_id(bundle, role: str, artifact, vision=None) -> str:
    """Stable identity of an artifact's weights (cache keys): hash of its files' hashes;
    `vision`: the artifact whose vision graph runs beside it (another backend's)."""
    h = hashlib.sha256(f"{role}:{artifact.format}:{artifact.quant}".encode())
    for part in sorted(artifact.files):
        rel = artifact.files[part]
        h.update(f"{part}={bundle.manifest.files[rel].sha256}".encode())
    if vision is not None:
        h.update(f"vision:{vision.format}:{bundle.manifest.files[vision.files['vision']].sha256}".encode())
    return h.hexdigest()[:32]


def separate_vision(bundle, role: str, backend: str, options) -> bool:
    """Whether `role`'s vision encoder runs on another backend than its text model."""
    vb = options.vision_backend
    if vb is not None and vb not in VISION_BACKENDS and vb != backend:
        raise InputError(f"the vision encoder runs on {backend} or on {', '.join(VISION_BACKENDS)}, not {vb!r}")
    return not options.runs_vision(backend) and bundle.model(role).vision is not None


def vision_artifact(bundle, role: str, vision_backend: str):
    """The artifact of `role` holding a vision graph for `vision_backend` (its first)."""
    fmt = BACKENDS[vision_backend][0]
    for art in bundle.model(role).artifacts:
        if art.format == fmt and "vision" in art.files:
            require(vision_backend)
            return art
    raise BundleError(f"the bundle has no {fmt} vision graph for the {role} model, so its vision encoder "
                      f"cannot run on {vision_backend} (export with --format both)")


def load_model(bundle, role: str, backend: str, artifact, options):
    """Load (LanguageModel, VisionEncoder | None) and check them against the manifest.

    With `options.vision_backend` naming another backend, the text model comes from
    `artifact` and the vision encoder from that backend's vision graph of the same model
    (the embeddings are numpy either way: `runtime.stages.vision_stage` feeds them)."""
    module = backend_module(backend)
    split = separate_vision(bundle, role, backend, options)
    vart = vision_artifact(bundle, role, options.vision_backend) if split else None
    lm, vision = module.load(bundle, role, artifact, options)
    entry = bundle.model(role)
    try:
        if vart is not None:
            vision = backend_module(options.vision_backend).load_vision(bundle, role, vart, options)
        check_loaded(entry, lm, vision)
    except BaseException:
        lm.close()
        if vision is not None:
            vision.close()
        raise
    return lm, vision


def check_loaded(entry, lm, vision) -> None:
    if lm.n_vocab != entry.text.vocab_size:
        raise BundleError(
            f"the {entry.role} model has {lm.n_vocab} vocabulary rows but the manifest says "
            f"{entry.text.vocab_size} (mismatched shapes)"
        )
    if entry.vision is not None:
        if vision is None:
            raise BundleError(f"the {entry.role} artifact has no vision encoder")
        if vision.tokens_per_image != entry.vision.tokens_per_image:
            raise BundleError(
                f"the {entry.role} vision encoder makes {vision.tokens_per_image} tokens per image "
                f"but the manifest says {entry.vision.tokens_per_image} (mismatched shapes)"
            )


def installed_backends() -> Mapping[str, bool]:
    return {name: library_installed(name) for name in BACKENDS}
