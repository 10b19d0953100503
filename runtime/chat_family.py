"""Which chat family a model's `tokenizer.chat_template` belongs to, without rendering it.

A template is Jinja code from a model file: it is never compiled nor rendered here (the
runtime builds prompts itself, runtime.chat_format). The family is recognised by the
marker strings it contains, tested in the order llama.cpp's own template detector uses,
then cross-checked against the vocabulary: every marker the family's prompts are built
from must be one control or user-defined token (matched by text, never by id).

Families the runtime can build prompts for: "qwen3-chatml" (ChatML with <think> and
</think> tokens) and "chatml" (the same turns, no think block: SmolLM2, Qwen2.5...).
Others (Llama 3, Gemma, Phi, Mistral...) are recognised and refused by name.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from runtime.errors import BundleError

# GGUF tokenizer.ggml.token_type values
NORMAL, CONTROL, USER_DEFINED = 1, 3, 4

BUILT = ("qwen3-chatml", "chatml")  # families runtime.chat_format builds

# family -> the marker tokens its prompts are made of (each must be one special token)
MARKERS: dict[str, tuple[str, ...]] = {
    "chatml": ("<|im_start|>", "<|im_end|>"),
    "phi4": ("<|im_start|>", "<|im_sep|>", "<|im_end|>"),
    "llama3": ("<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"),
    "llama4": ("<|header_start|>", "<|header_end|>", "<|eot|>"),
    "gemma": ("<start_of_turn>", "<end_of_turn>"),
    "phi3": ("<|user|>", "<|assistant|>", "<|end|>"),
}
NAMES = {
    "chatml": "ChatML", "phi4": "Phi-4", "smolvlm": "SmolVLM", "mistral": "Mistral/Llama 2 [INST]",
    "phi3": "Phi-3", "gemma": "Gemma", "llama3": "Llama 3", "llama4": "Llama 4",
}


@dataclass(frozen=True)
class ChatFamily:
    family: str  # "chatml", "llama3", "gemma", ...
    chat_format: str | None  # the runtime's prompt format for it (one of BUILT), None if not built
    thinking: bool  # <think> and </think> are single special tokens
    tokens: dict[str, int] = field(default_factory=dict)  # marker text -> id

    @property
    def label(self) -> str:
        return NAMES.get(self.family, self.family)


def family_of(template: str) -> str:
    """The family name from marker substrings only ("unknown" when none matches)."""
    has = template.__contains__
    if has("<|im_start|>"):
        if has("<|im_sep|>"):
            return "phi4"
        if has("<end_of_utterance>"):
            return "smolvlm"  # <|im_start|> is its BOS there, not a turn marker
        return "chatml"
    if template.lstrip().startswith("mistral") or has("[INST]"):
        return "mistral"
    if has("<|assistant|>") and has("<|end|>"):
        return "phi3"
    if has("<start_of_turn>"):
        return "gemma"
    if has("<|start_header_id|>") and has("<|end_header_id|>"):
        return "llama3"
    if has("<|header_start|>") and has("<|header_end|>"):
        return "llama4"
    return "unknown"


def special_vocab(tokens: Sequence[str], types: Sequence[int] | None) -> dict[str, int]:
    """{text: id} of the control and user-defined tokens (the first id wins for duplicates)."""
    out: dict[str, int] = {}
    if types is None or len(types) != len(tokens):
        return out
    for i, (text, kind) in enumerate(zip(tokens, types, strict=True)):
        if kind in (CONTROL, USER_DEFINED):
            out.setdefault(text, i)
    return out


def detect_chat_family(template: str | None, specials: Mapping[str, int], *, where: str,
                       override: str | None = None) -> ChatFamily:
    """Recognise the family of `template` (or take `override`, a family name) and check its
    markers against `specials` ({text: id} of special tokens); raises BundleError naming
    `where` (the file) and the reason."""
    if override:
        family = override
        if family == "qwen3-chatml":
            family = "chatml"
    elif not template:
        raise BundleError(f"{where}: no tokenizer.chat_template (a base model, or a converter dropped it); "
                          "pass --chat-format to say which family it is")
    else:
        family = family_of(template)
    if family == "unknown":
        raise BundleError(f"{where}: tokenizer.chat_template matches no known chat family "
                          "(ChatML/Qwen, Llama 3, Gemma, Phi, Mistral)")
    tokens: dict[str, int] = {}
    for text in MARKERS.get(family, ()):
        if text not in specials:
            raise BundleError(f"{where}: the chat template is {NAMES.get(family, family)} but {text!r} is not "
                              "a single special token in the vocabulary")
        tokens[text] = specials[text]
    thinking = "<think>" in specials and "</think>" in specials
    if thinking:
        tokens.update({t: specials[t] for t in ("<think>", "</think>")})
    built = None
    if family == "chatml":
        built = "qwen3-chatml" if thinking else "chatml"
    return ChatFamily(family=family, chat_format=built, thinking=thinking, tokens=tokens)


def require_built(fam: ChatFamily, *, where: str) -> str:
    """The runtime prompt format for `fam`, or a BundleError saying the family is not built."""
    if fam.chat_format is None:
        raise BundleError(f"{where}: the chat format is {fam.label}; this runtime builds ChatML prompts only "
                          "(Qwen3, Qwen2.5, SmolLM2...)")
    return fam.chat_format
