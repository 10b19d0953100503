"""The latency benchmark on a tiny bundle: every section runs, engines do the same work,
the report and plots are written. No timing is asserted."""

from __future__ import annotations

import json

import pytest

import runtime.threads
from benchmarks.bench_config import ArtifactRef, BenchConfig, select_artifacts
from benchmarks.hf_baseline import HFModel
from benchmarks.inputs import TokenCounts, stage_prompts
from benchmarks.latency import part, run_bench
from benchmarks.loops import HFSource, load_raw
from benchmarks.report import to_markdown, write_outputs
from benchmarks.stage_runner import (
    RuntimeStage,
    ban_ids,
    expected_new_tokens,
    fixed_length_control,
    stage_limits,
)
from runtime.backends import load_model
from runtime.backends.base import BackendOptions
from runtime.budget import BudgetController
from runtime.bundle import open_bundle
from runtime.errors import ConfigError, InputError
from runtime.generation import generate, run_to_end
from runtime.sampling import GREEDY, Sampler
from runtime.tokenizer import BundleTokenizer

COUNTS = TokenCounts(hint=4, extraction=6, thinking=6, answer=3)


@pytest.fixture(scope="module")
def bundle(bench_bundle_dir):
    return open_bundle(bench_bundle_dir)


def _tok(bundle, role):
    return BundleTokenizer(bundle.path(bundle.model(role).tokenizer))


def test_fixed_length_control_bans_every_way_to_stop_early(bundle):
    tok = _tok(bundle, "reasoner")
    c = fixed_length_control(tok)
    assert c.stop == ()
    for s in ("<|im_end|>", "<|endoftext|>", "</think>", "<think>", "<|im_start|>"):
        assert tok.token_id(s) in c.never
    assert c.think_end == tok.token_id("</think>")  # still forced at the thinking budget
    assert set(ban_ids(tok)) == set(c.never)


@pytest.mark.parametrize("backend", ["llamacpp", "onnx"])
def test_raw_loop_and_runtime_generate_the_same_tokens(bundle, backend):
    """Same file, greedy, same banned ids: the hand-written loop and the runtime's path
    must agree token for token on a stage without thinking (a wrong feed, position or
    ban in either loop shows up here)."""
    fmt = "gguf" if backend == "llamacpp" else "onnx"
    art = bundle.artifact("reasoner", fmt)
    tok = _tok(bundle, "reasoner")
    prompt = stage_prompts(tok, None, 0, COUNTS)["hint"]
    n = 12
    opts = BackendOptions(threads=1, context_length=512, kv_cache_type="f32")
    lm, _ = load_model(bundle, "reasoner", backend, art, opts)
    raw = load_raw(bundle, ArtifactRef("reasoner", backend, fmt, art.quant, art), 512, 1, "f32")
    try:
        stage = RuntimeStage(lm, tok, "reasoner")
        limits = stage_limits("hint", TokenCounts(hint=n))
        ctl = BudgetController(limits, stage.control, tok, lm.n_vocab)
        gen = run_to_end(generate(stage.session, tok, prompt, ctl, Sampler(GREEDY, 0), role="reasoner"))
        out = raw.generate(prompt, n, ban=ban_ids(tok))
        assert gen.generated == n and gen.token_ids == out["ids"]
        assert out["prefill_s"] > 0 and out["decode_s"] > 0
    finally:
        raw.close()
        lm.close()


