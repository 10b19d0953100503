"""`edge export compose`: bundles from GGUF files, with the GGUFs written by the project's
own exporters from tiny random models (Qwen3 text + clip mlp mmproj) and copies of them
with another chat template or vocabulary (a SmolLM-like ChatML model without think tokens,
a Llama 3 template, template-injection payloads)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from runtime.errors import BundleError, ConfigError
from tests.edge.helpers import one_error_line, run_edge, write_png
from tests.support.gguf_rewrite import rewrite_gguf

DEFAULT_BUNDLE = Path(__file__).resolve().parents[2] / "edge" / "assets" / "default_bundle"
SMOL_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}"
    "{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
LLAMA3_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}{{ '<|start_header_id|>' + message['role'] + "
    "'<|end_header_id|>\n\n' + message['content'] | trim + '<|eot_id|>' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)
NO_THINK = {"<think>": "<unused_think>", "</think>": "</unused_think>"}


@pytest.fixture(scope="module")
def smol_gguf(tmp_path_factory) -> Path:
    """A stock-like ChatML chat model: the default bundle's reasoner, think tokens renamed away,
    SmolLM2's template."""
    out = tmp_path_factory.mktemp("smol") / "smol-chat.gguf"
    return rewrite_gguf(DEFAULT_BUNDLE / "reasoner-q8_0.gguf", out, rename_tokens=NO_THINK,
                        set_strings={"tokenizer.chat_template": SMOL_TEMPLATE})


def _compose(tmp_path, **kw):
    from export.compose import ComposeRequest, compose_bundle

    return compose_bundle(ComposeRequest(out=tmp_path / "B", **kw))


