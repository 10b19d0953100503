"""NoWait: the banned set is derived from the vocabulary, on Qwen3's real tokenizer."""

from __future__ import annotations

import numpy as np
import pytest

from runtime.chat_format import QWEN3_SPECIAL_TOKENS
from runtime.nowait import NOWAIT_KEYWORDS, normalize_piece, nowait_token_ids
from runtime.tokenizer import BundleTokenizer


@pytest.fixture(scope="module")
def qwen3(qwen3_tokenizer_dir) -> BundleTokenizer:
    return BundleTokenizer(qwen3_tokenizer_dir / "tokenizer.json")


def _single(tok: BundleTokenizer, text: str) -> int:
    ids = tok.encode_plain(text)
    assert len(ids) == 1, (text, ids)
    return ids[0]


def test_paper_keywords():
    assert {"wait", "hmm", "alternatively", "but", "however", "check", "double-check", "verify",
            "maybe", "again", "oh", "ah", "other", "another", "now", "any"} == set(NOWAIT_KEYWORDS)


def test_qwen3_set_size_and_members(qwen3):
    ids = nowait_token_ids(qwen3)
    print(f"NoWait set on the Qwen3 vocabulary: {len(ids)} ids")
    assert 100 <= len(ids) <= 200
    assert ids.dtype == np.int64 and (np.diff(ids) > 0).all()
    members = set(ids.tolist())
    for text in (" Wait", "wait", " however", " However", "Hmm", " but", " maybe", " Alternatively", " WAIT"):
        assert _single(qwen3, text) in members, text
    for text in (" await", " known", " company", " waiting", " nowhere", " anything", " others"):
        ids_ = qwen3.encode_plain(text)
        assert not (len(ids_) == 1 and ids_[0] in members), text


def test_every_member_spells_a_keyword(qwen3):
    for i in nowait_token_ids(qwen3).tolist():
        text = qwen3.token_bytes(i).decode("utf-8", errors="replace")
        assert normalize_piece(text) in NOWAIT_KEYWORDS, (i, text)


def test_no_special_token_is_banned(qwen3):
    specials = {qwen3.token_id(s) for s, _ in QWEN3_SPECIAL_TOKENS}
    assert not specials & set(nowait_token_ids(qwen3).tolist())


def test_control_tokens_are_never_keywords(qwen3):
    ids = set(nowait_token_ids(qwen3, ["think", "im_end", "tool_call"]).tolist())
    assert not ids & {qwen3.token_id("<think>"), qwen3.token_id("</think>"), qwen3.token_id("<|im_end|>"),
                      qwen3.token_id("<tool_call>")}
    assert qwen3.encode_plain(" think")[0] in ids


def test_keywords_are_configurable(qwen3):
    ids = nowait_token_ids(qwen3, ["Banana", " apple "])
    assert _single(qwen3, " banana") in set(ids.tolist())
    assert _single(qwen3, " apple") in set(ids.tolist())
    assert _single(qwen3, " Wait") not in set(ids.tolist())


def test_works_on_a_plain_vocabulary_mapping():
    vocab = {0: " Wait", 1: "wait", 2: ".Wait", 3: "await", 4: "Waiter", 5: "—but", 6: " hmm", 7: "x"}
    assert nowait_token_ids(vocab).tolist() == [0, 1, 2, 5, 6]
    assert nowait_token_ids(vocab, []).tolist() == []
