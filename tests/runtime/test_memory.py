"""The memory planner: sizes, KV cache, resident / sequential / refuse with a suggestion."""

from __future__ import annotations

import pytest

from runtime.errors import InputError, MemoryPlanError
from runtime.manifest import Artifact, TextShape
from runtime.memory import (
    BASE_PROCESS_BYTES,
    GiB,
    MiB,
    available_for_models,
    current_rss_mb,
    kv_cache_bytes,
    model_need,
    parse_size,
    peak_rss_mb,
    plan_memory,
)

QWEN3_0_6B = TextShape(1024, 28, 16, 8, 128, 3072, 151_936, 40_960, 1e6, 1e-6, True)


@pytest.mark.parametrize("text, want", [("2G", 2 * GiB), ("2g", 2 * GiB), ("1.5GiB", int(1.5 * GiB)),
                                        ("512M", 512 * MiB), ("300MB", 300 * MiB), ("1024", 1024),
                                        ("64k", 65536), (" 3 GB ", 3 * GiB), (7, 7)])
def test_parse_size(text, want):
    assert parse_size(text) == want


@pytest.mark.parametrize("bad", ["", "two gigs", "-1G", "0", "1X", 0, -5])
def test_parse_size_rejects(bad):
    with pytest.raises(InputError):
        parse_size(bad)


def test_kv_cache_bytes_formula():
    # 2 (K, V) x 28 layers x 8 kv heads x 128 head_dim x 4096 positions x 2 bytes (f16)
    assert kv_cache_bytes(QWEN3_0_6B, 4096, 2) == 2 * 28 * 8 * 128 * 4096 * 2 == 469_762_048


def _need(role, fmt, quant, size_mb, ctx=4096):
    art = Artifact(format=fmt, quant=quant, files={"model": f"{role}-{quant}"})
    return model_need(role, art, {f"{role}-{quant}": size_mb * MiB}, QWEN3_0_6B, ctx, 2)


def test_model_need_parts():
    n = _need("reasoner", "gguf", "q8_0", 600)
    assert n.weights_bytes == int(600 * MiB * 1.05)
    assert n.kv_bytes == 469_762_048 and n.kv_bytes_per_token == 2 * 28 * 8 * 128 * 2
    assert n.total == n.weights_bytes + n.kv_bytes + n.overhead_bytes
    assert "reasoner gguf/q8_0" in n.describe()


def test_resident_when_both_fit_sequential_when_each_fits():
    needs = {"perception": _need("perception", "gguf", "q8_0", 700), "reasoner": _need("reasoner", "gguf", "q8_0", 600)}
    both = sum(n.total for n in needs.values())
    assert plan_memory(needs, both + 1).residency == "resident"
    plan = plan_memory(needs, both - 1)
    assert plan.residency == "sequential"
    assert plan_memory(needs, both + 1, residency="sequential").residency == "sequential"
    with pytest.raises(MemoryPlanError, match="resident"):
        plan_memory(needs, both - 1, residency="resident")


def test_refusal_suggests_a_smaller_quant_and_a_shorter_context():
    big = _need("reasoner", "gguf", "f16", 1200)
    small = _need("reasoner", "gguf", "q4_k_m", 400)
    avail = small.total + 10 * MiB
    with pytest.raises(MemoryPlanError) as err:
        plan_memory({"reasoner": big}, avail, alternatives={"reasoner": [big, small]})
    msg = str(err.value)
    assert "quantization q4_k_m" in msg and "reasoner gguf/f16 needs" in msg
    # Weights that fit with a shorter context: the suggestion names one that fits.
    tight = big.weights_bytes + big.overhead_bytes + 100 * MiB
    with pytest.raises(MemoryPlanError) as err:
        plan_memory({"reasoner": big}, tight)
    assert "a context of" in str(err.value)
    ctx = int(str(err.value).split("a context of ")[1].split()[0])
    assert 512 <= ctx < 4096 and big.kv_bytes_per_token * ctx <= 100 * MiB


def test_available_for_models():
    avail, source = available_for_models("1G")
    assert source == "cap" and avail == GiB - BASE_PROCESS_BYTES
    avail, source = available_for_models(None)
    assert source == "system" and avail > 0


def test_rss_measurements():
    assert 0 < current_rss_mb() <= peak_rss_mb() + 1
