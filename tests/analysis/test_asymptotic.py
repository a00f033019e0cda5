"""The normal approximations used above LARGE_N values against what they replace (Monte-Carlo permutation tests and
bootstraps, run here by raising the threshold) and against the truth of simulated data (coverage)."""

from importlib import import_module

import numpy as np
import pytest
from scipy import stats

from benchmark.analysis.asymptotic import LARGE_N
from benchmark.analysis.resampling import Resampling

# the modules themselves (the package exports functions of the same names)
bootstrap, confounds, correlation, metaeval, paired, validity = (
    import_module(f"benchmark.analysis.{m}") for m in ("bootstrap", "confounds", "correlation", "metaeval", "paired",
                                                        "validity"))

N = LARGE_N + 500
NEVER = 10**9  # a threshold that sends every size to the resampling path


def _pairs(rng, n, rho):
    x = rng.standard_normal(n)
    return x, rho * x + np.sqrt(1 - rho**2) * rng.standard_normal(n)


@pytest.mark.parametrize("method", ["spearman", "pearson"])
def test_correlation_p_and_ci_match_the_permutation_test_and_bootstrap(monkeypatch, method):
    x, y = _pairs(np.random.default_rng(1), N, 0.035)  # p near 0.08: where the two must agree
    fast = correlation.correlation(x, y, method, resampling=Resampling(n_boot=1000, n_permutations=5000, seed=3))
    assert fast.p_method.startswith("normal approximation") and fast.ci_method == "Fisher z"
    monkeypatch.setattr(correlation, "LARGE_N", NEVER)
    slow = correlation.correlation(x, y, method, resampling=Resampling(n_boot=1000, n_permutations=5000, seed=3))
    assert slow.p_method.startswith("Monte Carlo") and slow.ci_method == "percentile"
    assert fast.statistic == slow.statistic
    assert abs(fast.p_value - slow.p_value) < 0.015  # Monte-Carlo SE of the slow p: ~0.004
    assert abs(fast.ci_low - slow.ci_low) < 0.008 and abs(fast.ci_high - slow.ci_high) < 0.008


