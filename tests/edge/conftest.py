"""Fixtures for the deployment tests: a tiny two-model bundle (GGUF f32 + ONNX fp32) with an
example image, an ONNX-only copy of it, a test image, and a running web demo."""

from __future__ import annotations

import dataclasses
import shutil
import threading
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


@pytest.fixture(scope="module")
def demo_port(edge_bundle_dir):
    """A web demo on a free port serving the tiny bundle through llama.cpp; yields the port."""
    from edge.demo.server import DemoApp, Example, make_server
    from runtime.bundle import read_manifest
    from runtime.manifest import Budgets
    from runtime.pipeline import ExtractThink

    pipeline = ExtractThink.load(edge_bundle_dir, backend="llamacpp", threads=2)
    app = DemoApp(pipeline, info={"bundle": "tiny", "profile": "laptop", "threads": 2,
                                  "residency": pipeline.residency, "selection": {}},
                  max_upload_bytes=DEMO_MAX_UPLOAD, max_pixels=1_000_000,
                  budgets=Budgets(**SMALL_BUDGETS),
                  example=Example.from_bundle(edge_bundle_dir, read_manifest(edge_bundle_dir)))
    server = make_server(app, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()
    pipeline.close()
