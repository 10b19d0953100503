"""The stage scheduler of `edge train default-bundle`: what waits for what, and the lock
that keeps a restarted command from starting a stage that is still running."""

from __future__ import annotations

import os
import subprocess
import sys

from edge.recipes.default_bundle.config import BASELINE_STAGES, BUNDLE_STAGES, DefaultBundleRun
from edge.recipes.default_bundle.run import load_default_recipe
from edge.recipes.default_bundle.stages import _lock_owner, dependencies


def test_each_stage_waits_for_the_stage_its_weights_come_from(tmp_path):
    recipe = load_default_recipe(DefaultBundleRun(out=tmp_path / "run"))
    deps = dependencies(recipe, [*BUNDLE_STAGES, *BASELINE_STAGES])
    assert deps == {"vision": set(), "align": {"vision"}, "instruct": {"align"}, "extract": {"instruct"},
                    "reasoner": set(), "caption": {"instruct"}, "e2e": {"instruct"}}


def test_a_lock_names_a_live_stage_process_and_a_stale_one_is_cleared(tmp_path):
    lock = tmp_path / "extract.lock"
    assert _lock_owner(lock) is None
    lock.write_text(str(os.getpid()))
    assert _lock_owner(lock) == os.getpid()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    lock.write_text(str(dead.pid))
    assert _lock_owner(lock) is None and not lock.exists()
