"""Fixtures for the runtime tests that need exported models."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from runtime.control_tokens import control_tokens
from runtime.tokenizer import BundleTokenizer


@pytest.fixture(scope="session", autouse=True)
def private_speed_cache(tmp_path_factory):
    """Pipelines remember measured speeds under $XDG_CACHE_HOME: keep the tests' apart from
    the user's, and from each other's sessions."""
    old = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("xdg_cache"))
    yield
    if old is None:
        os.environ.pop("XDG_CACHE_HOME", None)
    else:
        os.environ["XDG_CACHE_HOME"] = old


@pytest.fixture(scope="session")
def rt_bundle_dir(tiny_bundle_dir) -> Path:
    return tiny_bundle_dir


@pytest.fixture(scope="session")
def rt_bundle(rt_bundle_dir):
    from runtime.bundle import open_bundle

    return open_bundle(rt_bundle_dir)


@pytest.fixture(scope="session")
def tok(qwen3_tokenizer_dir) -> BundleTokenizer:
    """Qwen3's tokenizer (the budget controller's tests; a test module may define its own)."""
    return BundleTokenizer(qwen3_tokenizer_dir / "tokenizer.json")


@pytest.fixture(scope="session")
def ctl_tokens(tok):
    return control_tokens(tok)
