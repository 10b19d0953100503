"""`edge bench --input-modes` on the tiny bundle with the paper's any-resolution layout
(32 px views of 4 x 4 tokens, pinpoints 1x1..6x6 tiles, anyres_max_9, a random newline):
views and image tokens per mode and image size, seconds per part, ratios, the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest

from benchmarks.input_modes import ModesConfig, parse_modes, parse_sizes, run_input_modes
from benchmarks.inputs import TokenCounts
from benchmarks.variants import PAPER_MAX_TILES, anyres_variant, has_anyres_layout
from edge.cli import main
from runtime.bundle import open_bundle
from runtime.errors import InputError

SIZES = "40x40,64x48"
# (views, image tokens): single = one view of 16; anyres 40 x 40 = base + 2 x 2 tiles, an
# 8 x 8 grid with a newline per row (16 + 8 x 9); 64 x 48 = 2 x 2 tiles, unpad keeps 6 of
# the 8 rows (16 + 6 x 9)
EXPECTED = {("single", "40x40"): (1, 16), ("single", "64x48"): (1, 16),
            ("anyres", "40x40"): (5, 88), ("anyres", "64x48"): (5, 70)}


@pytest.fixture(scope="module")
def anyres_bundle(bench_bundle_dir, tmp_path_factory):
    return anyres_variant(open_bundle(bench_bundle_dir), tmp_path_factory.mktemp("modes") / "anyres")


def test_anyres_variant_has_the_papers_layout(bench_bundle_dir, anyres_bundle, tmp_path):
    b = open_bundle(anyres_bundle, verify="full")
    lay = b.manifest.model("perception").image_layout
    assert lay.input_mode == "anyres" and lay.max_tiles == PAPER_MAX_TILES and len(lay.pinpoints) == 36
    assert lay.pinpoints[0] == (32, 32) and lay.pinpoints[-1] == (192, 192)
    newline = np.frombuffer(b.path(lay.newline).read_bytes(), dtype="<f4")
    assert newline.shape == (64,) and np.isfinite(newline).all() and newline.std() > 0
    assert has_anyres_layout(b) and not has_anyres_layout(open_bundle(bench_bundle_dir))
    assert anyres_variant(open_bundle(bench_bundle_dir), anyres_bundle) == anyres_bundle  # reused


def test_input_modes_report_views_tokens_and_seconds(anyres_bundle):
    cfg = ModesConfig(threads=1, counts=TokenCounts(extraction=3), sizes=parse_sizes(SIZES), repeat=2, warmup=0,
                      backend="llamacpp")
    r = run_input_modes(open_bundle(anyres_bundle), cfg)
    got = {(row["mode"], row["image"]): (row["views"], row["image_tokens"]) for row in r["rows"]}
    assert got == EXPECTED
    for row in r["rows"]:
        assert 0 < row["vision_s"] < row["image_side_s"] < row["perception_s"]
        assert row["image_side_s"] == pytest.approx(row["vision_s"] + row["prefill_s"])
    for reps in (x for by_size in r["runs"].values() for x in by_size.values()):
        assert len(reps) == 2 and not any(rep["cached"] for rep in reps)  # a new picture every time
        # the extraction prompt holds the image tokens: anyres's prompt is longer by the difference
    runs = r["runs"]
    for size in ("40x40", "64x48"):
        extra = EXPECTED[("anyres", size)][1] - 16
        assert runs["anyres"][size][0]["extraction_prompt_tokens"] - runs["single"][size][0]["extraction_prompt_tokens"] == extra
        rat = r["ratios_anyres_over_single"][size]
        assert rat["image_tokens"] == EXPECTED[("anyres", size)][1] / 16
        anyres_row = next(x for x in r["rows"] if x["mode"] == "anyres" and x["image"] == size)
        single_row = next(x for x in r["rows"] if x["mode"] == "single" and x["image"] == size)
        assert rat["vision_s"] == anyres_row["vision_s"] / single_row["vision_s"]
    assert r["settings"]["backends"] == {"perception": "llamacpp gguf/f32", "reasoner": "llamacpp gguf/f32"}


def test_token_cap_lowers_the_tile_count(anyres_bundle):
    cfg = ModesConfig(threads=1, counts=TokenCounts(extraction=2), modes=("anyres",), sizes=((40, 40),),
                      repeat=1, warmup=0, backend="onnx", max_image_tokens=40)
    (row,) = run_input_modes(open_bundle(anyres_bundle), cfg)["rows"]
    assert (row["views"], row["image_tokens"]) == (2, 36)  # one tile: 16 + 4 x (4 + 1)


def test_cli_prints_one_json_object_and_writes_files(anyres_bundle, tmp_path, capsys):
    rc = main(["-q", "bench", "--bundle", str(anyres_bundle), "--input-modes", "single,anyres", "--image-sizes",
               SIZES, "--repeat", "1", "--warmup", "0", "--threads", "1", "--tokens", "extraction=2",
               "--backend", "onnx", "--out", str(tmp_path / "out"), "--json"])
    assert rc == 0
    result = json.loads(capsys.readouterr().out)["input_modes"]
    assert {(row["mode"], row["image"]): (row["views"], row["image_tokens"]) for row in result["rows"]} == EXPECTED
    assert (tmp_path / "out" / "input_modes.json").is_file()
    assert "| anyres | 64x48 | 5 | 70 |" in (tmp_path / "out" / "input_modes.md").read_text()


@pytest.mark.parametrize("argv, words", [
    (["--input-modes", "single,tiles"], "comma-separated list of single, anyres"),
    (["--input-modes", "single", "--image-sizes", "640"], "bad image size '640'"),
    (["--input-modes", "single", "--compare"], "not with --compare"),
    (["--max-image-tokens", "100"], "an option of --input-modes"),
])
def test_cli_refuses_bad_options(argv, words, capsys):
    assert main(["bench", *argv]) == 2
    assert words in capsys.readouterr().err


def test_cli_refuses_anyres_for_a_bundle_without_the_layout(bench_bundle_dir, capsys):
    assert main(["bench", "--bundle", str(bench_bundle_dir), "--input-modes", "anyres", "--threads", "1"]) == 2
    assert "no any-resolution layout" in capsys.readouterr().err


def test_parsers():
    assert parse_modes("anyres, single,anyres") == ("anyres", "single")
    assert parse_sizes("384x384,640X480") == ((384, 384), (640, 480))
    with pytest.raises(InputError):
        parse_sizes("0x5")