def test_run_bench_on_a_tiny_bundle(bundle, tmp_path):
    sources = {r: bundle.model(r).source for r in bundle.manifest.models}
    hf = HFSource(lambda role: HFModel.from_checkpoint(sources[role], role))
    cfg = BenchConfig(threads=1, repeat=2, warmup=0, counts=COUNTS)
    seen: list[tuple[str, float]] = []
    rep = run_bench(bundle, cfg, hf=hf, progress=lambda stage, frac: seen.append((stage, frac)))
    # one progress callback for the whole run: fractions in [0, 1], never going back, ending at 1
    fracs = [f for _, f in seen]
    assert fracs == sorted(fracs) and fracs[0] >= 0 and fracs[-1] == 1.0
    assert any(s.startswith("pipeline: ") for s, _ in seen) and any(s.startswith("loops: ") for s, _ in seen)
    assert rep["schema"] == "edge-bench/1" and rep["settings"]["threads"] == 1
    assert rep["machine"]["packages"]["llama_cpp_python"] and rep["load_average"]["start"] is not None

    loops = rep["loops"]
    engines = {(r["role"], r["stage"], r["backend"]): set() for r in loops}
    for r in loops:
        engines[(r["role"], r["stage"], r["backend"])].add(r["engine"])
        assert len(r["reps"]) == 2 and r["summary"]["total_s"]["n"] == 2
        if r["stage"] != "vision":
            assert r["new_tokens"] == expected_new_tokens(r["stage"], COUNTS)
    assert engines[("reasoner", "reasoning", "llamacpp")] == {"runtime", "raw-llamacpp", "transformers"}
    assert engines[("perception", "extraction", "onnx")] == {"runtime", "raw-onnxruntime"}
    assert engines[("perception", "vision", "llamacpp")] == {"runtime", "raw-llamacpp", "transformers"}
    kinds = {(r["baseline"], r["metric"]) for r in rep["ratios"]}
    assert {("raw-llamacpp", "overhead"), ("raw-onnxruntime", "overhead"), ("transformers", "speedup")} <= kinds
    assert all(r["value"] is None or r["value"] > 0 for r in rep["ratios"])

    labels = {(p["backend"], p["residency"]) for p in rep["pipeline"]}
    assert labels == {("llamacpp", "resident"), ("llamacpp", "sequential"), ("onnx", "resident"),
                      ("onnx", "sequential")}
    for p in rep["pipeline"]:
        assert len(p["reps"]) == 2 and p["memory_timeline"]
        for r in p["reps"]:
            st = r["stages"]
            assert set(st) == {"hint", "vision", "extraction", "thinking", "answer"}
            assert st["thinking"]["tokens"] <= COUNTS.thinking and st["hint"]["tokens"] <= COUNTS.hint
            assert r["peak_rss_mb"] >= max(s["peak_rss_mb"] for s in st.values()) > 0
        if p["residency"] == "sequential":  # models take turns: loads are charged to stages
            assert any(s["load_s"] > 0 for r in p["reps"] for s in r["stages"].values())
    assert len(rep["pipeline_vs_baselines"]) == 4

    md = to_markdown(rep)
    for heading in ("## One request, per stage", "## Runtime against baselines", "## Stage detail"):
        assert heading in md
    paths = write_outputs(rep, tmp_path / "out")
    assert set(paths) == {"json", "markdown", "stage_breakdown", "tokens_per_s", "memory"}
    for p in paths.values():
        assert p.stat().st_size > 0
    assert json.loads(paths["json"].read_text())["schema"] == "edge-bench/1"
    assert paths["stage_breakdown"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bench_config_and_counts_validate():
    with pytest.raises(ConfigError):
        BenchConfig(repeat=0)
    with pytest.raises(ConfigError):
        BenchConfig(baselines=("pytorch",))
    assert TokenCounts.parse("hint=2,answer=3") == TokenCounts(hint=2, answer=3)
    with pytest.raises(InputError):
        TokenCounts.parse("thinking=lots")
    with pytest.raises(InputError):
        TokenCounts(hint=0)


def test_select_artifacts_refuses_an_empty_selection(bundle):
    with pytest.raises(ConfigError, match="nothing to benchmark"):
        select_artifacts(bundle, BenchConfig(quants=("q4_k_m",)))
    arts = select_artifacts(bundle, BenchConfig(backends=("onnx",)))
    assert {a.backend for refs in arts.values() for a in refs} == {"onnx"}


def test_part_maps_a_section_onto_its_share_of_the_job():
    seen = []
    sub = part(lambda stage, frac: seen.append((stage, frac)), 0.25, 0.75)
    sub("a", 0.0)
    sub("b", 0.5)
    sub("c", 2.0)  # clamped
    assert seen == [("a", 0.25), ("b", 0.5), ("c", 0.75)]
    assert part(None, 0, 1) is None


def test_default_threads_are_the_runtimes(monkeypatch):
    """The bench measures what `edge run` would use: the runtime's load-aware default, not
    all physical cores (on a busy machine those were 34x slower), and the runtime's bound."""
    monkeypatch.setattr(runtime.threads, "busy_cpus", lambda: runtime.threads.cpu_count())
    assert BenchConfig().thread_count == runtime.threads.default_threads() == 1
    assert BenchConfig(threads=2).thread_count == 2
    with pytest.raises(InputError, match="threads must be at most"):
        BenchConfig(threads=runtime.threads.max_threads() + 1)
