"""Extract+Think runtime: torch-free inference on llama.cpp (GGUF) and ONNX Runtime.

    from runtime import ExtractThink
    et = ExtractThink.load("path/to/bundle")          # None: the shipped default bundle
    result = et.answer("photo.jpg", "What colour is the car?")
    print(result.answer, result.to_dict()["stages"])

Names are resolved lazily (PEP 562): `import runtime` loads only the error classes, and
never torch, transformers or jinja2; numpy and a backend library are imported when the
first name that needs them is used.
"""

from __future__ import annotations

import importlib
from typing import Any

from runtime.errors import (
    BackendUnavailableError,
    BundleError,
    Cancelled,
    ConfigError,
    ContextOverflowError,
    EdgeError,
    ImageError,
    InputError,
    MemoryPlanError,
)

__version__ = "0.1.0"

# public name -> module that defines it
_LAZY: dict[str, str] = {
    "ExtractThink": "runtime.pipeline",
    "MODES": "runtime.pipeline",
    "Result": "runtime.result",
    "StageStats": "runtime.result",
    "BudgetEvent": "runtime.result",
    "StageStarted": "runtime.result",
    "TokenEvent": "runtime.result",
    "BudgetAction": "runtime.result",
    "StageFinished": "runtime.result",
    "Done": "runtime.result",
    "event_to_dict": "runtime.result",
    "SamplingConfig": "runtime.sampling",
    "Sampler": "runtime.sampling",
    "GREEDY": "runtime.sampling",
    "THINKING": "runtime.sampling",
    "NON_THINKING": "runtime.sampling",
    "BudgetController": "runtime.budget",
    "StageLimits": "runtime.budget",
    "NOWAIT_KEYWORDS": "runtime.nowait",
    "nowait_token_ids": "runtime.nowait",
    "parse_answer": "runtime.answer",
    "load_image": "runtime.image",
    "preprocess": "runtime.image",
    "open_bundle": "runtime.bundle",
    "Bundle": "runtime.bundle",
    "default_bundle_path": "runtime.defaults",
    "Throughput": "runtime.deadline",
    "DeadlinePlanner": "runtime.deadline",
    "parse_size": "runtime.memory",
}

__all__ = [
    "BackendUnavailableError", "BundleError", "Cancelled", "ConfigError", "ContextOverflowError", "EdgeError",
    "ImageError", "InputError", "MemoryPlanError", "__version__", *_LAZY,
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'runtime' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
