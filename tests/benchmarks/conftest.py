from __future__ import annotations

from pathlib import Path

import pytest

from tests.benchmarks.bundle import tiny_bundle


@pytest.fixture(scope="session")
def bench_bundle_dir(request) -> Path:
    return tiny_bundle(request)
