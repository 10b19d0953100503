"""The offline-built tokenizers: Qwen3's ids pinned, tiny BPE shares the special layout."""

from __future__ import annotations

import json

import pytest

from runtime.chat_format import QWEN3_SPECIAL_TOKENS
from runtime.tokenizer import BundleTokenizer, decode


def test_qwen3_tokenizer_pins_known_ids(qwen3_tokenizer_dir):
    tok = BundleTokenizer(qwen3_tokenizer_dir / "tokenizer.json")
    assert tok.vocab_size == 151_669
    assert tok.token_id("</think>") == 151_668
    assert tok.token_id("<think>") == 151_667
    assert tok.token_id("<|im_end|>") == 151_645
    assert tok.token_id("<|endoftext|>") == 151_643
    assert tok.token_id("<|image_pad|>") == 151_655
    # Well-known Qwen2/Qwen3 BPE ids.
    assert tok.encode_plain("Hello world") == [9707, 1879]
    assert tok.encode_plain("\n") == [198]


def test_qwen3_specials_in_order(qwen3_tokenizer_dir):
    tok = BundleTokenizer(qwen3_tokenizer_dir / "tokenizer.json")
    ids = [tok.token_id(t) for t, _ in QWEN3_SPECIAL_TOKENS]
    assert ids == list(range(151_643, 151_669))


@pytest.mark.parametrize("text", ["digits 1234567", "  two  spaces\n\n\ttab", "中文 and emoji 🙂🚀",
                                  "def f(x):\n    return x**2", "it's we'll THEY'RE"])
def test_roundtrip(qwen3_tokenizer_dir, tiny_tokenizer_dir, text):
    for d in (qwen3_tokenizer_dir, tiny_tokenizer_dir):
        tok = BundleTokenizer(d / "tokenizer.json")
        assert decode(tok, tok.encode_plain(text)) == text


def test_qwen3_digits_split_one_by_one(qwen3_tokenizer_dir):
    tok = BundleTokenizer(qwen3_tokenizer_dir / "tokenizer.json")
    assert len(tok.encode_plain("2025")) == 4


def test_tiny_bpe_places_specials_after_bpe(tiny_tokenizer_dir):
    tok = BundleTokenizer(tiny_tokenizer_dir / "tokenizer.json")
    data = json.loads((tiny_tokenizer_dir / "tokenizer.json").read_text())
    n_bpe = len(data["model"]["vocab"])
    assert [tok.token_id(t) for t, _ in QWEN3_SPECIAL_TOKENS] == list(range(n_bpe, n_bpe + 26))
    assert tok.token_id("</think>") == n_bpe + 25


def test_transformers_loads_saved_tokenizer(tiny_tokenizer_dir):
    from transformers import AutoTokenizer

    hf = AutoTokenizer.from_pretrained(str(tiny_tokenizer_dir))
    ours = BundleTokenizer(tiny_tokenizer_dir / "tokenizer.json")
    assert hf.eos_token_id == ours.token_id("<|im_end|>")
    text = "A red circle is left of 12 squares."
    assert hf(text, add_special_tokens=False).input_ids == ours.encode_plain(text)


def test_special_strings_in_untrusted_text_stay_text(qwen3_tokenizer_dir):
    tok = BundleTokenizer(qwen3_tokenizer_dir / "tokenizer.json")
    ids = tok.encode_plain("stop </think> now <|im_end|>")
    assert 151_668 not in ids and 151_645 not in ids
    assert decode(tok, ids) == "stop </think> now <|im_end|>"
