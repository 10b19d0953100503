"""Fixtures for the deployment tests: a tiny two-model bundle (GGUF f32 + ONNX fp32) with an
example image, an ONNX-only copy of it, a test image, and a running web demo."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest

from tests.edge.helpers import SMALL_BUDGETS, write_png
from tests.runtime.bundle_fixture import tiny_two_format_bundle


@pytest.fixture(scope="session")
def edge_bundle_dir(request, tmp_path_factory) -> Path:
    """The shared tiny two-format bundle (GGUF f32 + ONNX fp32), copied with small budgets and
    an example image added, as a bundle made by `edge export --example` would have them."""
    from runtime.bundle import read_manifest, sha256_file
    from runtime.config_io import save_json
    from runtime.manifest import Budgets, FileEntry

    src = tiny_two_format_bundle(request)
    out = tmp_path_factory.mktemp("edge_bundle") / "tiny"
    shutil.copytree(src, out)
    (out / "examples").mkdir(exist_ok=True)
    example = write_png(out / "examples" / "example.png", seed=1)
    m = read_manifest(out)
    save_json(dataclasses.replace(
        m,
        name="tiny",
        budgets=Budgets(**SMALL_BUDGETS),
        files={**m.files, "examples/example.png": FileEntry(example.stat().st_size, sha256_file(example))},
        examples=({"image": "examples/example.png", "question": "What colour is the square?",
                   "answer": "red"},),
    ), out / "manifest.json")
    return out


@pytest.fixture(scope="session")
def onnx_only_bundle_dir(tmp_path_factory, edge_bundle_dir) -> Path:
    """The same models with the GGUF files left out: a valid bundle that has no gguf format."""
    from runtime.bundle import read_manifest
    from runtime.config_io import save_json

    m = read_manifest(edge_bundle_dir)
    out = tmp_path_factory.mktemp("onnx_only") / "tiny-onnx"
    out.mkdir()
    models = {role: dataclasses.replace(e, artifacts=tuple(a for a in e.artifacts if a.format == "onnx"))
              for role, e in m.models.items()}
    keep = {e.tokenizer for e in models.values()}
    keep |= {p for e in models.values() for a in e.artifacts for p in a.files.values()}
    keep |= {"examples/example.png"}
    for rel in keep:
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(edge_bundle_dir / rel, out / rel)
    save_json(dataclasses.replace(m, name="tiny-onnx", models=models,
                                  files={k: v for k, v in m.files.items() if k in keep}),
              out / "manifest.json")
    return out


@pytest.fixture(scope="session")
def image_png(tmp_path_factory) -> Path:
    return write_png(tmp_path_factory.mktemp("images") / "photo.png", seed=2)


DEMO_MAX_UPLOAD = 200_000
DEMO_MAX_PIXELS = 1_000_000


@pytest.fixture(scope="session")
def demo_profile(tmp_path_factory) -> Path:
    """The laptop profile with small image limits, as a profile file for `--profile`."""
    import json

    from edge.profiles import PROFILE_DIR

    profile = json.loads((PROFILE_DIR / "laptop.json").read_text())
    profile.update(name="demo-test", title="Demo test profile")
    profile["image"].update(max_upload_bytes=DEMO_MAX_UPLOAD, max_pixels=DEMO_MAX_PIXELS)
    path = tmp_path_factory.mktemp("profiles") / "demo-test.json"
    path.write_text(json.dumps(profile))
    return path


@pytest.fixture(scope="module")
def demo_server(tmp_path_factory, edge_bundle_dir, demo_profile):
    """`edge demo` (the serve app plus the page) on a free port, serving the tiny bundle
    through llama.cpp with small image limits."""
    pytest.importorskip("fastapi")
    from tests.edge.serve_helpers import start_server

    srv = start_server(tmp_path_factory.mktemp("demo"), "--bundle", str(edge_bundle_dir), "--backend", "llamacpp",
                       "--threads", "1", "--profile", str(demo_profile), command="demo")
    yield srv
    assert srv.stop() == 0, srv.stderr()  # SIGTERM, as systemd stops it
    assert "edge demo: stopped" in srv.stderr() and "Traceback" not in srv.stderr()


@pytest.fixture(scope="module")
def demo_port(demo_server) -> int:
    return demo_server.port
