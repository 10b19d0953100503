"""Tokenization for the runtime: segments -> ids, ids -> text, without torch.

Untrusted text is encoded by a copy of the tokenizer that has no added tokens, so a
question containing "</think>" becomes ordinary BPE pieces, never the control token.
Decoding goes token by token through raw bytes (`StreamDecoder`) so multi-byte
characters split across tokens come out whole, and no token is dropped for being long.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from functools import cached_property
from pathlib import Path

from tokenizers import Tokenizer

from runtime.chat_format import Image, Segment, Special, Text
from runtime.errors import BundleError, InputError

_BYTE_DECODER: dict[str, int] | None = None


def _byte_decoder() -> dict[str, int]:
    """Inverse of GPT-2's byte -> printable character table (byte-level BPE pieces)."""
    global _BYTE_DECODER
    if _BYTE_DECODER is None:
        printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
        printable += list(range(ord("®"), ord("ÿ") + 1))
        table, extra = {}, 0
        for b in range(256):
            if b in printable:
                table[chr(b)] = b
            else:
                table[chr(256 + extra)] = b
                extra += 1
        _BYTE_DECODER = table
    return _BYTE_DECODER


class BundleTokenizer:
    """A `tokenizer.json` (byte-level BPE) loaded with the `tokenizers` library."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            if (data.get("model") or {}).get("type") != "BPE":
                raise BundleError(f"{self.path}: only byte-level BPE tokenizers are supported")
            self._added = {t["content"]: t["id"] for t in data.get("added_tokens", [])}
            # One tokenizers instance, without the added tokens: text never turns into a
            # special token (`encode_plain`), and special tokens are looked up in `_added`.
            # A second, full instance cost ~60 MiB at Qwen3's vocabulary for nothing.
            self._plain = Tokenizer.from_str(json.dumps(dict(data, added_tokens=[])))
            self._pieces: dict[int, str] = {v: k for k, v in data["model"]["vocab"].items()}
        except BundleError:
            raise
        except (OSError, ValueError, Exception) as exc:  # tokenizers raises plain Exception
            raise BundleError(f"{self.path}: not a readable tokenizer.json ({exc})") from None

    @property
    def vocab_size(self) -> int:
        """Highest id + 1 (BPE ranks plus added tokens)."""
        return max(max(self._pieces, default=-1), max(self._added.values(), default=-1)) + 1

    def encode_plain(self, text: str) -> list[int]:
        return self._plain.encode(text, add_special_tokens=False).ids

    def token_id(self, token: str) -> int | None:
        if token in self._added:
            return self._added[token]
        return self._plain.token_to_id(token)

    @cached_property
    def _id_to_added(self) -> dict[int, str]:
        return {v: k for k, v in self._added.items()}

    def token_bytes(self, token_id: int) -> bytes:
        if token_id in self._id_to_added:
            return self._id_to_added[token_id].encode("utf-8")
        piece = self._pieces.get(token_id)
        if piece is None:
            return b""  # padding rows of the embedding table decode to nothing
        dec = _byte_decoder()
        return bytes(dec[c] for c in piece if c in dec)

    def vocab(self) -> dict[int, str]:
        """id -> decoded text of each token (used to derive banned-token sets)."""
        return {i: self.token_bytes(i).decode("utf-8", errors="replace") for i in range(self.vocab_size)}


def encode_segments(
    tok, segments: Sequence[Segment], *, image_tokens: int = 0
) -> list[int | None]:
    """Token ids for a prompt; `None` marks each image position (`image_tokens` of them)."""
    ids: list[int | None] = []
    for seg in segments:
        if isinstance(seg, Text):
            ids.extend(tok.encode_plain(seg.text))
        elif isinstance(seg, Special):
            tid = tok.token_id(seg.token)
            if tid is None:
                raise BundleError(f"tokenizer has no {seg.token} token")
            ids.append(tid)
        elif isinstance(seg, Image):
            if image_tokens <= 0:
                raise InputError("this prompt has an image but the model takes no images")
            ids.extend([None] * image_tokens)
    return ids


class StreamDecoder:
    """Incremental detokenizer: feed ids, get the text that is complete so far."""

    def __init__(self, tok) -> None:
        self._tok = tok
        self._pending = b""

    def push(self, token_id: int) -> str:
        self._pending += self._tok.token_bytes(token_id)
        try:
            text = self._pending.decode("utf-8")
        except UnicodeDecodeError as exc:
            # Keep an incomplete trailing sequence (at most 3 bytes) for the next token.
            if exc.start >= len(self._pending) - 3 and exc.reason.startswith("unexpected end"):
                text = self._pending[: exc.start].decode("utf-8", errors="replace")
                self._pending = self._pending[exc.start :]
                return text
            text = self._pending.decode("utf-8", errors="replace")
        self._pending = b""
        return text

    def flush(self) -> str:
        text = self._pending.decode("utf-8", errors="replace")
        self._pending = b""
        return text


def decode(tok, ids: Iterable[int]) -> str:
    d = StreamDecoder(tok)
    return "".join(d.push(i) for i in ids) + d.flush()