def test_compose_project_gguf_files(tmp_path, gguf_f32_dir, perception_model, reasoner_model):
    from runtime.bundle import read_manifest, sha256_file

    d = gguf_f32_dir
    out = _compose(tmp_path, perception_gguf=d / "perception-f32.gguf", mmproj=d / "perception-mmproj-f32.gguf",
                   reasoner_gguf=d / "reasoner-f32.gguf")
    m = read_manifest(out)
    p, r = m.model("perception"), m.model("reasoner")
    assert (p.architecture, r.architecture) == ("gguf:qwen3", "gguf:qwen3")
    assert p.chat_format == r.chat_format == "qwen3-chatml"
    assert r.special_tokens.think_start is not None and r.special_tokens.think_end is not None
    tcfg, vcfg = perception_model.config.text_config, perception_model.config.vision_config
    assert (p.text.hidden_size, p.text.num_layers, p.text.num_kv_heads) == (
        tcfg.hidden_size, tcfg.num_hidden_layers, tcfg.num_key_value_heads)
    assert r.text.context_length == reasoner_model.config.max_position_embeddings
    assert (p.vision.image_size, p.vision.patch_size, p.image.size) == (vcfg.image_size, vcfg.patch_size, vcfg.image_size)
    assert p.vision.tokens_per_image == (vcfg.image_size // vcfg.patch_size) ** 2
    assert p.image.mean == (0.5, 0.5, 0.5) and p.image.std == (0.5, 0.5, 0.5)
    assert p.image.mode == "resize"  # exported here: trained on stretched images
    assert p.source_layout == "gguf" and p.source_files["perception-mmproj-f32.gguf"] == sha256_file(
        d / "perception-mmproj-f32.gguf")
    assert os.stat(out / "reasoner.gguf").st_ino == os.stat(d / "reasoner-f32.gguf").st_ino  # hard-linked
    image = write_png(tmp_path / "img.png")
    proc = run_edge("run", "--bundle", str(out), "--image", str(image), "--question", "What is it?",
                    "--hint-budget", "4", "--extraction-budget", "6", "--thinking-budget", "6",
                    "--answer-budget", "6", "--json", "-q", timeout=600)
    assert proc.returncode == 0, proc.stderr
    res = json.loads(proc.stdout)
    assert res["thinking_enabled"] and res["backend"]["perception"].startswith("llamacpp")
    assert {"vision", "extraction", "thinking"} <= set(res["stages"])


def test_stock_chatml_reasoner_from_the_default_bundle(tmp_path, smol_gguf):
    """The issue's acceptance: a ChatML GGUF without think tokens, the default bundle's
    perception; `edge run` answers with thinking off and a warning, on llama.cpp."""
    proc = run_edge("export", "compose", "--from", "default", "--reasoner-gguf", str(smol_gguf),
                    "--out", str(tmp_path / "B"), "--json", "-q", timeout=600)
    assert proc.returncode == 0, proc.stderr
    models = json.loads(proc.stdout)["models"]
    assert models["reasoner"] == {"architecture": "gguf:qwen3", "chat_format": "chatml", "thinking": False}
    assert models["perception"]["chat_format"] == "qwen3-chatml"
    proc = run_edge("run", "--bundle", str(tmp_path / "B"), "--json", timeout=600)
    assert proc.returncode == 0, proc.stderr
    res = json.loads(proc.stdout)
    assert res["thinking_enabled"] is False and res["thinking"] is None and res["answer_text"]
    assert set(res["backend"].values()) == {"llamacpp gguf/q8_0"}, res["backend"]
    assert "no <think>/</think>" in proc.stderr and "thinking is off" in proc.stderr
    proc = run_edge("pack", str(tmp_path / "B"), "--profile", "laptop", "--out", str(tmp_path / "b.tar"), "-q")
    assert proc.returncode == 0, proc.stderr
    proc = run_edge("unpack", str(tmp_path / "b.tar"), "--to", str(tmp_path / "U"), "-q")
    assert proc.returncode == 0 and (tmp_path / "U" / "reasoner.gguf").is_file(), proc.stderr


def test_run_with_perception_gguf_and_mmproj(tmp_path, gguf_f32_dir):
    d = gguf_f32_dir
    proc = run_edge("run", "--perception-gguf", str(d / "perception-f32.gguf"), "--mmproj",
                    str(d / "perception-mmproj-f32.gguf"), "--reasoner-gguf", str(d / "reasoner-f32.gguf"),
                    "--image", str(write_png(tmp_path / "i.png")), "--question", "What?",
                    "--hint-budget", "4", "--extraction-budget", "6", "--thinking-budget", "6",
                    "--answer-budget", "6", "--json", "-q", timeout=600)
    assert proc.returncode == 0, proc.stderr
    res = json.loads(proc.stdout)
    assert "extraction" in res["stages"] and res["backend"]["perception"] == "llamacpp gguf/f32"
    assert not [p for p in d.iterdir() if p.name.startswith(".edge-run-")]  # the temporary bundle is gone


def test_a_stock_vlm_pads_its_images_and_keeps_its_chat_format(tmp_path, gguf_f32_dir):
    from runtime.bundle import read_manifest

    stock = rewrite_gguf(gguf_f32_dir / "perception-f32.gguf", tmp_path / "vlm.gguf", rename_tokens=NO_THINK,
                         set_strings={"tokenizer.chat_template": SMOL_TEMPLATE})
    out = _compose(tmp_path, perception_gguf=stock, mmproj=gguf_f32_dir / "perception-mmproj-f32.gguf",
                   from_bundle=DEFAULT_BUNDLE)
    m = read_manifest(out)
    p = m.model("perception")
    assert p.image.mode == "pad" and p.chat_format == "chatml" and p.source_layout == "gguf"
    assert m.model("reasoner").architecture == "qwen3" and m.model("reasoner").chat_format == "qwen3-chatml"


def test_llama3_template_is_recognised_and_refused_by_name(tmp_path, gguf_f32_dir):
    src = gguf_f32_dir / "reasoner-f32.gguf"
    renamed = {"<|box_start|>": "<|begin_of_text|>", "<|box_end|>": "<|start_header_id|>",
               "<|quad_start|>": "<|end_header_id|>", "<|quad_end|>": "<|eot_id|>"}
    llama = rewrite_gguf(src, tmp_path / "llama3.gguf", rename_tokens=renamed,
                         set_strings={"tokenizer.chat_template": LLAMA3_TEMPLATE})
    with pytest.raises(BundleError, match="llama3.gguf: the chat format is Llama 3; this runtime builds ChatML"):
        _compose(tmp_path, reasoner_gguf=llama)
    plain = rewrite_gguf(src, tmp_path / "plain.gguf", set_strings={"tokenizer.chat_template": LLAMA3_TEMPLATE})
    with pytest.raises(BundleError, match="Llama 3 but '<\\|begin_of_text\\|>' is not a single special token"):
        _compose(tmp_path, reasoner_gguf=plain)
    assert not (tmp_path / "B").exists()


def test_no_template_is_refused_unless_the_family_is_given(tmp_path, gguf_f32_dir):
    bare = rewrite_gguf(gguf_f32_dir / "reasoner-f32.gguf", tmp_path / "bare.gguf",
                        set_strings={"tokenizer.chat_template": None})
    proc = run_edge("export", "compose", "--reasoner-gguf", str(bare), "--out", str(tmp_path / "B"))
    assert proc.returncode != 0 and "bare.gguf: no tokenizer.chat_template" in one_error_line(proc)
    out = _compose(tmp_path, reasoner_gguf=bare, chat_format="chatml")
    assert json.loads((out / "manifest.json").read_text())["models"]["reasoner"]["chat_format"] == "qwen3-chatml"


@pytest.fixture
def no_jinja(monkeypatch):
    """Compiling or rendering any Jinja template fails the test."""
    jinja2 = pytest.importorskip("jinja2")

    def refuse(*a, **k):
        raise AssertionError("a template was compiled or rendered")

    monkeypatch.setattr(jinja2.Environment, "from_string", refuse)
    monkeypatch.setattr(jinja2.Template, "render", refuse)
    monkeypatch.setattr(jinja2.Template, "__new__", refuse)


def test_template_injection_composes_or_is_refused_without_rendering(tmp_path, gguf_f32_dir, no_jinja):
    from runtime.bundle import read_manifest

    marker = tmp_path / "PWNED"
    payload = "{{ cycler.__init__.__globals__.os.popen('touch " + str(marker) + "').read() }}<|im_start|>"
    evil = rewrite_gguf(gguf_f32_dir / "reasoner-f32.gguf", tmp_path / "evil.gguf",
                        set_strings={"tokenizer.chat_template": payload})
    out = _compose(tmp_path, reasoner_gguf=evil)  # ChatML markers: composed, and loaded once by llama.cpp
    assert read_manifest(out).model("reasoner").chat_format == "qwen3-chatml"
    assert not marker.exists()
    other = rewrite_gguf(gguf_f32_dir / "reasoner-f32.gguf", tmp_path / "other.gguf",
                         set_strings={"tokenizer.chat_template": "{{ ''.__class__.__mro__[1].__subclasses__() }}"})
    with pytest.raises(BundleError, match="other.gguf: tokenizer.chat_template matches no known chat family"):
        _compose(tmp_path, reasoner_gguf=other, overwrite=True)
    assert not marker.exists()


def test_projector_width_must_match_the_text_model(tmp_path, gguf_f32_dir):
    with pytest.raises(BundleError, match="projector outputs 256-wide embeddings but reasoner-f32.gguf has"):
        _compose(tmp_path, perception_gguf=gguf_f32_dir / "reasoner-f32.gguf",
                 mmproj=DEFAULT_BUNDLE / "perception-mmproj-f16.gguf")


def test_input_errors_are_one_line(tmp_path, gguf_f32_dir):
    proc = run_edge("export", "compose", "--mmproj", str(gguf_f32_dir / "perception-mmproj-f32.gguf"),
                    "--out", str(tmp_path / "B"))
    assert "--perception-gguf and --mmproj go together" in one_error_line(proc) and proc.returncode == 2
    proc = run_edge("export", "compose", "--reasoner-gguf", str(tmp_path / "nope.gguf"), "--out", str(tmp_path / "B"))
    assert "nope.gguf: no such file" in one_error_line(proc)
    with pytest.raises(BundleError, match="not a text model GGUF"):
        _compose(tmp_path, reasoner_gguf=gguf_f32_dir / "perception-mmproj-f32.gguf")
    with pytest.raises(ConfigError, match="nothing to compose"):
        _compose(tmp_path)


def test_file_type_names_match_the_exporter():
    from export.compose import FTYPE_NAMES
    from export.gguf.quantize import QUANT_SPECS

    assert {spec.file_type: name for name, spec in QUANT_SPECS.items()} == FTYPE_NAMES
