"""What the pipeline knows about how fast its models run here (deadline mode's prior).

Speeds start from the prior the pipeline was given (a device profile's numbers) and are
replaced, per role, by what each request measures, so the next request plans from
this machine's real speeds.
"""

from __future__ import annotations

from collections.abc import Mapping

from runtime.deadline import DEFAULT_PRIOR, Throughput
from runtime.generation import Generation

MIN_MEASURED = 4  # fewer prompt or generated tokens than this say little about speed


class SpeedBook:
    """Per-role `Throughput`: the prior, then the latest measurements."""

    def __init__(self, prior: Mapping[str, Throughput] | None = None) -> None:
        self._speed: dict[str, Throughput] = dict(prior or {})

    def snapshot(self) -> dict[str, Throughput]:
        """The speeds to plan the next request with (roles never seen are absent)."""
        return dict(self._speed)

    def remember(self, role: str, *, gen: Generation | None = None, vision_s: float | None = None) -> None:
        """Fold one stage's measurements into `role`'s speed."""
        old = self._speed.get(role) or DEFAULT_PRIOR.get(role) or DEFAULT_PRIOR["reasoner"]
        prefill, decode, vis = old.prefill_tps, old.decode_tps, old.vision_s
        if gen is not None:
            fed = gen.prompt_tokens - gen.reused_tokens
            if fed >= MIN_MEASURED and gen.prefill_s > 0:
                prefill = fed / gen.prefill_s
            if gen.generated >= MIN_MEASURED and gen.decode_s > 0:
                decode = gen.generated / gen.decode_s
        if vision_s is not None:
            vis = vision_s
        self._speed[role] = Throughput(prefill, decode, vis)

    def update(self, speeds: Mapping[str, Throughput]) -> None:
        self._speed.update(speeds)
