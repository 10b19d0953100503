"""The prompt cache on disk: the reasoner's prompt-start states written by one pipeline are
restored by a later one (a new process in real use) exactly, and a damaged, foreign or
oversized file is never restored."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from runtime.backends.base import PrefixState
from runtime.pipeline import ExtractThink
from runtime.prefix_cache import PrefixKey
from runtime.prompt_store import PromptStore
from runtime.result import TokenEvent
from runtime.sampling import SamplingConfig

BACKENDS = ("llamacpp", "onnx")
OPTIONS = ["one", "two", "three", "four"]
HOT = SamplingConfig(temperature=3.0)  # follows every logit: a wrong restore changes the tokens


def _image(seed: int) -> np.ndarray:
    return (np.random.default_rng(seed).random((40, 56, 3)) * 255).astype(np.uint8)


def _run(et: ExtractThink, question: str = "Which one is red?") -> tuple[list[int], object]:
    ids, result = [], None
    for ev in et.stream(_image(32), question, OPTIONS, hint_budget=3, extraction_budget=6, thinking_budget=8,
                        answer_budget=4, sampling=HOT, seed=5):
        if isinstance(ev, TokenEvent) and ev.stage in ("hint", "thinking", "answer"):
            ids.append(ev.token_id)
        result = getattr(ev, "result", result)
    return ids, result


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_later_pipeline_restores_the_starts_from_disk_exactly(rt_bundle, backend, tmp_path):
    folder = tmp_path / "prompts"
    kw = dict(backend=backend, threads=1, speed_cache=False)
    with ExtractThink.load(rt_bundle, prefix_cache_mb=0, **kw) as cold_et:
        cold_ids, cold = _run(cold_et)
    with ExtractThink.load(rt_bundle, prompt_cache=folder, **kw) as first_et:
        first_ids, first = _run(first_et, "How many are there?")
    assert first.cache_hits["reasoner_prefix"] is False
    assert len(list(folder.glob("*.npz"))) == 2  # the hint's start and the reasoning prompt's start
    with ExtractThink.load(rt_bundle, prompt_cache=folder, **kw) as warm_et:  # nothing in its memory
        warm_ids, warm = _run(warm_et)
    assert warm.cache_hits["reasoner_prefix"] is True
    assert warm_ids == cold_ids and warm.answer_text == cold.answer_text
    for stage in ("hint", "thinking"):  # the start (> 20 tokens) came from disk, not a prefill
        assert warm.stages[stage].reused_prompt_tokens >= 20


def _key(n: int = 5) -> PrefixKey:
    return PrefixKey("", "art", "f16", tuple(range(n)), variant="text")


def _state(n: int = 5, blob: bool = True, fill: int = 7) -> PrefixState:
    if blob:
        data = np.full(1000, fill, dtype=np.uint8)
        return PrefixState(n_past=n, nbytes=data.nbytes, owner="llamacpp|m|1|kv=f16", data=data)
    arrays = tuple(np.full((1, 2, n, 4), fill, dtype=np.float32) for _ in range(4))
    return PrefixState(n_past=n, nbytes=sum(a.nbytes for a in arrays), owner="onnx|m", data=arrays)


@pytest.mark.parametrize("blob", [True, False])
def test_a_state_round_trips_in_the_backends_form(tmp_path, blob):
    store = PromptStore(tmp_path)
    store.put(_key(), _state(blob=blob))
    got = store.get(_key())
    want = _state(blob=blob)
    assert (got.n_past, got.nbytes, got.owner) == (want.n_past, want.nbytes, want.owner)
    if blob:
        assert isinstance(got.data, np.ndarray) and np.array_equal(got.data, want.data)
    else:
        assert isinstance(got.data, tuple) and all(np.array_equal(a, b) for a, b in zip(got.data, want.data, strict=True))
    assert store.get(_key(6)) is None  # another start: another file


def _only_file(folder) -> object:
    (path,) = folder.glob("*.npz")
    return path


def _rewrite(path, change) -> None:
    with np.load(path, allow_pickle=False) as npz:
        files = {k: npz[k] for k in npz.files}
    meta = json.loads(files["meta"].tobytes())
    change(meta, files)
    files["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    np.savez(path.with_suffix(""), **files)  # numpy appends the .npz


@pytest.mark.parametrize("damage", ["payload", "key", "truncated", "format", "pickled"])
def test_a_damaged_or_foreign_file_is_removed_not_restored(tmp_path, damage, caplog):
    store = PromptStore(tmp_path)
    store.put(_key(), _state())
    path = _only_file(tmp_path)
    if damage == "payload":  # the arrays no longer hash to the record's SHA-256
        _rewrite(path, lambda meta, files: files.__setitem__("a0", files["a0"] + 1))
    elif damage == "key":  # a file renamed to another key's name
        _rewrite(path, lambda meta, files: meta.__setitem__("key", {**meta["key"], "prefix": [9]}))
    elif damage == "format":
        _rewrite(path, lambda meta, files: meta.__setitem__("format", 99))
    elif damage == "truncated":
        path.write_bytes(path.read_bytes()[:100])
    else:  # an object array needs pickle to load: refused
        np.savez(path.with_suffix(""), meta=np.array([{"x": 1}], dtype=object))
    with caplog.at_level(logging.WARNING, logger="runtime.prompt_store"):
        assert store.get(_key()) is None
    assert "ignoring the prompt state" in caplog.text and not path.exists()


def test_the_folder_keeps_the_most_recently_used_within_its_bytes(tmp_path):
    size = len(_only_file_after_put(tmp_path / "probe").read_bytes())
    store = PromptStore(tmp_path / "s", max_bytes=int(size * 2.5))
    for n in (5, 6, 7):
        store.put(_key(n), _state(n))
        if n == 6:
            assert store.get(_key(5)) is not None  # 5 is now more recent than 6
    assert store.get(_key(5)) is not None and store.get(_key(7)) is not None
    assert store.get(_key(6)) is None
    big = PromptStore(tmp_path / "b", max_bytes=10)
    big.put(_key(), _state())  # larger than the whole folder: not kept
    assert not list((tmp_path / "b").glob("*.npz"))


def _only_file_after_put(folder):
    PromptStore(folder).put(_key(), _state())
    return _only_file(folder)


def test_an_unwritable_folder_is_a_miss_not_an_error(tmp_path, caplog):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    store = PromptStore(blocker / "sub")
    with caplog.at_level(logging.WARNING, logger="runtime.prompt_store"):
        store.put(_key(), _state())
    assert store.get(_key()) is None and "cannot keep a prompt state" in caplog.text


def test_cli_refuses_a_prompt_cache_that_is_a_file_in_one_line(tmp_path, capsys):
    from edge.cli import main

    blocker = tmp_path / "file"
    blocker.write_text("x")
    rc = main(["run", "--question", "What is it?", "--prompt-cache", str(blocker)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "--prompt-cache must name a folder" in err[0]
