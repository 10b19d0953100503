from __future__ import annotations

import numpy as np
import pytest

from benchmarks.stats import ratio, summarize, wilson_interval


def test_summarize_matches_numpy_quantiles():
    vals = [0.5, 3.0, 1.0, 2.0, 10.0, 4.0]
    s = summarize(vals)
    assert s["n"] == 6 and s["min"] == 0.5 and s["max"] == 10.0
    for key, q in (("median", 0.5), ("q1", 0.25), ("q3", 0.75)):
        assert s[key] == pytest.approx(float(np.quantile(vals, q)))
    assert summarize([]) == {"n": 0}
    assert summarize([float("nan"), 1.0])["n"] == 1


def test_wilson_interval_known_values():
    # reference values from the closed form (e.g. statsmodels proportion_confint method="wilson")
    lo, hi = wilson_interval(8, 10)
    assert (round(lo, 4), round(hi, 4)) == (0.4902, 0.9433)
    lo, hi = wilson_interval(0, 5)
    assert lo == 0.0 and hi == pytest.approx(0.4345, abs=1e-4)
    lo, hi = wilson_interval(5, 5)
    assert hi == 1.0 and lo == pytest.approx(0.5655, abs=1e-4)
    assert wilson_interval(0, 0) == (0.0, 1.0)
    with pytest.raises(ValueError):
        wilson_interval(3, 2)


def test_ratio_guards():
    assert ratio(2.0, 1.0) == 2.0
    assert ratio(None, 1.0) is None and ratio(1.0, 0.0) is None
