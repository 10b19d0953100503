"""Examples tokenize exactly as the runtime encodes prompts; batches and data order."""

from __future__ import annotations

import numpy as np
import pytest

from runtime import prompts
from runtime.chat_format import render_target
from runtime.manifest import ImagePreprocess
from runtime.tokenizer import BundleTokenizer, encode_segments
from training.collate import Collator, StageData, step_slices
from training.config import DataSource
from training.examples import (
    IGNORE,
    ExampleSource,
    conversation_example,
    single_turn,
    synthetic_example,
    tokenize,
)

IMAGE_TOKENS = 16


@pytest.fixture(scope="module")
def tok(synth_tokenizer_dir):
    return BundleTokenizer(synth_tokenizer_dir / "tokenizer.json")


@pytest.fixture(scope="module")
def records(synth_dir):
    from training.data.synth import SynthDataset

    return list(SynthDataset(synth_dir).records("train"))


def _tokenize(ex, tok, max_length=4096):
    return tokenize(ex, tok, image_tokens=IMAGE_TOKENS, image_token_id=tok.token_id("<|image_pad|>"),
                    max_length=max_length)


def test_extraction_example_matches_the_runtime_prompt(tok, records, synth_dir):
    rec = records[0]
    image_id = tok.token_id("<|image_pad|>")
    ex = synthetic_example(rec, "extraction", str(synth_dir / rec["image"]))
    t = _tokenize(ex, tok)
    prompt = [image_id if i is None else i
              for i in encode_segments(tok, prompts.extraction_prompt(rec["focus"]), image_tokens=IMAGE_TOKENS)]
    target = encode_segments(tok, render_target(rec["extraction"]))
    assert t.input_ids == prompt + target
    assert t.labels == [IGNORE] * len(prompt) + target
    assert t.input_ids.count(image_id) == IMAGE_TOKENS
    assert target[-1] == tok.token_id("<|im_end|>")
    assert t.n_targets == len(target)
    assert t.image == str(synth_dir / rec["image"])


def test_every_style_builds_and_trains_only_the_reply(tok, records):
    for style in ("caption", "direct", "extraction", "trace", "hint"):
        ex = synthetic_example(records[1], style, "img.png" if style in ("caption", "direct", "extraction") else None)
        t = _tokenize(ex, tok)
        first = next(i for i, x in enumerate(t.labels) if x != IGNORE)
        assert all(x == IGNORE for x in t.labels[:first])
        assert t.labels[first:] == t.input_ids[first:]
        assert (ex.image is None) == (style in ("trace", "hint"))


def test_trace_is_qwen3_thinking_format(tok, records):
    rec = records[2]
    t = _tokenize(synthetic_example(rec, "trace", None), tok)
    think_start, think_end = tok.token_id("<think>"), tok.token_id("</think>")
    trained = [x for x in t.labels if x != IGNORE]
    prompt = [x for x, lab in zip(t.input_ids, t.labels, strict=True) if lab == IGNORE]
    assert prompt[-2] == think_start  # the prefix opens the think block ...
    assert think_end in trained and think_start not in trained  # ... the model closes it
    text = "".join(tok.token_bytes(i).decode() for i in trained)
    assert text.endswith(rec["answer_line"] + "<|im_end|>")


def test_caption_share_picks_the_description_deterministically(records):
    for rec in records[:6]:
        with_caption = synthetic_example(rec, "trace", None, caption_share=1.0)
        with_extraction = synthetic_example(rec, "trace", None, caption_share=0.0)
        assert rec["caption"] in with_caption.parts[0][0][1].text
        assert rec["extraction"] in with_extraction.parts[0][0][1].text
    half = [synthetic_example(r, "trace", None, caption_share=0.5) for r in records]
    again = [synthetic_example(r, "trace", None, caption_share=0.5) for r in records]
    assert half == again
    n_caption = sum(r["caption"] in e.parts[0][0][1].text for r, e in zip(records, half, strict=True))
    assert 0 < n_caption < len(records)


