from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy import stats

from benchmark.analysis.correlation import MIN_PAIRS_FOR_CI, TOO_FEW_MODELS, TOO_FEW_PAIRS, correlation
from benchmark.analysis.format import format_ci
from benchmark.analysis.resampling import Resampling


def brute_force_p(x: np.ndarray, y: np.ndarray, method: str) -> float:
    """Two-sided permutation p by enumerating every pairing (scipy's convention: 2 x the smaller tail)."""
    perms = np.array(list(itertools.permutations(x)))  # (n!, n)
    if method == "spearman":
        perms, y = stats.rankdata(perms, axis=1), stats.rankdata(y)
    null = np.array([np.corrcoef(p, y)[0, 1] for p in perms])
    observed = np.corrcoef(x if method == "pearson" else stats.rankdata(x), y)[0, 1]
    tol = 1e-12
    greater, less = np.mean(null >= observed - tol), np.mean(null <= observed + tol)
    return float(min(1.0, 2 * min(greater, less)))


def test_exact_p_for_four_models_in_perfect_order_is_one_twelfth() -> None:
    x = np.array([0.1, 0.2, 0.5, 0.9])
    for y, rho in ((np.array([10.0, 11.0, 15.0, 30.0]), 1.0), (np.array([30.0, 15.0, 11.0, 10.0]), -1.0)):
        res = correlation(x, y, "spearman", level="model", resampling=Resampling(n_boot=50))
        assert res.statistic == pytest.approx(rho)
        assert res.p_value == pytest.approx(2 / 24, abs=1e-12)  # not scipy's asymptotic ~0
        assert res.p_method == "exact (24 permutations)"
        assert math.isnan(res.ci_low) and math.isnan(res.ci_high)
        assert (res.ci_method, res.note) == ("none", f"{TOO_FEW_MODELS} (n = 4 < 7)")


@pytest.mark.parametrize("n", [3, 5, 7])
def test_exact_p_matches_brute_force_enumeration(n: int) -> None:
    rng = np.random.default_rng(n)
    x = rng.normal(size=n)
    y = 0.8 * x + rng.normal(size=n)
    y_ties = np.round(y)  # ties: average ranks, as spearmanr
    for method, yy in (("spearman", y), ("spearman", y_ties), ("pearson", y)):
        res = correlation(x, yy, method, resampling=Resampling(n_boot=50))
        assert res.p_value == pytest.approx(brute_force_p(x, yy, method), abs=1e-12)
        assert res.p_method == f"exact ({math.factorial(n)} permutations)"


def test_statistic_matches_scipy_and_monte_carlo_p_agrees_with_classical_p() -> None:
    rng = np.random.default_rng(5)  # a seed giving moderate p-values, where Monte-Carlo error matters most
    x = rng.normal(size=40)
    y = 0.3 * x + rng.normal(size=40)
    for method, ref in (("spearman", stats.spearmanr(x, y)), ("pearson", stats.pearsonr(x, y))):
        res = correlation(x, y, method, resampling=Resampling(n_boot=200))
        assert res.statistic == pytest.approx(ref.statistic, rel=1e-12)
        assert res.p_method == "Monte Carlo (9999 permutations)"
        # Permutation and t-based p-values agree closely at n = 40 (Monte-Carlo sd ~0.004 here).
        assert 0.02 < ref.pvalue < 0.5
        assert res.p_value == pytest.approx(ref.pvalue, abs=0.03)
        assert res.ci_low < res.statistic < res.ci_high and res.ci_method == "BCa"
    assert correlation(np.arange(8.0), np.arange(8.0) ** 3,
                       resampling=Resampling(n_boot=50)).p_method == "exact (40320 permutations)"
    assert correlation(np.arange(9.0), np.arange(9.0) ** 3,
                       resampling=Resampling(n_boot=50)).p_method.startswith("Monte Carlo")


def test_bca_interval_close_to_fisher_z_interval() -> None:
    rng = np.random.default_rng(1)
    n, rho = 400, 0.6
    x = rng.normal(size=n)
    y = rho * x + math.sqrt(1 - rho**2) * rng.normal(size=n)
    res = correlation(x, y, "pearson", resampling=Resampling(n_boot=2000))
    z, se = math.atanh(res.statistic), 1 / math.sqrt(n - 3)
    assert res.ci_low == pytest.approx(math.tanh(z - 1.96 * se), abs=0.03)
    assert res.ci_high == pytest.approx(math.tanh(z + 1.96 * se), abs=0.03)
    assert correlation(x, y, "pearson", resampling=Resampling(n_boot=2000)) == res  # fixed seed: reproducible


def test_degenerate_bootstrap_gives_no_interval_and_says_why() -> None:
    x = np.arange(8.0)
    res = correlation(x, np.exp(x), "spearman", resampling=Resampling(n_boot=300))
    assert res.statistic == 1.0 and res.p_value == pytest.approx(2 / 40320)
    assert math.isnan(res.ci_low) and math.isnan(res.ci_high) and res.ci_method == "none"
    assert res.note.startswith("CI not estimable: every bootstrap resample gives 1")
    assert format_ci(res.ci_low, res.ci_high, n=res.n) == "not estimable (n = 8)"  # never [1.000, 1.000]


@pytest.mark.parametrize("level, why", [("model", TOO_FEW_MODELS), ("sample", TOO_FEW_PAIRS)])
def test_too_few_pairs_for_a_bootstrap_interval(level: str, why: str) -> None:
    # Five models, not in perfect order: a p-value, but a bootstrap of 5 points has no meaningful interval.
    x, y = np.array([0.1, 0.4, 0.2, 0.9, 0.5]), np.array([1.0, 2.0, 3.0, 5.0, 4.0])
    five = correlation(x, y, "spearman", level=level, resampling=Resampling(n_boot=300))
    assert five.statistic == pytest.approx(stats.spearmanr(x, y).statistic) and five.p_value < 1
    assert math.isnan(five.ci_low) and five.note == f"{why} (n = 5 < {MIN_PAIRS_FOR_CI})"
    seven = correlation(np.append(x, [0.3, 0.7]), np.append(y, [2.5, 4.5]), "spearman", level=level,
                        resampling=Resampling(n_boot=300))
    assert seven.ci_low < seven.statistic < seven.ci_high


def test_never_raises_on_data_and_counts_dropped_pairs() -> None:
    short = correlation([1.0, 2.0, np.nan], [1.0, 2.0, 3.0], "pearson", resampling=Resampling(n_boot=2000))
    assert math.isnan(short.statistic) and math.isnan(short.p_value)
    assert (short.n, short.n_dropped) == (2, 1) and "fewer than 3 complete pairs" in short.note
    constant = correlation(np.ones(5), np.arange(5.0), "spearman", resampling=Resampling(n_boot=2000))
    assert math.isnan(constant.statistic) and "x constant" in constant.note
    x = np.random.default_rng(4).normal(size=30)
    y = x + np.random.default_rng(5).normal(size=30)
    x[[0, 5]] = np.nan
    y[7] = np.nan
    res = correlation(x, y, "spearman", resampling=Resampling(n_boot=100))
    keep = ~(np.isnan(x) | np.isnan(y))
    assert (res.n, res.n_dropped) == (27, 3)
    assert res.statistic == pytest.approx(stats.spearmanr(x[keep], y[keep]).statistic)
    with pytest.raises(ValueError, match="unknown method"):
        correlation([1, 2, 3], [1, 2, 3], method="kendall")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown level"):
        correlation([1, 2, 3], [1, 2, 3], level="task")  # type: ignore[arg-type]
