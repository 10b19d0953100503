"""Every prompt the project uses, in one place (training builds the same prompts).

Structure follows the paper (see docs/architecture.md): stage 1 asks the perception
model for a fine-grained description with a question-specific focus, and never shows it
the answer options; stage 2 gives the text-only reasoner a role line, the description,
the question with its options and an answer-format instruction. The wording is ours.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from runtime.chat_format import Message, Segment, Text, render_prompt

LETTERS = "ABCDEFGHIJ"

EXTRACTION_INSTRUCTION = (
    "Describe the fine-grained content of the image: the scene, the objects, their "
    "attributes and relationships, where each instance is located, and any text."
)
FOCUS_CLAUSE = " Especially pay attention to {focus}."
CAPTION_INSTRUCTION = "Describe the image in detail."

HINT_INSTRUCTION = (
    "A question about an image follows. Do not answer it. In one short phrase, say what in "
    "the image someone must look at to answer it, for example \"the spatial relationships "
    "between objects in the image\".\nQuestion: {question}"
)

REASONER_ROLE = (
    "You are a reasoning expert. You cannot see the image; you answer questions about it "
    "from a detailed description written by someone who could."
)
THINKING_FORMAT = (
    "Think step by step. Then give the final answer alone on the last line, in the form "
    "\"Answer: {form}\"."
)
DIRECT_FORMAT = "Answer directly. The last line must be \"Answer: {form}\"."
DIRECT_E2E = "Answer with the option's letter from the given choices directly."
DIRECT_E2E_OPEN = "Answer the question using a single word or phrase."


def format_options(options: Sequence[str] | None) -> str:
    if not options:
        return ""
    if len(options) > len(LETTERS):
        raise ValueError(f"at most {len(LETTERS)} options are supported")
    return "\n".join(f"{LETTERS[i]}. {opt}" for i, opt in enumerate(options))


def question_block(question: str, options: Sequence[str] | None) -> str:
    opts = format_options(options)
    return f"{question.strip()}\nOptions:\n{opts}" if opts else question.strip()


def extraction_text(focus: str | None) -> str:
    """The stage-1 instruction (also the training prompt for extraction tuning)."""
    text = EXTRACTION_INSTRUCTION
    focus = (focus or "").strip().rstrip(".")
    if focus:
        text += FOCUS_CLAUSE.format(focus=focus)
    return text


def hint_prompt(question: str, *, think_tags: bool = True) -> list[Segment]:
    """Question -> focus phrase; the reasoner answers in non-thinking mode.

    `think_tags=False` is for a reasoner whose vocabulary has no <think> (a stock GGUF
    chat model): no empty think block is inserted.
    """
    text = HINT_INSTRUCTION.format(question=question.strip())
    return render_prompt([Message("user", text)], thinking=False if think_tags else None)


def extraction_prompt(focus: str | None, *, system: str | None = None) -> list[Segment]:
    return render_prompt([Message("user", extraction_text(focus), image=True)], thinking=None, system=system)


def caption_prompt(*, system: str | None = None) -> list[Segment]:
    return render_prompt([Message("user", CAPTION_INSTRUCTION, image=True)], thinking=None, system=system)


def reasoning_user_text(description: str, question: str, options: Sequence[str] | None, *, thinking: bool) -> str:
    form = "<letter>" if options else "<short answer>"
    fmt = (THINKING_FORMAT if thinking else DIRECT_FORMAT).format(form=form)
    return (
        f"{REASONER_ROLE}\n\nDescription: {description.strip()}\n\n"
        f"Question: {question_block(question, options)}\n\n{fmt}"
    )


def reasoning_prompt(
    description: str, question: str, options: Sequence[str] | None, *, thinking: bool,
    think_tags: bool = True,
) -> list[Segment]:
    text = reasoning_user_text(description, question, options, thinking=thinking)
    return render_prompt([Message("user", text)], thinking=thinking if think_tags else None)


BLIND_ROLE = (
    "You are a reasoning expert. A question about an image follows, but neither you nor "
    "anyone else can describe the image: answer from the question alone."
)


def blind_prompt(
    question: str, options: Sequence[str] | None, *, thinking: bool, think_tags: bool = True
) -> list[Segment]:
    """The blind baseline: the reasoner answers without any description of the image."""
    form = "<letter>" if options else "<short answer>"
    fmt = (THINKING_FORMAT if thinking else DIRECT_FORMAT).format(form=form)
    text = f"{BLIND_ROLE}\n\nQuestion: {question_block(question, options)}\n\n{fmt}"
    return render_prompt([Message("user", text)], thinking=thinking if think_tags else None)


def end_to_end_prompt(question: str, options: Sequence[str] | None, *, system: str | None = None) -> list[Segment]:
    """The perception model answering directly (the end-to-end baseline)."""
    tail = DIRECT_E2E if options else DIRECT_E2E_OPEN
    text = f"{question_block(question, options)}\n{tail}"
    return render_prompt([Message("user", text, image=True)], thinking=None, system=system)


_VARIABLE = "\x00"  # stands for a request's own text while a prompt is cut at it


def shared_start(build: Callable[[str], list[Segment]]) -> list[Segment]:
    """The segments before the first text of its own that `build(text)` puts into a prompt:
    the start every prompt `build` makes shares (for the reasoner: the user header, the role
    or instruction line and a label), whose KV state the runtime keeps across requests.

    `shared_start(lambda q: hint_prompt(q))` is the hint instruction up to "Question:". The
    whitespace before the variable text is left out: BPE joins it to the text's first word, so
    only what comes before it tokenizes the same in every prompt."""
    out: list[Segment] = []
    for seg in build(_VARIABLE):
        if isinstance(seg, Text) and _VARIABLE in seg.text:
            head = seg.text.split(_VARIABLE, 1)[0].rstrip()
            return [*out, Text(head)] if head else out
        out.append(seg)
    raise ValueError("the prompt does not contain the text it was built with")
