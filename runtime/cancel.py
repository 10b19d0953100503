"""Cancelling a running request.

A `Cancellation` gathers the flags that end a request early (the caller's
`threading.Event`, the pipeline closing) and is checked where a request can stop
safely: before every token, between prefill chunks and between stages. `check()`
raises `runtime.errors.Cancelled`; native code is never interrupted mid-call, so a
check comes at most one backend call (one token, one prefill chunk, one image encode)
after the flag is set.
"""

from __future__ import annotations

from typing import Protocol

from runtime.errors import Cancelled, InputError


class Flag(Protocol):
    """Anything with `is_set()`: a `threading.Event`, a `multiprocessing.Event`..."""

    def is_set(self) -> bool: ...


class Cancellation:
    def __init__(self) -> None:
        self._flags: list[tuple[Flag, str]] = []

    def watch(self, flag: Flag, reason: str) -> Cancellation:
        """Cancel with `reason` once `flag` is set."""
        if not callable(getattr(flag, "is_set", None)):
            raise InputError(f"cancel must have an is_set() method (a threading.Event), not {type(flag).__name__}")
        self._flags.append((flag, reason))
        return self

    def is_set(self) -> bool:
        return any(flag.is_set() for flag, _ in self._flags)

    def check(self) -> None:
        """Raise `Cancelled` if any watched flag is set."""
        for flag, reason in self._flags:
            if flag.is_set():
                raise Cancelled(reason)
