"""Synthetic records as portable training files for other trainers.

The project's own trainer reads the records directly (`training.examples`); these
functions write the same examples in two common interchange formats:

- chat messages (one JSON object per line: {"id", "kind", "messages": [user, assistant]})
  for the reasoner: thinking traces and focus-phrase (hint) examples, built with the
  runtime's prompt wording;
- LLaVA conversation JSON for the perception styles (direct answers, captions,
  extractions), the format LLaVA-style trainers and this repo's extraction pipeline read.
"""

from __future__ import annotations

from runtime import prompts
from runtime.chat_format import THINK_END, THINK_START
from runtime.errors import ConfigError

DESCRIPTIONS = ("extraction", "caption")
LLAVA_STYLES = ("direct", "caption", "extraction")


def trace_messages(rec: dict, *, description: str = "extraction", thinking: bool = True) -> dict:
    """A reasoner example: description + question -> <think>trace</think> Answer: X."""
    if description not in DESCRIPTIONS:
        raise ConfigError(f"description must be one of {', '.join(DESCRIPTIONS)}")
    user = prompts.reasoning_user_text(rec[description], rec["question"], rec.get("options"), thinking=thinking)
    if thinking:
        reply = f"{THINK_START}\n{rec['thinking'].strip()}\n{THINK_END}\n\n{rec['answer_line']}"
    else:
        reply = f"{THINK_START}\n\n{THINK_END}\n\n{rec['answer_line']}"
    return {"id": rec["id"], "kind": "trace", "thinking": thinking, "category": rec.get("category"),
            "messages": [{"role": "user", "content": user}, {"role": "assistant", "content": reply}]}


def hint_messages(rec: dict) -> dict:
    """A focus-phrase example: question (never the options) -> what to pay attention to."""
    user = prompts.HINT_INSTRUCTION.format(question=rec["question"].strip())
    reply = f"{THINK_START}\n\n{THINK_END}\n\n{rec['focus']}"
    return {"id": rec["id"] + "-hint", "kind": "hint", "thinking": False, "category": rec.get("category"),
            "messages": [{"role": "user", "content": user}, {"role": "assistant", "content": reply}]}


def llava_conversation(rec: dict, style: str) -> dict:
    """One LLaVA-format example ({"id", "image", "conversations"}) of a perception style."""
    if style == "direct":
        tail = prompts.DIRECT_E2E if rec.get("options") else prompts.DIRECT_E2E_OPEN
        human = f"{prompts.question_block(rec['question'], rec.get('options'))}\n{tail}"
        gpt = rec["answer"]
    elif style == "caption":
        human, gpt = prompts.CAPTION_INSTRUCTION, rec["caption"]
    elif style == "extraction":
        human, gpt = prompts.extraction_text(rec["focus"]), rec["extraction"]
    else:
        raise ConfigError(f"style must be one of {', '.join(LLAVA_STYLES)}, not {style!r}")
    return {"id": rec["id"], "image": rec["image"],
            "conversations": [{"from": "human", "value": f"<image>\n{human}"}, {"from": "gpt", "value": gpt}]}
