"""Fixtures for the runtime tests that need exported models."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def rt_bundle_dir(tiny_bundle_dir) -> Path:
    return tiny_bundle_dir


@pytest.fixture(scope="session")
def rt_bundle(rt_bundle_dir):
    from runtime.bundle import open_bundle

    return open_bundle(rt_bundle_dir)
