"""``bootstrap_ci`` above :data:`BCA_MAX_N` values: the percentile interval of the same seeded resamples (BCa's
jackknife costs n^2), checked against a brute-force bootstrap; at the bound it is still scipy's BCa."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from benchmark.analysis.bootstrap import BCA_MAX_N, bootstrap_ci


def mean(a: np.ndarray, axis: int = -1) -> np.ndarray:
    return a.mean(axis=axis)


def test_above_the_bound_the_interval_is_the_percentile_of_the_seeded_resamples() -> None:
    n = BCA_MAX_N + 1
    x = np.random.default_rng(3).exponential(size=n)
    ci = bootstrap_ci((x,), mean, paired=True, n_resamples=499, seed=5)
    # brute force: the resamples scipy draws from the same seed, their means, the 2.5% and 97.5% quantiles
    replicates = x[np.random.default_rng(5).integers(0, n, size=(499, n))].mean(axis=1)
    assert (ci.method, ci.n_undefined) == ("percentile", 0)
    assert f"n = {n} > {BCA_MAX_N}" in ci.note
    assert (ci.low, ci.high) == pytest.approx(tuple(np.quantile(replicates, [0.025, 0.975])), abs=1e-12)


def test_at_the_bound_it_is_scipy_bca() -> None:
    x = np.random.default_rng(3).exponential(size=BCA_MAX_N)
    ci = bootstrap_ci((x,), mean, paired=True, n_resamples=199, seed=5)
    ref = stats.bootstrap((x,), mean, n_resamples=199, method="BCa", rng=np.random.default_rng(5))
    assert ci.method == "BCa"
    assert (ci.low, ci.high) == pytest.approx((ref.confidence_interval.low, ref.confidence_interval.high))
