"""Loading llama-cpp-python's low-level API once, with llama.cpp's own logging routed.

Only the ctypes modules are used (`llama_cpp.llama_cpp` and `llama_cpp.mtmd_cpp`). Their
default log callback prints everything to stderr: llama.cpp and mtmd logs go to this
package's logger at DEBUG level instead, and recent warnings/errors are kept so a failed
load can name its cause (`native_reason`).
"""

from __future__ import annotations

import ctypes
import logging
import threading
from collections import deque
from typing import Any

from runtime.errors import BackendUnavailableError

log = logging.getLogger(__name__)

_lib_lock = threading.Lock()
_lib: tuple[Any, Any] | None = None
recent_native: deque[tuple[int, str]] = deque(maxlen=16)  # recent llama.cpp warnings/errors
_WARN, _ERROR = 3, 4  # ggml_log_level (DEBUG=1, INFO=2, WARN=3, ERROR=4, CONT=5)
_log_callbacks: list[Any] = []  # ctypes callbacks must outlive every native call


def llama_lib() -> tuple[Any, Any]:
    """(llama_cpp.llama_cpp, llama_cpp.mtmd_cpp), imported once with logging routed."""
    global _lib
    with _lib_lock:
        if _lib is None:
            try:
                # heavy optional dependency (the llamacpp extra): imported on first use only,
                # so `import runtime` works where llama-cpp-python is not installed
                import llama_cpp.llama_cpp as llama
                import llama_cpp.mtmd_cpp as mtmd
            except (ImportError, OSError) as exc:
                raise BackendUnavailableError("llama.cpp", "llamacpp", str(exc)) from None
            _route_native_logs(llama, mtmd)
            llama.llama_backend_init()
            _lib = (llama, mtmd)
    return _lib


def _route_native_logs(llama: Any, mtmd: Any) -> None:
    def on_log(level: int, text: bytes | None, _user: Any) -> None:
        try:
            msg = (text or b"").decode("utf-8", errors="replace").rstrip()
            if level in (_WARN, _ERROR) and msg:
                recent_native.append((level, msg))
            if msg and log.isEnabledFor(logging.DEBUG):
                log.debug("native: %s", msg)
        except Exception:  # noqa: BLE001 - an exception must never cross into C
            pass

    cb = llama.llama_log_callback(on_log)
    _log_callbacks.append(cb)
    llama.llama_log_set(cb, ctypes.c_void_p(0))
    mtmd.mtmd_log_set(cb, ctypes.c_void_p(0))
    mtmd.mtmd_helper_log_set(cb, ctypes.c_void_p(0))


def native_reason() -> str:
    """The first error llama.cpp logged since the last clear (the cause, not the summary)."""
    errors = [m for lvl, m in recent_native if lvl == _ERROR]
    warnings = [m for lvl, m in recent_native if lvl == _WARN]
    recent_native.clear()
    if errors:
        return errors[0]
    return warnings[-1] if warnings else "no detail from llama.cpp"
