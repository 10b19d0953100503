"""The tokenizer's training corpus for the synthetic world.

Every text a model trained on the world reads or writes: the runtime's prompts and
instructions, the grid targets, and each training record's prompts and targets. A BPE
trained on it (`training.tokenizer_build.train_bpe_tokenizer`) covers the world's whole
vocabulary with a few thousand entries.
"""

from __future__ import annotations

from pathlib import Path

from runtime import prompts
from runtime.chat_format import to_string
from training.data.synth import SynthDataset
from training.examples import GRID_INSTRUCTION, grid_text


def tokenizer_corpus(data_dir: Path) -> list[str]:
    """Every text the models read or write: records of the training split and the prompts."""
    texts = [
        prompts.EXTRACTION_INSTRUCTION, prompts.CAPTION_INSTRUCTION, prompts.HINT_INSTRUCTION,
        prompts.REASONER_ROLE, prompts.THINKING_FORMAT, prompts.DIRECT_FORMAT, prompts.DIRECT_E2E,
        prompts.DIRECT_E2E_OPEN, GRID_INSTRUCTION,
    ]
    ds = SynthDataset(data_dir)
    texts += [grid_text(scene) for scene in ds.scenes().values()]
    for rec in ds.records("train"):
        opts = rec.get("options")
        texts.append(to_string(prompts.end_to_end_prompt(rec["question"], opts)))
        texts.append(to_string(prompts.extraction_prompt(rec["focus"])))
        texts += [rec["extraction"], rec["caption"], rec["thinking"], rec["answer_line"]]
    return texts