def test_thinking_share_trains_the_runtimes_non_thinking_form(tok, records):
    """thinking_share 0: the prompt is what the runtime sends with thinking off (direct-answer
    instruction, empty think block) and the target is the answer line alone."""
    rec = records[3]
    t = _tokenize(synthetic_example(rec, "trace", None, thinking_share=0.0), tok)
    prompt = encode_segments(tok, prompts.reasoning_prompt(rec["extraction"], rec["question"], rec.get("options"),
                                                            thinking=False))
    target = encode_segments(tok, render_target(rec["answer_line"]))
    assert t.input_ids == prompt + target
    assert t.labels == [IGNORE] * len(prompt) + target
    assert tok.token_id("</think>") not in target
    thinking = _tokenize(synthetic_example(rec, "trace", None, thinking_share=1.0), tok)
    assert thinking.input_ids == _tokenize(synthetic_example(rec, "trace", None), tok).input_ids
    half = [synthetic_example(r, "trace", None, thinking_share=0.5) for r in records]
    assert half == [synthetic_example(r, "trace", None, thinking_share=0.5) for r in records]
    end = tok.token_id("</think>")
    n_think = sum(end in _tokenize(e, tok).labels for e in half)
    assert 0 < n_think < len(records)


def test_special_token_text_in_a_question_stays_plain(tok, records):
    rec = dict(records[0], question="Is it red? </think> <|im_end|> Answer: A")
    t = _tokenize(synthetic_example(rec, "direct", "img.png"), tok)
    specials = {tok.token_id(s) for s in ("</think>", "<|im_end|>")}
    prompt = [x for x, lab in zip(t.input_ids, t.labels, strict=True) if lab == IGNORE]
    # the only <|im_end|> in the prompt closes the user turn
    assert sum(x in specials for x in prompt) == 1


def test_conversation_turns_and_caption_style(tok):
    qa = [("What colour is the cat?", "Grey."), ("And the dog?", "Brown.")]
    ex = conversation_example(qa, "img.png", id="x")
    t = _tokenize(ex, tok)
    text = "".join(tok.token_bytes(i).decode() for i in t.input_ids)
    assert text.count("<|im_start|>assistant\n") == 2 and text.count("<|image_pad|>") == IMAGE_TOKENS
    trained = "".join(tok.token_bytes(i).decode() for i in t.input_ids if i in set(t.labels))
    assert "Grey." in trained and "Brown." in trained
    labelled = "".join(tok.token_bytes(x).decode() for x in t.labels if x != IGNORE)
    assert labelled == "Grey.<|im_end|>Brown.<|im_end|>"
    cap = conversation_example(qa, "img.png", style="caption")
    assert cap.parts[0][0] == tuple(prompts.caption_prompt())


def test_too_long_examples_are_cut_or_emptied(tok, records):
    ex = synthetic_example(records[0], "extraction", "img.png")
    full = _tokenize(ex, tok)
    cut = _tokenize(ex, tok, max_length=len(full.input_ids) - 5)
    assert cut.input_ids == full.input_ids[:-5]
    image_id = tok.token_id("<|image_pad|>")
    empty = _tokenize(ex, tok, max_length=full.input_ids.index(image_id) + 3)
    assert empty.image is None and empty.n_targets == 0


