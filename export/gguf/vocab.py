"""Tokenizer metadata for a Qwen-style byte-level BPE, as llama.cpp reads it.

llama.cpp re-implements the tokenizer from these keys, so they must describe exactly what
the HF tokenizer does: model "gpt2" (byte-level BPE), pre-tokenizer "qwen2" (without it
digits, contractions and whitespace runs split differently, silently), one token per
embedding row (unused rows padded), token types (control for special added tokens,
user-defined for the other added tokens such as <think>), and the merges in rank order.
We refuse tokenizers whose pre-tokenizer is not Qwen2's rather than write a file that
tokenizes differently.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from runtime.errors import ConfigError
from runtime.gguf_constants import GPT2_TOKENIZER, QWEN2_PRE_TOKENIZER, TokenType

# Qwen2/Qwen3's split regex, exactly as in their tokenizer.json; llama.cpp's "qwen2"
# pre-tokenizer implements this one.
QWEN2_SPLIT_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)


DEFAULT_EOS = "<|im_end|>"
DEFAULT_PAD = "<|endoftext|>"


@dataclass(frozen=True)
class VocabMeta:
    tokens: list[str]
    types: list[int]
    merges: list[str]
    bos_id: int
    eos_id: int
    pad_id: int
    n_real: int  # ids the tokenizer actually defines (the rest are padding rows)


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: not found") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: not valid JSON ({exc})") from None


def _split_patterns(node: object) -> list[str]:
    """Every Split regex inside a (possibly nested Sequence) pre_tokenizer."""
    out: list[str] = []
    if isinstance(node, dict):
        if node.get("type") == "Split":
            pat = node.get("pattern") or {}
            out.append(pat.get("Regex") or pat.get("String") or "")
        for value in node.values():
            out += _split_patterns(value)
    elif isinstance(node, list):
        for value in node:
            out += _split_patterns(value)
    return out


def _check_pipeline(data: dict, path: Path) -> None:
    model = data.get("model") or {}
    if model.get("type") != "BPE":
        raise ConfigError(f"{path}: GGUF export needs a byte-level BPE tokenizer, got {model.get('type')!r}")
    pre = data.get("pre_tokenizer")
    if QWEN2_SPLIT_PATTERN not in _split_patterns(pre) or "ByteLevel" not in json.dumps(pre):
        raise ConfigError(
            f"{path}: the pre-tokenizer is not Qwen2's byte-level split; llama.cpp would "
            "tokenize differently (only Qwen-style tokenizers are exported)"
        )
    norm = data.get("normalizer")
    if norm is not None and norm.get("type") != "NFC":
        raise ConfigError(f"{path}: unsupported normalizer {norm.get('type')!r} (llama.cpp applies none)")


def _special_name(config: dict, key: str, default: str) -> str:
    value = config.get(key)
    if isinstance(value, dict):  # {"content": "<|im_end|>", ...}
        value = value.get("content")
    return value if isinstance(value, str) and value else default


def read_vocab(tokenizer_dir: Path, n_rows: int) -> VocabMeta:
    """Token list padded to `n_rows` (the embedding rows), types, merges, special ids."""
    tdir = Path(tokenizer_dir)
    tpath = tdir / "tokenizer.json"
    data = _read_json(tpath)
    _check_pipeline(data, tpath)
    config = _read_json(tdir / "tokenizer_config.json") if (tdir / "tokenizer_config.json").is_file() else {}

    by_id: dict[int, tuple[str, int]] = {}
    for piece, idx in data["model"]["vocab"].items():
        by_id[int(idx)] = (piece, TokenType.NORMAL)
    for added in data.get("added_tokens", []):
        by_id[int(added["id"])] = (added["content"], TokenType.CONTROL if added.get("special") else TokenType.USER_DEFINED)
    n_real = max(by_id) + 1 if by_id else 0
    if n_real > n_rows:
        raise ConfigError(
            f"{tpath}: the tokenizer has ids up to {n_real - 1} but the model has only "
            f"{n_rows} embedding rows (tokenizer and checkpoint do not belong together)"
        )
    tokens, types = [], []
    for i in range(n_rows):
        piece, kind = by_id.get(i, (f"[PAD{i}]", TokenType.UNUSED))
        tokens.append(piece)
        types.append(kind)

    merges = []
    for m in data["model"].get("merges", []):
        merges.append(" ".join(m) if isinstance(m, list) else str(m))

    ids = {piece: i for i, (piece, _) in by_id.items()}

    def special(key: str, default: str) -> int:
        name = _special_name(config, key, default)
        if name not in ids:
            name = default
        if name not in ids:
            raise ConfigError(f"{tpath}: the tokenizer has no {default} token")
        return ids[name]

    eos = special("eos_token", DEFAULT_EOS)
    pad = special("pad_token", DEFAULT_PAD)
    # Qwen3 has no BOS (add_bos is false); llama.cpp still wants an id, Qwen uses <|endoftext|>.
    bos = special("bos_token", DEFAULT_PAD)
    return VocabMeta(tokens, types, merges, bos, eos, pad, n_real)


def add_vocab(writer, vocab: VocabMeta, chat_template: str) -> None:
    writer.add_tokenizer_model(GPT2_TOKENIZER)
    writer.add_tokenizer_pre(QWEN2_PRE_TOKENIZER)
    writer.add_token_list(vocab.tokens)
    writer.add_token_types(vocab.types)
    writer.add_token_merges(vocab.merges)
    writer.add_bos_token_id(vocab.bos_id)
    writer.add_eos_token_id(vocab.eos_id)
    writer.add_pad_token_id(vocab.pad_id)
    writer.add_add_bos_token(False)
    writer.add_chat_template(chat_template)
