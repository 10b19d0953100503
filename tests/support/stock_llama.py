"""Stock llama-cpp-python classes loading models with the runtime's choice of extra CPU
buffer types: its `Llama` offers no `use_extra_bufts`, and llama.cpp's AMX matmul crashes
on CPUs that have AMX (runtime.backends.llamacpp.native_model.use_extra_buffer_types)."""

from __future__ import annotations

from runtime.backends.llamacpp import llama_lib
from runtime.backends.llamacpp.native_model import use_extra_buffer_types


def patch_default_params() -> None:
    """Make `llama_model_default_params()` (which `Llama.__init__` starts from) carry the
    runtime's `use_extra_bufts`; idempotent."""
    llama, _ = llama_lib()  # also routes native logs before the stock classes load
    if getattr(llama, "_edge_extra_bufts_patched", False):
        return
    original = llama.llama_model_default_params

    def default_params():
        params = original()
        params.use_extra_bufts = use_extra_buffer_types()
        return params

    llama.llama_model_default_params = default_params
    llama._edge_extra_bufts_patched = True