def test_collator_pads_and_normalises_like_the_runtime(tok, records, synth_dir):
    from runtime.image import load_image, preprocess

    prep = ImagePreprocess(size=32, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    col = Collator(tok, pad_id=tok.token_id("<|endoftext|>"), max_length=4096, image_tokens=IMAGE_TOKENS,
                   image_token_id=tok.token_id("<|image_pad|>"), image=prep)
    items = [col.tokenize(synthetic_example(r, s, str(synth_dir / r["image"])))
             for r, s in ((records[0], "direct"), (records[1], "extraction"))]
    batch = col.collate(items)
    n = max(len(i.input_ids) for i in items)
    assert batch["input_ids"].shape == (2, n) and batch["labels"].shape == (2, n)
    assert batch["attention_mask"].sum(1).tolist() == [len(i.input_ids) for i in items]
    short = 0 if len(items[0].input_ids) < n else 1
    assert (batch["labels"][short, len(items[short].input_ids):] == IGNORE).all()
    assert batch["pixel_values"].shape == (2, 3, 32, 32)
    want = preprocess(load_image(synth_dir / records[0]["image"]), prep).astype(np.float32) / 255 * 2 - 1
    np.testing.assert_allclose(batch["pixel_values"][0].numpy().transpose(1, 2, 0), want, atol=1e-6)


def test_unreadable_image_contributes_nothing(tok, records, tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    prep = ImagePreprocess(size=32, mean=(0.5,) * 3, std=(0.5,) * 3)
    col = Collator(tok, pad_id=0, max_length=4096, image_tokens=IMAGE_TOKENS,
                   image_token_id=tok.token_id("<|image_pad|>"), image=prep)
    batch = col.collate([col.tokenize(synthetic_example(records[0], "direct", str(bad)))])
    assert batch["pixel_values"] is None and (batch["labels"] == IGNORE).all()


def test_stage_data_order_is_a_pure_function_of_the_seed(synth_dir):
    def make(seed, weight=1.0):
        return StageData([ExampleSource(DataSource("synthetic", str(synth_dir), "direct")),
                          ExampleSource(DataSource("synthetic", str(synth_dir), "hint", weight=weight))], seed)

    a, b = make(0), make(0)
    n = a.epoch_size
    assert n == 2 * 72
    assert a.positions(0, 3 * n) == b.positions(0, 3 * n)
    epoch0 = a.positions(0, n)
    assert sorted(epoch0) == sorted({(s, i) for s in (0, 1) for i in range(72)})
    assert epoch0 != a.positions(n, n)  # each epoch is reshuffled
    assert make(1).positions(0, n) != epoch0
    half = make(0, weight=0.5)
    assert half.epoch_size == 72 + 36
    assert sum(1 for s, _ in half.positions(0, half.epoch_size) if s == 1) == 36


def test_step_slices_split_the_global_batch():
    for micro, accum, world in ((4, 1, 1), (2, 2, 1), (2, 1, 2), (1, 2, 2)):
        covered = []
        for rank in range(world):
            for start, count in step_slices(3, micro, accum, world, rank):
                covered += list(range(start, start + count))
        g = micro * accum * world
        assert sorted(covered) == list(range(3 * g, 4 * g))


def test_llava_json_source(tmp_path, synth_dir):
    import json

    from PIL import Image

    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    rows = [{"id": "1", "image": "a.png", "conversations": [{"from": "human", "value": "<image>\nWhat?"},
                                                              {"from": "gpt", "value": "A square."}]},
            {"id": "2", "conversations": [{"from": "human", "value": "Hi"}]},  # no answer: skipped
            {"id": "3", "image": "missing.png", "conversations": [{"from": "human", "value": "<image>\nQ"},
                                                                    {"from": "gpt", "value": "A"}]}]
    (tmp_path / "d.json").write_text(json.dumps(rows))
    src = ExampleSource(DataSource("llava_json", str(tmp_path / "d.json"), "conversation"))
    assert len(src) == 1
    ex = src.example(0)
    assert ex.image == str((tmp_path / "a.png").resolve()) and ex.parts[1][0][0].text == "A square."
    assert single_turn([], []).image is None


def test_grid_style_lists_every_cell_in_patch_order(synth_dir):
    from training.data.synth import SynthDataset
    from training.examples import grid_text

    ds = SynthDataset(synth_dir)
    src = ExampleSource(DataSource("synthetic", str(synth_dir), "grid"))
    assert len(src) == 24  # one per image
    scenes = ds.scenes()
    for i in range(len(src)):
        rec = src.records[i]
        scene = scenes[rec["scene_id"]]
        text = grid_text(scene)
        ex = src.example(i)
        assert ex.image is not None and ex.parts[1][0][0].text == text
        if scene.kind == "chart":
            assert text.startswith("A bar chart.") and all(f"{b.color} {b.value}" in text for b in scene.bars)
            continue
        cells = text.split(". ")
        assert len(cells) == 9 and cells[0].startswith("Top left:") and cells[-1].startswith("Bottom right:")
        assert sum("nothing" in c for c in cells) == 9 - len(scene.shapes) - len(scene.texts)


def test_value_answer_traces_end_in_the_options_text_and_map_back_to_the_letter(tok, records):
    from runtime.answer import parse_answer
    from runtime.chat_format import THINK_END

    mc = [r for r in records if r.get("options")][:50]
    open_ended = [r for r in records if not r.get("options")][:10]
    assert mc and open_ended
    for rec in mc:
        ex = synthetic_example(rec, "trace", None, answer="value")
        t = _tokenize(ex, tok)
        reply = b"".join(tok.token_bytes(i) for i in t.labels if i != IGNORE).decode()
        thinking, answer_line = reply.split(THINK_END)
        assert "The options are" not in thinking
        assert thinking.rstrip().endswith(f"The answer is {rec['answer_text']}.")
        assert answer_line.strip().startswith(f"Answer: {rec['answer_text']}")
        # the runtime reads the option's text back as the record's letter
        assert parse_answer(answer_line, rec["options"]).value == rec["answer"]
    for rec in open_ended:  # unchanged without options
        a = _tokenize(synthetic_example(rec, "trace", None, answer="value"), tok)
        b = _tokenize(synthetic_example(rec, "trace", None), tok)
        assert a.input_ids == b.input_ids
