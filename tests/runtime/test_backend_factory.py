"""The backend factory: artifact choice per backend / quant, and missing libraries."""

from __future__ import annotations

import sys

import pytest

from runtime.backends import (
    artifact_id,
    choose_artifact,
    installed_backends,
    library_installed,
    require,
)
from runtime.errors import BackendUnavailableError, BundleError, InputError


def test_choose_artifact(rt_bundle):
    assert choose_artifact(rt_bundle, "reasoner", "onnx")[1].format == "onnx"
    assert choose_artifact(rt_bundle, "reasoner", "llamacpp")[1].format == "gguf"
    name, art = choose_artifact(rt_bundle, "perception", "auto")
    assert (name, art.format) == ("llamacpp", "gguf")  # llama.cpp first when installed
    # ONNX spells full precision fp32, GGUF f32: either name finds either.
    assert choose_artifact(rt_bundle, "reasoner", "onnx", "f32")[1].quant == "fp32"
    assert choose_artifact(rt_bundle, "reasoner", "auto", "fp32")[1].quant == "f32"
    with pytest.raises(BundleError, match="no onnx/int8 artifact.*has: "):
        choose_artifact(rt_bundle, "reasoner", "onnx", "int8")
    with pytest.raises(BundleError, match="no q4_k_m artifact"):
        choose_artifact(rt_bundle, "reasoner", "auto", "q4_k_m")
    with pytest.raises(InputError, match="unknown backend"):
        choose_artifact(rt_bundle, "reasoner", "tensorrt")


def test_auto_falls_back_to_the_installed_library(rt_bundle, monkeypatch):
    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # as if not installed
    assert not library_installed("llamacpp")
    assert installed_backends() == {"llamacpp": False, "onnx": True}
    assert choose_artifact(rt_bundle, "reasoner", "auto")[0] == "onnx"
    with pytest.raises(BackendUnavailableError, match=r"pip install -e '\.\[llamacpp\]' from the extract-think-edge checkout"):
        choose_artifact(rt_bundle, "reasoner", "llamacpp")
    with pytest.raises(BackendUnavailableError):
        require("llamacpp")


def test_artifact_id_follows_the_weights(rt_bundle):
    a = artifact_id(rt_bundle, "reasoner", rt_bundle.artifact("reasoner", "gguf"))
    b = artifact_id(rt_bundle, "reasoner", rt_bundle.artifact("reasoner", "onnx"))
    c = artifact_id(rt_bundle, "perception", rt_bundle.artifact("perception", "gguf"))
    assert len({a, b, c}) == 3 and a == artifact_id(rt_bundle, "reasoner", rt_bundle.artifact("reasoner", "gguf"))