def test_within_model_p_and_ci_match_the_stratified_permutation_test_and_bootstrap(monkeypatch):
    rng = np.random.default_rng(2)
    parts = [_pairs(rng, N // 4, rho) for rho in (0.0, 0.05, 0.1, -0.02)]
    x, y = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
    groups = np.repeat(["a", "b", "c", "d"], N // 4)
    fast = validity.within_combined(x, y, groups, "spearman", resampling=Resampling(n_boot=1000, seed=4))
    assert fast.p_method.startswith("normal approximation") and fast.ci_method == "stratified Fisher z"
    monkeypatch.setattr(correlation, "LARGE_N", NEVER)
    monkeypatch.setattr(validity, "LARGE_N", NEVER)
    slow = validity.within_combined(x, y, groups, "spearman", resampling=Resampling(n_boot=1000, seed=4))
    assert slow.ci_method == "stratified percentile"
    assert fast.statistic == slow.statistic
    assert abs(fast.p_value - slow.p_value) < 0.015
    assert abs(fast.ci_low - slow.ci_low) < 0.008 and abs(fast.ci_high - slow.ci_high) < 0.008


@pytest.mark.parametrize("method, rho", [("pearson", 0.3), ("spearman", 0.3), ("spearman", -0.6)])
def test_fisher_interval_covers_the_true_coefficient(method, rho):
    """Coverage over 300 simulated data sets of the stratified interval (three models with their own
    coefficients); the true pooled coefficient is the size-weighted mean of the models' true ones."""
    rng = np.random.default_rng(5)
    rhos, sizes = (rho, rho / 2, 0.0), (1200, 900, 600)
    true = [r if method == "pearson" else 6 / np.pi * np.arcsin(r / 2) for r in rhos]
    target = float(np.dot(sizes, true) / sum(sizes))
    covered = 0
    for _ in range(300):
        parts = [_pairs(rng, n, r) for n, r in zip(sizes, rhos)]
        x, y = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
        res = validity.within_combined(x, y, np.repeat([0, 1, 2], sizes), method, resampling=Resampling(n_boot=2000))
        covered += res.ci_low <= target <= res.ci_high
    assert 0.91 <= covered / 300 <= 0.985  # 95% nominal; binomial SE 0.013


def test_partial_correlation_uses_fisher_z_with_the_covariates_degrees_of_freedom(monkeypatch):
    rng = np.random.default_rng(6)
    area = rng.random(N)
    x, y = _pairs(rng, N, 0.2)
    x, y = x + area, y + area
    fast = confounds.partial_correlation(x, y, area[:, None], None, "pearson",
                                         resampling=Resampling(n_boot=1000, seed=1))
    assert fast.ci_method == "Fisher z"
    monkeypatch.setattr(correlation, "LARGE_N", NEVER)
    monkeypatch.setattr(confounds, "LARGE_N", NEVER)
    slow = confounds.partial_correlation(x, y, area[:, None], None, "pearson",
                                         resampling=Resampling(n_boot=1000, seed=1))
    assert abs(fast.ci_low - slow.ci_low) < 0.008 and abs(fast.ci_high - slow.ci_high) < 0.008
    assert abs(fast.p_value - slow.p_value) < 0.015


def test_paired_test_matches_the_sign_flip_test_and_bootstrap(monkeypatch):
    rng = np.random.default_rng(7)
    old = rng.standard_normal(N)
    new = old + 0.035 + rng.standard_normal(N)  # p near 0.08
    fast = paired.paired_test(new, old, resampling=Resampling(n_boot=2000, n_permutations=5000, seed=2))
    assert fast.p_method.startswith("normal approximation") and fast.ci_method == "t"
    monkeypatch.setattr(paired, "LARGE_N", NEVER)
    slow = paired.paired_test(new, old, resampling=Resampling(n_boot=2000, n_permutations=5000, seed=2))
    assert abs(fast.p_value - slow.p_value) < 0.015
    assert abs(fast.ci_low - slow.ci_low) < 0.004 and abs(fast.ci_high - slow.ci_high) < 0.004
    d = new - old  # the sign-flip null's variance is sum d^2 exactly: the z statistic by hand
    assert fast.p_value == pytest.approx(2 * stats.norm.sf(abs(d.sum()) / np.sqrt(d @ d)))


def test_mean_interval_is_students_t_and_matches_the_bootstrap(monkeypatch):
    x = np.random.default_rng(8).exponential(size=N)  # skewed: the t interval still agrees at this size
    fast = bootstrap.bootstrap_mean(x, resampling=Resampling(n_boot=2000))
    half = stats.t.ppf(0.975, N - 1) * x.std(ddof=1) / np.sqrt(N)
    assert (fast.ci_low, fast.ci_high) == pytest.approx((x.mean() - half, x.mean() + half))
    monkeypatch.setattr(bootstrap, "LARGE_N", NEVER)
    slow = bootstrap.bootstrap_mean(x, resampling=Resampling(n_boot=2000))
    assert abs(fast.ci_low - slow.ci_low) < 0.006 and abs(fast.ci_high - slow.ci_high) < 0.006


@pytest.mark.parametrize("method", ["pearson", "spearman"])
def test_difference_of_correlations_matches_the_swap_test_and_bootstrap(monkeypatch, method):
    """Steiger's normal-theory variance against the paired swap test and the stratified bootstrap it replaces."""
    rng = np.random.default_rng(9)
    sizes = (900, 900, 900)
    h = rng.standard_normal(sum(sizes))
    a = 0.30 * h + rng.standard_normal(h.size)
    b = 0.25 * h + 0.5 * a + rng.standard_normal(h.size)  # correlated with A, as two scores of one map are
    groups = np.repeat([0, 1, 2], sizes)
    fast = metaeval.paired_difference(a, b, h, groups, method,
                                      resampling=Resampling(n_boot=1000, n_permutations=1000, seed=1))
    assert fast.p_method.startswith("normal approximation")
    monkeypatch.setattr(metaeval, "LARGE_N", NEVER)
    slow = metaeval.paired_difference(a, b, h, groups, method,
                                      resampling=Resampling(n_boot=1000, n_permutations=1000, seed=1))
    assert fast.difference == pytest.approx(slow.difference)
    width_fast, width_slow = fast.ci_high - fast.ci_low, slow.ci_high - slow.ci_low
    assert width_fast == pytest.approx(width_slow, rel=0.12)  # bootstrap SE of a 1,000-resample width: ~4%
    assert abs(fast.p_value - slow.p_value) < 0.05  # 1,000 swap patterns: Monte-Carlo SE up to 0.016
