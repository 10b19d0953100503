"""The benchmark prompts' runs: token ids and image-embedding rows, in order."""

from __future__ import annotations

import numpy as np

from benchmarks.inputs import prompt_runs


def test_prompt_runs_split_text_and_consecutive_image_rows():
    embeds = np.arange(10).reshape(5, 2)
    prompt = [7, 8, None, None, None, 9, None, None, 3]
    runs = list(prompt_runs(prompt, embeds))
    assert [ids for ids, _ in runs] == [[7, 8], None, [9], None, [3]]
    images = [rows for ids, rows in runs if ids is None]
    assert [r.tolist() for r in images] == [embeds[:3].tolist(), embeds[3:5].tolist()]
    assert all(rows is None for ids, rows in runs if ids is not None)


def test_prompt_runs_of_text_only_and_of_nothing():
    assert list(prompt_runs([np.int64(4), 5], None)) == [([4, 5], None)]
    assert list(prompt_runs([], None)) == []
