"""Thread counts: bounded before anything loads; the default."""

from __future__ import annotations

import os

import pytest

from runtime.backends.base import BackendOptions
from runtime.errors import InputError
from runtime.pipeline import ExtractThink
from runtime.threads import MAX_THREADS_PER_CPU, check_threads, default_threads, max_threads


def test_the_bound_is_a_small_multiple_of_the_cpus():
    assert max_threads() == MAX_THREADS_PER_CPU * os.cpu_count()
    assert check_threads(None) is None and check_threads(1) == 1 and check_threads(max_threads()) == max_threads()
    for bad in (0, -2, 2.0, True, "4"):
        with pytest.raises(InputError, match="positive integer"):
            check_threads(bad)
    with pytest.raises(InputError, match=f"at most {max_threads()}"):
        check_threads(max_threads() + 1)


@pytest.mark.parametrize("threads", [5000, 100_000])
def test_huge_thread_counts_are_refused_before_any_loading(tmp_path, threads):
    # The bundle does not even exist: the count is refused before the bundle is opened.
    with pytest.raises(InputError, match=f"threads must be at most {max_threads()}.*got {threads}"):
        ExtractThink.load(tmp_path / "no-such-bundle", threads=threads)
    with pytest.raises(InputError, match="at most"):
        BackendOptions(threads=threads)  # every backend loader takes its threads from here


def test_default_threads_is_within_the_bound():
    assert 1 <= default_threads() <= max_threads()
