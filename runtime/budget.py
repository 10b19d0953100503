"""The token-budget controller: one implementation shared by every backend.

It works on the numpy logits a backend returns, so budget forcing and NoWait mean the
same thing on llama.cpp and ONNX Runtime. One controller drives one generation stage:

- thinking phase (reasoner with thinking on), `u` thinking tokens used of budget `B`:
  from `u >= 0.95 B` the logits of `</think>` and newline are boosted by the factor
  `1 + u/B`; at `u == B - 1` only a newline may come; at `u == B` only `</think>`.
  NoWait tokens, stop tokens and every control token are banned while thinking, so
  thinking can only end through `</think>` and never holds more than `B` tokens.
- answer phase: at most the answer budget; control tokens and the think tags are banned.
  With `ensure_answer`, a stage that ends (stop token or budget) without a parseable
  answer gets an `Answer:` line forced onto it, whose value is restricted to the option
  letters for multiple choice, or to a short single-line phrase otherwise.
- plain stages (hint, extraction, end-to-end answer): the answer phase without forcing.

The generation loop asks `forced()` first (a token the schedule dictates, `STOP`, or
None), otherwise applies `apply(logits)` in place and samples, then reports the token
with `accept()`. Every action is recorded as a `BudgetEvent`.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

import numpy as np

from runtime.answer import has_answer
from runtime.backends.base import TokenizerLike
from runtime.control_tokens import ControlTokens, control_tokens, scan_ids, single_token
from runtime.errors import InputError
from runtime.nowait import nowait_token_ids
from runtime.prompts import LETTERS
from runtime.result import BudgetEvent

__all__ = [  # ControlTokens and control_tokens live in runtime.control_tokens, re-exported for callers
    "NEG_INF", "STOP", "BudgetController", "ControlTokens", "Phase", "StageLimits", "Verdict", "control_tokens",
]

STOP = -1  # returned by `forced()` when the stage is over
NEG_INF = np.float32(-np.inf)


class Phase(enum.Enum):
    THINKING = "thinking"
    ANSWER = "answer"
    FORCED_PREFIX = "forced_prefix"
    FORCED_VALUE = "forced_value"
    DONE = "done"


class Verdict(enum.IntEnum):
    EMIT = 0  # keep the token: emit it and feed it
    STOP = 1  # the token ends the stage: neither emitted nor fed
    RETRY = 2  # the token is dropped; ask `forced()` again (an answer is being forced)


@dataclass(frozen=True)
class StageLimits:
    """What one generation stage may do. Budgets are token counts (>= 0)."""

    stage: str  # name of the (answer) stage: "hint", "extraction", "answer"...
    max_tokens: int  # answer / extraction / hint budget
    thinking_budget: int | None = None  # None: this stage does not think
    thinking_stage: str = "thinking"
    nowait: bool = True  # ban reflexive tokens while thinking
    ensure_answer: bool = False  # force an "Answer:" line when none is produced
    options: tuple[str, ...] | None = None
    boost_from: float = 0.95
    forced_value_max: int = 16  # tokens allowed after a forced "Answer:" (free form)

    def __post_init__(self) -> None:
        for name in ("max_tokens", "thinking_budget", "forced_value_max"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
                raise InputError(f"{self.stage}: {name.replace('_', ' ')} must be an integer >= 0, got {value!r}")
        if not 0.0 <= self.boost_from <= 1.0:
            raise InputError(f"boost_from must be in [0, 1], got {self.boost_from}")


class BudgetController:
    """Budget forcing, NoWait and forced answers for one generation stage."""

    def __init__(
        self,
        limits: StageLimits,
        control: ControlTokens,
        tok: TokenizerLike,
        n_vocab: int,
        *,
        nowait_ids: np.ndarray | None = None,
        record_blocked: bool = True,
    ) -> None:
        self.limits = limits
        self.control = control
        self.tok = tok
        self.n_vocab = n_vocab
        self.record_blocked = record_blocked
        thinking = limits.thinking_budget is not None
        if thinking and not control.can_think:
            raise InputError("this model's vocabulary has no <think>/</think>: thinking cannot be enabled")
        self.thinking_budget = limits.thinking_budget if thinking else 0
        self.answer_budget = limits.max_tokens
        self.phase = Phase.THINKING if thinking else Phase.ANSWER
        self.position = 0
        self.thinking_tokens = 0
        self.answer_tokens = 0
        self.forced_answer = False
        self.last_stage = limits.thinking_stage if thinking else limits.stage
        self.last_forced = False
        self.events: list[BudgetEvent] = []
        self._text = bytearray()  # answer-phase bytes (parsed when deciding to force)
        self._queue: list[int] = []
        self._value_tokens = 0
        self._boosted = False

        def valid(ids) -> np.ndarray:
            arr = np.unique(np.asarray([int(i) for i in ids], dtype=np.int64))
            return arr[(arr >= 0) & (arr < n_vocab)]

        base = list(control.never)
        if control.think_start is not None:
            base.append(control.think_start)
        self._pad_from = min(control.vocab_size, n_vocab)
        self._stop = set(control.stop)
        if nowait_ids is None:
            nowait_ids = nowait_token_ids(tok) if (thinking and limits.nowait) else np.empty(0, np.int64)
        self._nowait = valid(nowait_ids) if limits.nowait else np.empty(0, np.int64)
        if control.think_end is not None:  # thinking must always be able to end
            self._nowait = self._nowait[self._nowait != control.think_end]
        self._think_ban = valid([*base, *control.stop, *self._nowait.tolist()])
        answer_extra = [control.think_end] if control.think_end is not None else []
        self._answer_ban = valid([*base, *answer_extra])
        self._think_lookup = self._lookup(self._think_ban)
        self._answer_lookup = self._lookup(self._answer_ban)
        self._nowait_lookup = self._lookup(self._nowait)
        self._boost_start = math.ceil(limits.boost_from * self.thinking_budget) if thinking else 0

    # ---- helpers -----------------------------------------------------------------

    def _lookup(self, ids: np.ndarray) -> np.ndarray:
        table = np.zeros(self.n_vocab, dtype=bool)
        table[ids] = True
        table[self._pad_from :] = True
        return table

    def _event(self, kind: str, detail: str = "", stage: str | None = None) -> None:
        stage = stage or (self.limits.thinking_stage if self.phase is Phase.THINKING else self.limits.stage)
        self.events.append(BudgetEvent(stage, kind, self.position, detail))

    def _piece(self, token_id: int) -> str:
        return self.tok.token_bytes(token_id).decode("utf-8", errors="replace")

    def answer_text(self) -> str:
        return self._text.decode("utf-8", errors="replace")

    @property
    def done(self) -> bool:
        return self.phase is Phase.DONE

    def max_new_tokens(self) -> int:
        """The most tokens this stage can still emit (for context planning)."""
        thinking = self.thinking_budget + 1 if self.limits.thinking_budget is not None else 0
        return thinking + self.answer_budget + self._forced_extra()

    def _forced_extra(self) -> int:
        if not self.limits.ensure_answer:
            return 0
        prefix = len(self.tok.encode_plain("\nAnswer:"))
        return prefix + (1 if self.limits.options else self.limits.forced_value_max)

    def fit_context(self, room: int) -> None:
        """Shrink the budgets (thinking first) so the stage fits `room` more positions."""
        over = self.max_new_tokens() - room
        if over <= 0:
            return
        before = (self.thinking_budget, self.answer_budget)
        if self.limits.thinking_budget is not None:
            cut = min(over, self.thinking_budget)
            self.thinking_budget -= cut
            over -= cut
            self._boost_start = math.ceil(self.limits.boost_from * self.thinking_budget)
        if over > 0:
            self.answer_budget = max(0, self.answer_budget - over)
        self._event(
            "context_clamp",
            f"budgets (thinking, answer) {before} -> {(self.thinking_budget, self.answer_budget)} "
            f"to fit {room} free context positions",
        )

    # ---- the loop protocol -----------------------------------------------------------

    def forced(self) -> int | None:
        """The token the schedule dictates now, `STOP`, or None (sample after `apply`)."""
        phase = self.phase
        if phase is Phase.THINKING:
            u, b = self.thinking_tokens, self.thinking_budget
            if u >= b:
                self._event("force_think_end", f"thinking budget {b} reached")
                return self.control.think_end
            if u == b - 1 and self.control.newline is not None:
                self._event("force_newline", f"one token left of the thinking budget {b}")
                return self.control.newline
            return None
        if phase is Phase.ANSWER:
            if self.answer_tokens < self.answer_budget:
                return None
            if self.limits.ensure_answer and not has_answer(self.answer_text(), self.limits.options):
                self._start_forced_answer(f"budget of {self.answer_budget} tokens ended without an answer")
                return self._queue[0]
            self._event("budget_exhausted", f"{self.answer_budget} tokens")
            self.phase = Phase.DONE
            return STOP
        if phase is Phase.FORCED_PREFIX:
            return self._queue[0]
        if phase is Phase.FORCED_VALUE:
            if self._value_tokens >= self.limits.forced_value_max:
                self.phase = Phase.DONE
                return STOP
            return None
        return STOP

    def apply(self, logits: np.ndarray) -> None:
        """Mask / boost `logits` (float32 [n_vocab]) in place for the next sampled token."""
        phase = self.phase
        if phase is Phase.THINKING:
            if self.record_blocked:
                self._note_blocked(logits, self._think_lookup)
            logits[self._think_ban] = NEG_INF
            logits[self._pad_from :] = NEG_INF
            u, b = self.thinking_tokens, self.thinking_budget
            if u >= self._boost_start:
                factor = 1.0 + u / b
                for tid in (self.control.think_end, self.control.newline):
                    if tid is not None:
                        v = logits[tid]
                        # Multiplying a negative logit would lower it: divide instead, so
                        # both signs move up by the same ratio.
                        logits[tid] = v * factor if v >= 0 else v / factor
                if not self._boosted:
                    self._boosted = True
                    self._event("boost", f"</think> and newline logits x{factor:.3f} rising to x2")
        elif phase is Phase.ANSWER:
            if self.record_blocked:
                self._note_blocked(logits, self._answer_lookup)
            logits[self._answer_ban] = NEG_INF
            logits[self._pad_from :] = NEG_INF
        elif phase is Phase.FORCED_VALUE:
            if self.limits.options:
                keep = self._letter_ids
                vals = logits[keep].copy()
                logits.fill(NEG_INF)
                logits[keep] = vals
            else:
                logits[self._answer_ban] = NEG_INF
                logits[self._pad_from :] = NEG_INF
                logits[scan_ids(self.tok, "newline")] = NEG_INF
                if self._value_tokens == 0:
                    logits[scan_ids(self.tok, "blank")] = NEG_INF
                    logits[list(self._stop)] = NEG_INF
        else:
            raise RuntimeError(f"apply() called in phase {phase.value}")

    def accept(self, token_id: int, *, forced: bool = False) -> Verdict:
        """Record the chosen token; say whether to emit it, stop, or ask again."""
        self.last_forced = forced
        phase = self.phase
        if phase is Phase.THINKING:
            self.last_stage = self.limits.thinking_stage
            if token_id == self.control.think_end:
                if not forced:
                    self._event("think_closed", f"after {self.thinking_tokens} thinking tokens")
                self.position += 1
                self.phase = Phase.ANSWER
                return Verdict.EMIT
            if not forced and self._think_lookup[token_id]:
                raise RuntimeError(f"budget controller: banned token {token_id} sampled while thinking")
            self.thinking_tokens += 1
            self.position += 1
            return Verdict.EMIT
        self.last_stage = self.limits.stage
        if phase is Phase.ANSWER:
            if token_id in self._stop:
                if self.limits.ensure_answer and not has_answer(self.answer_text(), self.limits.options):
                    self._start_forced_answer("the model ended without an answer")
                    return Verdict.RETRY
                self.phase = Phase.DONE
                return Verdict.STOP
            if not forced and self._answer_lookup[token_id]:
                raise RuntimeError(f"budget controller: banned token {token_id} sampled")
            self.answer_tokens += 1
            self._emit(token_id)
            return Verdict.EMIT
        if phase is Phase.FORCED_PREFIX:
            if token_id != self._queue[0]:
                raise RuntimeError("budget controller: a forced token was replaced")
            self._queue.pop(0)
            self._emit(token_id)
            if not self._queue:
                self.phase = Phase.FORCED_VALUE
            return Verdict.EMIT
        if phase is Phase.FORCED_VALUE:
            if token_id in self._stop:
                self.phase = Phase.DONE
                return Verdict.STOP
            self._value_tokens += 1
            self._emit(token_id)
            if self.limits.options:
                self.phase = Phase.DONE
            return Verdict.EMIT
        raise RuntimeError("accept() called after the stage ended")

    # ---- internals -----------------------------------------------------------------

    def _emit(self, token_id: int) -> None:
        self._text += self.tok.token_bytes(token_id)
        self.position += 1

    def _note_blocked(self, logits: np.ndarray, lookup: np.ndarray) -> None:
        top = int(np.argmax(logits))
        if lookup[top]:
            kind = "nowait_blocked" if self._nowait_lookup[top] else "special_blocked"
            self._event(kind, repr(self._piece(top)))

    def _start_forced_answer(self, reason: str) -> None:
        text = self.answer_text()
        prefix = "Answer:" if (not text or text.endswith("\n")) else "\nAnswer:"
        self._queue = list(self.tok.encode_plain(prefix))
        if self.limits.options:
            ids = []
            for letter in LETTERS[: len(self.limits.options)]:
                for form in (f" {letter}", letter):
                    tid = single_token(self.tok, form)
                    if tid is not None and tid < self.n_vocab:
                        ids.append(tid)
            if not ids:
                raise InputError("the tokenizer cannot write the option letters as single tokens")
            self._letter_ids = np.unique(np.asarray(ids, dtype=np.int64))
        self.forced_answer = True
        self.phase = Phase.FORCED_PREFIX
        self._event("force_answer", reason, stage=self.limits.stage)
