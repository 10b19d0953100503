"""Chat family recognition from template markers (no template is compiled or rendered)."""

from __future__ import annotations

import pytest

from runtime.chat_family import detect_chat_family, family_of, special_vocab
from runtime.errors import BundleError

CHATML = {"<|im_start|>": 1, "<|im_end|>": 2, "<|endoftext|>": 0}


@pytest.mark.parametrize("template, family", [
    ("{{'<|im_start|>' + m['role']}}{{'<|im_end|>'}}", "chatml"),
    ("<|im_start|>{{role}}<|im_sep|>{{content}}<|im_end|>", "phi4"),
    ("<|im_start|>User:{{c}}<end_of_utterance>", "smolvlm"),
    ("{{ bos_token }}[INST] {{ m['content'] }} [/INST]", "mistral"),
    ("mistral-v7", "mistral"),
    ("<|user|>\n{{c}}<|end|>\n<|assistant|>\n", "phi3"),
    ("<start_of_turn>user\n{{c}}<end_of_turn>\n<start_of_turn>model\n", "gemma"),
    ("<|start_header_id|>{{r}}<|end_header_id|>\n\n{{c}}<|eot_id|>", "llama3"),
    ("<|header_start|>{{r}}<|header_end|>\n\n{{c}}<|eot|>", "llama4"),
    ("{{ messages }}", "unknown"),
])
def test_family_by_markers(template, family):
    assert family_of(template) == family


def test_thinking_only_with_both_think_tokens():
    fam = detect_chat_family("<|im_start|>", {**CHATML, "<think>": 5, "</think>": 6}, where="f.gguf")
    assert (fam.chat_format, fam.thinking, fam.tokens["<think>"]) == ("qwen3-chatml", True, 5)
    fam = detect_chat_family("<|im_start|>", {**CHATML, "<think>": 5}, where="f.gguf")
    assert (fam.chat_format, fam.thinking) == ("chatml", False)


def test_markers_must_be_special_tokens():
    vocab = special_vocab(["<|im_start|>", "<|im_end|>", "hello"], [1, 3, 1])  # <|im_start|> is NORMAL
    assert vocab == {"<|im_end|>": 1}
    with pytest.raises(BundleError, match="f.gguf: the chat template is ChatML but '<\\|im_start\\|>' is not"):
        detect_chat_family("<|im_start|>", vocab, where="f.gguf")


def test_unbuilt_and_unknown_families_are_named():
    from runtime.chat_family import require_built

    gemma = detect_chat_family("<start_of_turn>", {"<start_of_turn>": 3, "<end_of_turn>": 4}, where="g.gguf")
    assert gemma.chat_format is None
    with pytest.raises(BundleError, match="g.gguf: the chat format is Gemma; this runtime builds ChatML"):
        require_built(gemma, where="g.gguf")
    with pytest.raises(BundleError, match="no known chat family"):
        detect_chat_family("{{ x }}", CHATML, where="x.gguf")
    with pytest.raises(BundleError, match="no tokenizer.chat_template"):
        detect_chat_family(None, CHATML, where="x.gguf")
    assert detect_chat_family(None, CHATML, where="x.gguf", override="chatml").chat_format == "chatml"


@pytest.mark.parametrize("template", [
    "<|im_start|>{{ m }}<|im_end|>",
    "<|start_header_id|>{{ r }}<|end_header_id|>{{ c }}<|eot_id|>",
    "<start_of_turn>user\n{{ c }}<end_of_turn>",
])
def test_agrees_with_llama_cpps_detector(template):
    """llama.cpp's own substring detector (llama_chat_apply_template with a template string
    runs its built-in formatter, never Jinja) names the same family."""
    import ctypes

    llama_cpp = pytest.importorskip("llama_cpp")
    msgs = (llama_cpp.llama_chat_message * 1)(llama_cpp.llama_chat_message(role=b"user", content=b"hi"))
    buf = ctypes.create_string_buffer(4096)
    n = llama_cpp.llama_chat_apply_template(template.encode(), msgs, 1, True, buf, len(buf))
    assert n > 0
    rendered = buf.raw[:n].decode()
    expect = {"chatml": "<|im_start|>user\nhi<|im_end|>", "llama3": "<|start_header_id|>user<|end_header_id|>",
              "gemma": "<start_of_turn>user\nhi<end_of_turn>"}[family_of(template)]
    assert expect in rendered
