"""One error family for everything a user can get wrong.

The CLI turns any `EdgeError` into a single line and a non-zero exit code; anything
else is a bug and keeps its traceback.
"""

from __future__ import annotations


class EdgeError(Exception):
    """Base class: a problem with the user's input, files or machine, not a bug."""

    exit_code = 1


class ConfigError(EdgeError, ValueError):
    """A config, profile or manifest field is missing, unknown or of the wrong type."""

    exit_code = 2


class BundleError(EdgeError):
    """A bundle is missing files, has wrong sizes/hashes/shapes or an unknown format."""

    exit_code = 3


class ImageError(EdgeError, ValueError):
    """An image is unreadable, truncated, empty, too large or of a refused format."""

    exit_code = 4


class InputError(EdgeError, ValueError):
    """A question, budget or option is invalid (empty, too long, negative...)."""

    exit_code = 2


class ContextOverflowError(EdgeError):
    """A prompt does not fit the model's context window."""

    exit_code = 5


class MemoryPlanError(EdgeError):
    """A stage cannot fit in the memory available, even loaded alone."""

    exit_code = 6


# extra -> the pip package a library user installs for it (pyproject.toml's extras)
EXTRA_PACKAGES = {"llamacpp": "llama-cpp-python", "onnx": "onnxruntime", "bench": "matplotlib"}


def install_hint(extra: str) -> str:
    """How to install an extra. The project is not on PyPI: from its checkout the extra
    installs with `pip install -e '.[extra]'`; elsewhere the package itself does. (The CLI
    rewrites the checkout form into the exact command for the current directory.)"""
    package = EXTRA_PACKAGES.get(extra)
    tail = f" (or: pip install {package})" if package else ""
    return f"pip install -e '.[{extra}]' from the extract-think-edge checkout{tail}"


class BackendUnavailableError(EdgeError, ImportError):
    """The backend library for a bundle format is not installed."""

    exit_code = 7

    def __init__(self, backend: str, extra: str, detail: str = "") -> None:
        msg = f"the {backend} backend is not installed: {install_hint(extra)}"
        if detail:
            msg += f" ({detail})"
        super().__init__(msg)
        self.backend = backend
        self.extra = extra


class Cancelled(EdgeError):
    """A running request was cancelled: by its caller's cancel event, or because the
    pipeline was closed while it ran. The request's partial output is dropped."""

    exit_code = 8
