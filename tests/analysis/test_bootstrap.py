from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from benchmark.analysis.bootstrap import bootstrap_mean
from benchmark.analysis.resampling import Resampling


def test_ci_contains_mean_and_narrows_with_n() -> None:
    rng = np.random.default_rng(0)
    small = bootstrap_mean(rng.normal(size=20), resampling=Resampling(n_boot=1000))
    large = bootstrap_mean(rng.normal(size=2000), resampling=Resampling(n_boot=1000))
    for res in (small, large):
        assert res.ci_low <= res.mean <= res.ci_high
    assert (large.ci_high - large.ci_low) < (small.ci_high - small.ci_low)


def test_matches_brute_force_and_scipy_percentile_bootstrap() -> None:
    x = np.random.default_rng(1).exponential(size=80)
    res = bootstrap_mean(x, resampling=Resampling(n_boot=4000, seed=3))
    rng = np.random.default_rng(3)
    idx = rng.integers(0, x.size, size=(4000, x.size))
    brute = np.array([x[i].mean() for i in idx])
    assert (res.ci_low, res.ci_high) == pytest.approx(tuple(np.quantile(brute, [0.025, 0.975])), rel=1e-12)
    # scipy draws different resamples, so agreement is only up to Monte-Carlo error.
    ref = stats.bootstrap((x,), np.mean, n_resamples=4000, method="percentile", rng=np.random.default_rng(0))
    se = x.std(ddof=1) / np.sqrt(x.size)
    assert res.ci_low == pytest.approx(ref.confidence_interval.low, abs=0.15 * se)
    assert res.ci_high == pytest.approx(ref.confidence_interval.high, abs=0.15 * se)


def test_nan_dropped_and_counted() -> None:
    res = bootstrap_mean([1.0, np.nan, 3.0, np.nan, 5.0], resampling=Resampling(n_boot=200))
    assert (res.mean, res.n, res.n_dropped) == (3.0, 3, 2)
    with pytest.raises(ValueError, match="no finite values"):
        bootstrap_mean([np.nan, np.nan])
    with pytest.raises(ValueError, match="confidence"):
        bootstrap_mean([1.0, 2.0], resampling=Resampling(confidence=95))


def test_bootstrap_ci_is_scipy_bca_and_falls_back_to_percentile_on_undefined_resamples() -> None:
    from benchmark.analysis.bootstrap import bootstrap_ci

    x = np.random.default_rng(2).exponential(size=60)

    def mean(a: np.ndarray, axis: int = -1) -> np.ndarray:
        return a.mean(axis=axis)

    ci = bootstrap_ci((x,), mean, paired=False, n_resamples=999, seed=4)
    ref = stats.bootstrap((x,), mean, n_resamples=999, method="BCa", rng=np.random.default_rng(4))
    assert (ci.method, ci.n_undefined, ci.note) == ("BCa", 0, "")
    assert (ci.low, ci.high) == pytest.approx((ref.confidence_interval.low, ref.confidence_interval.high))

    # A statistic undefined on some resamples: percentile of the defined ones, counted and explained.
    cut = np.quantile(ref.bootstrap_distribution, 0.9)

    def clipped_mean(a: np.ndarray, axis: int = -1) -> np.ndarray:
        m = a.mean(axis=axis)
        return np.where(m > cut, np.nan, m)

    fallback = bootstrap_ci((x,), clipped_mean, paired=False, n_resamples=999, seed=4)
    finite = ref.bootstrap_distribution[ref.bootstrap_distribution <= cut]
    assert fallback.method == "percentile" and fallback.n_undefined == 999 - finite.size
    assert "BCa not defined" in fallback.note and f"{999 - finite.size} of 999" in fallback.note
    assert (fallback.low, fallback.high) == pytest.approx(tuple(np.quantile(finite, [0.025, 0.975])))


def test_bootstrap_ci_of_a_degenerate_distribution_is_not_estimable() -> None:
    from benchmark.analysis.bootstrap import bootstrap_ci

    def sign_of_sum(a: np.ndarray, axis: int = -1) -> np.ndarray:
        return np.sign(a.sum(axis=axis))  # 1 in every resample of positive values

    ci = bootstrap_ci((np.arange(1.0, 9.0),), sign_of_sum, paired=False, n_resamples=200)
    assert np.isnan(ci.low) and np.isnan(ci.high) and ci.method == "none"
    assert ci.note == "CI not estimable: every bootstrap resample gives 1"

    def undefined_below_two(a: np.ndarray, axis: int = -1) -> np.ndarray:
        return np.where(a.max(axis=axis) > 1, 1.0, np.nan)  # 1, or undefined when only the value 1 is drawn

    ci = bootstrap_ci((np.array([1.0, 1.0, 1.0, 2.0]),), undefined_below_two, paired=False, n_resamples=400)
    assert np.isnan(ci.low) and ci.method == "none" and ci.n_undefined > 0
    assert ci.note == f"CI not estimable: every bootstrap resample gives 1, {ci.n_undefined} undefined"
