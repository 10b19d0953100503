"""Which backend, format and quantization a profile runs from a given bundle.

A profile lists backends and quantizations in order of preference; a bundle holds some
formats and quantizations per model. The choice is the first preferred backend whose
format every model in the bundle has (and, when asked, whose library is installed), with
each model's first preferred quantization present. `edge pack`, `edge doctor`, `edge demo`
and `edge watch` all choose through here, so they agree.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
from collections.abc import Collection
from dataclasses import dataclass

from edge.profiles import FORMAT_OF, DeviceProfile
from runtime.errors import BackendUnavailableError, BundleError, ConfigError
from runtime.manifest import Manifest

# backend -> (python module, pip distribution, pyproject extra)
BACKEND_LIBRARIES: dict[str, tuple[str, str, str]] = {
    "llamacpp": ("llama_cpp", "llama-cpp-python", "llamacpp"),
    "onnx": ("onnxruntime", "onnxruntime", "onnx"),
}


@dataclass(frozen=True)
class BackendStatus:
    name: str
    module: str
    installed: bool
    version: str | None = None
    gpu: bool | None = None  # probed only on request: llama.cpp GPU offload / ORT CUDA provider
    detail: str = ""

    def to_dict(self) -> dict:
        return {"name": self.name, "module": self.module, "installed": self.installed,
                "version": self.version, "gpu": self.gpu, "detail": self.detail}


def backend_status(name: str, *, probe: bool = False) -> BackendStatus:
    """Is the backend's library installed (and, with `probe`, what can it do)?

    Without `probe` nothing is imported; with it the library is imported to ask whether it
    was built with GPU support, which loads its shared library (a fraction of a second).
    """
    module, dist, _extra = BACKEND_LIBRARIES[name]
    if importlib.util.find_spec(module) is None:
        return BackendStatus(name, module, installed=False)
    try:
        version = importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        version = None
    if not probe:
        return BackendStatus(name, module, installed=True, version=version)
    try:
        if name == "llamacpp":
            import llama_cpp

            gpu = bool(llama_cpp.llama_supports_gpu_offload())
            detail = "GPU offload built in" if gpu else "CPU build"
        else:
            import onnxruntime

            providers = list(onnxruntime.get_available_providers())
            gpu = any(p in providers for p in ("CUDAExecutionProvider", "TensorrtExecutionProvider"))
            detail = "providers: " + ", ".join(providers)
    except Exception as exc:  # a broken install is something doctor must report, not crash on
        return BackendStatus(name, module, installed=False, version=version,
                             detail=f"import failed: {type(exc).__name__}: {exc}")
    return BackendStatus(name, module, installed=True, version=version, gpu=gpu, detail=detail)


def installed_backends() -> set[str]:
    return {name for name in BACKEND_LIBRARIES if backend_status(name).installed}


@dataclass(frozen=True)
class Selection:
    profile: str
    backend: str  # llamacpp | onnx
    format: str  # gguf | onnx
    quants: dict[str, str]  # role -> quantization
    passed_over: tuple[str, ...] = ()  # why preferred backends were not chosen

    def describe(self) -> str:
        q = ", ".join(f"{role} {quant}" for role, quant in sorted(self.quants.items()))
        return f"{self.backend} ({self.format}: {q})"

    def to_dict(self) -> dict:
        return {"profile": self.profile, "backend": self.backend, "format": self.format,
                "quants": dict(self.quants), "passed_over": list(self.passed_over)}


def _formats_by_role(manifest: Manifest) -> dict[str, dict[str, list[str]]]:
    out: dict[str, dict[str, list[str]]] = {}
    for role, entry in manifest.models.items():
        for art in entry.artifacts:
            out.setdefault(role, {}).setdefault(art.format, []).append(art.quant)
    return out


def select(
    profile: DeviceProfile,
    manifest: Manifest,
    *,
    backend: str | None = None,
    installed: Collection[str] | None = None,
) -> Selection:
    """Choose what `profile` runs from `manifest`.

    `backend` forces one backend (it still must be in the bundle); `installed`, when given,
    skips backends whose library is missing. Raises BundleError when the bundle has none of
    the profile's formats, BackendUnavailableError when the only usable ones are not installed.
    """
    if backend is not None and backend not in FORMAT_OF:
        raise ConfigError(f"unknown backend {backend!r} (known: {', '.join(FORMAT_OF)})")
    candidates = (backend,) if backend else profile.backends
    have = _formats_by_role(manifest)
    passed_over: list[str] = []
    missing_library: str | None = None
    for name in candidates:
        fmt = FORMAT_OF[name]
        lacking = [role for role in manifest.models if fmt not in have.get(role, {})]
        if lacking:
            passed_over.append(f"{name}: the bundle has no {fmt} files for {', '.join(lacking)}")
            continue
        if installed is not None and name not in installed:
            passed_over.append(f"{name}: {BACKEND_LIBRARIES[name][0]} is not installed")
            missing_library = missing_library or name
            continue
        prefs = profile.quants.get(fmt, ())
        quants: dict[str, str] = {}
        for role, by_fmt in have.items():
            present = by_fmt[fmt]
            chosen = next((q for q in prefs if q in present), None)
            if chosen is None:
                raise BundleError(
                    f"profile {profile.name!r} accepts {fmt} quantizations {', '.join(prefs)}, but the "
                    f"bundle's {role} model has only {', '.join(present)}"
                )
            quants[role] = chosen
        return Selection(profile.name, name, fmt, quants, tuple(passed_over))
    if missing_library is not None:
        raise BackendUnavailableError(missing_library, BACKEND_LIBRARIES[missing_library][2],
                                      "; ".join(passed_over))
    bundle_formats = ", ".join(sorted(manifest.formats())) or "none"
    wanted = "/".join(FORMAT_OF[n] for n in candidates)
    raise BundleError(
        f"bundle {manifest.name!r} has no {wanted} files for every model, which profile "
        f"{profile.name!r} needs (the bundle has: {bundle_formats}); export it with "
        f"`edge export --format {FORMAT_OF[candidates[0]]}` or choose another profile"
    )
