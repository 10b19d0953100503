"""`TokenizerLike` over a llama.cpp vocabulary (stock GGUF chat models without a bundle).

`Llama.detokenize` drops tokens longer than 32 bytes (Qwen has 240 such tokens): pieces
come from `llama_token_to_piece` with a large buffer instead.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
from pathlib import Path

from runtime.backends.llamacpp.language_model import LlamaCppLanguageModel
from runtime.backends.llamacpp.library import llama_lib
from runtime.backends.llamacpp.native_model import NativeModel
from runtime.errors import InputError


class GGUFTokenizer:
    """`TokenizerLike` over a llama.cpp vocabulary, for stock GGUF chat models.

    `encode_plain` keeps special-token strings as plain text: llama.cpp never matches
    control tokens (`<|im_end|>`) when `parse_special` is off, but it always matches
    user-defined ones (`<think>`), so text containing one is tokenized in pieces cut inside
    each occurrence (see `_cut_offset`: for `<...>` tags the cut falls on a pre-token
    boundary, so the result equals the canonical BPE split of the whole text).
    """

    def __init__(self, source: LlamaCppLanguageModel | str | os.PathLike[str]) -> None:
        if isinstance(source, LlamaCppLanguageModel):
            source._alive()
            self._model = source._model.acquire()
        else:
            self._model = NativeModel(Path(source), vocab_only=True)
        self._llama = llama_lib()[0]
        self._vocab = self._model.vocab
        self._n = self._model.n_vocab
        self._bytes: dict[int, bytes] = {}
        self._ids: dict[str, int] | None = None
        self._user_defined: list[str] | None = None
        self._special_ids: frozenset[int] | None = None
        self._buf = ctypes.create_string_buffer(1024)

    @property
    def vocab_size(self) -> int:
        return self._n

    @property
    def special_ids(self) -> frozenset[int]:
        """Ids of control and user-defined tokens (never produced by `encode_plain`)."""
        self._index()
        return self._special_ids

    def encode_plain(self, text: str) -> list[int]:
        self._index()
        cuts = sorted({i + _cut_offset(s) for s in self._user_defined for i in _find_all(text, s)})
        if not cuts:
            return self._tokenize(text)
        ids: list[int] = []
        start = 0
        for cut in cuts + [len(text)]:
            if cut > start:
                ids += self._tokenize(text[start:cut])
            start = cut
        return ids

    def token_id(self, token: str) -> int | None:
        self._index()
        return self._ids.get(token)

    def token_bytes(self, token_id: int) -> bytes:
        cached = self._bytes.get(token_id)
        if cached is not None:
            return cached
        if not 0 <= token_id < self._n:
            return b""  # llama.cpp would abort on an out-of-range id
        self._alive()
        attr = self._llama.llama_vocab_get_attr(self._vocab, token_id)
        # padding rows decode to nothing, as in BundleTokenizer
        out = b"" if attr & self._llama.LLAMA_TOKEN_ATTR_UNUSED else self._piece(token_id)
        self._bytes[token_id] = out
        return out

    def vocab(self) -> dict[int, str]:
        return {i: self.token_bytes(i).decode("utf-8", errors="replace") for i in range(self._n)}

    def tokenize_with_specials(self, text: str) -> list[int]:
        """llama.cpp's own full tokenization (special strings become special tokens)."""
        return self._tokenize(text, parse_special=True)

    def close(self) -> None:
        if getattr(self, "_model", None) is not None:
            self._model.release()
            self._model = None

    def __del__(self) -> None:
        with contextlib.suppress(Exception):  # interpreter shutdown
            self.close()

    def _alive(self) -> None:
        if getattr(self, "_model", None) is None:
            raise RuntimeError("this GGUF tokenizer is closed")

    def _piece(self, token_id: int) -> bytes:
        n = self._llama.llama_token_to_piece(self._vocab, token_id, self._buf, len(self._buf), 0, True)
        if n < 0:  # buffer too small: the required size is -n
            buf = ctypes.create_string_buffer(-n)
            n = self._llama.llama_token_to_piece(self._vocab, token_id, buf, len(buf), 0, True)
            return buf.raw[:n]
        return self._buf.raw[:n]

    def _tokenize(self, text: str, *, parse_special: bool = False) -> list[int]:
        self._alive()
        raw = text.encode("utf-8")
        if not raw:
            return []
        cap = len(raw) + 8
        out = (self._llama.llama_token * cap)()
        n = self._llama.llama_tokenize(self._vocab, raw, len(raw), out, cap, False, parse_special)
        if n < 0:
            cap = -n
            out = (self._llama.llama_token * cap)()
            n = self._llama.llama_tokenize(self._vocab, raw, len(raw), out, cap, False, parse_special)
        if n < 0:
            raise InputError("llama.cpp could not tokenize the text")
        return list(out[:n])

    def _index(self) -> None:
        if self._ids is not None:
            return
        self._alive()
        llama, vocab = self._llama, self._vocab
        ids: dict[str, int] = {}
        user: list[str] = []
        special: set[int] = set()
        for i in range(self._n):
            raw = llama.llama_vocab_get_text(vocab, i)
            text = raw.decode("utf-8", errors="replace") if raw else ""
            ids.setdefault(text, i)
            attr = llama.llama_vocab_get_attr(vocab, i)
            if attr & llama.LLAMA_TOKEN_ATTR_USER_DEFINED and len(text) > 1:
                user.append(text)
            if attr & (llama.LLAMA_TOKEN_ATTR_USER_DEFINED | llama.LLAMA_TOKEN_ATTR_CONTROL):
                special.add(i)
        self._ids, self._user_defined, self._special_ids = ids, user, frozenset(special)


def _cut_offset(token: str) -> int:
    """Where to split an occurrence of a user-defined token so it stays plain text.

    "<think>" pre-tokenizes as "<think" + ">" in byte-level BPE (a letter run ends at the
    punctuation), so cutting before a final punctuation mark that follows a letter keeps
    the canonical split; other tokens are cut after their first character.
    """
    if len(token) >= 2 and not token[-1].isalnum() and token[-2].isalpha():
        return len(token) - 1
    return 1


def _find_all(text: str, sub: str) -> list[int]:
    out, i = [], text.find(sub)
    while i >= 0:
        out.append(i)
        i = text.find(sub, i + 1)
    return out
