"""The server's settings (one frozen value, made by `edge serve` from its flags and the
device profile) and the request defaults derived from the bundle's budgets."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from runtime.manifest import Budgets

EFFORTS = ("low", "medium", "high")


def effort_budgets(budgets: Budgets) -> dict[str, int]:
    """`reasoning_effort` -> thinking budget.

    A manifest may one day carry this mapping (`budgets.reasoning_effort`); until then it is
    derived from the thinking budget B the server runs with (the bundle's, capped by the
    device profile): high = B (the most the bundle's models were made for), medium =
    ceil(B/2), low = ceil(B/4). A request without an effort gets B.
    """
    given = getattr(budgets, "reasoning_effort", None)
    if isinstance(given, dict) and all(isinstance(given.get(e), int) for e in EFFORTS):
        return {e: int(given[e]) for e in EFFORTS}
    b = budgets.thinking
    return {"low": math.ceil(b / 4), "medium": math.ceil(b / 2), "high": b}


@dataclass(frozen=True)
class ServeConfig:
    model_id: str  # what /v1/models lists and every response names
    host: str = "127.0.0.1"
    port: int = 8080  # the bound port (after binding port 0: the one picked)
    api_key: str | None = None
    max_queue: int = 16  # requests waiting behind the running one; more get 429
    request_timeout_s: float = 300.0  # from admission to the last byte, queue time included
    drain_timeout_s: float = 30.0  # on SIGTERM: how long running requests may finish
    max_image_bytes: int = 20 << 20
    max_pixels: int = 40_000_000
    allow_remote_images: bool = False
    remote_image_timeout_s: float = 10.0
    allowed_hosts: tuple[str, ...] = ()  # Host names accepted besides the bound address
    body_timeout_s: float = 30.0  # reading a request body
    header_timeout_s: float = 10.0  # a new connection must send its request head within this
    max_connections: int = 64  # open connections; more get 503 from uvicorn
    demo: bool = False  # serve the web page at /
    budgets: Budgets = field(default_factory=Budgets)  # request defaults
    thinking: bool = True
    deadline_s: float | None = None
    info: dict = field(default_factory=dict, compare=False)  # profile, threads... for /v1/models

    @property
    def max_body_bytes(self) -> int:
        """A base64 image is 4/3 of its bytes; the rest is room for the conversation's text."""
        return self.max_image_bytes * 4 // 3 + (1 << 20)

    @property
    def effort(self) -> dict[str, int]:
        return effort_budgets(self.budgets)
