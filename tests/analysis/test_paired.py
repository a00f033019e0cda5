from __future__ import annotations

import itertools

import numpy as np
import pytest

from benchmark.analysis.paired import holm, paired_test
from benchmark.analysis.resampling import Resampling


def _enumerated_p(d: np.ndarray) -> float:
    """Share of all 2**n sign patterns whose |mean| reaches the observed |mean|."""
    observed = abs(np.mean(d))
    patterns = itertools.product((1, -1), repeat=len(d))
    hits = [abs(np.mean(np.array(signs) * d)) >= observed - 1e-12 for signs in patterns]
    return float(np.mean(hits))


@pytest.mark.parametrize("n", range(1, 9))
def test_exact_p_matches_enumeration_of_sign_patterns(n: int) -> None:
    rng = np.random.default_rng(n)
    for new, old in ((rng.normal(0.3, 1.0, n), rng.normal(size=n)),  # continuous values
                     (rng.integers(0, 3, n).astype(float), rng.integers(0, 3, n).astype(float))):  # many ties
        res = paired_test(new, old)
        assert res.p_method == "exact"
        assert res.p_value == pytest.approx(_enumerated_p(new - old), abs=1e-15)
        assert res.n == n and res.mean == pytest.approx(np.mean(new - old))


def test_exact_while_all_patterns_fit_in_the_budget() -> None:
    d = np.random.default_rng(0).normal(size=14)
    assert paired_test(d[:13], np.zeros(13),
                       resampling=Resampling(n_permutations=9999)).p_method == "exact"  # 8192 <= 10000
    assert paired_test(d, np.zeros(14), resampling=Resampling(n_permutations=9999)).p_method == "monte-carlo"


def test_monte_carlo_p_is_close_to_exact_for_n_12() -> None:
    rng = np.random.default_rng(4)
    new, old = rng.normal(0.5, 1.0, 12), rng.normal(size=12)
    exact = paired_test(new, old, resampling=Resampling(n_permutations=9999))
    mc = paired_test(new, old, resampling=Resampling(n_permutations=3000))
    assert (exact.p_method, mc.p_method) == ("exact", "monte-carlo")
    assert exact.p_value == pytest.approx(_enumerated_p(new - old), abs=1e-15)
    assert 0.01 < exact.p_value < 0.5
    assert mc.p_value == pytest.approx(exact.p_value, abs=4 * np.sqrt(exact.p_value / 3000))


def test_monte_carlo_p_is_never_zero() -> None:
    res = paired_test(np.arange(1.0, 31.0), np.zeros(30), resampling=Resampling(n_permutations=999))
    assert (res.p_method, res.p_value) == ("monte-carlo", 1 / 1000)


def test_seeded_and_deterministic() -> None:
    rng = np.random.default_rng(5)
    new, old = rng.normal(size=40), rng.normal(size=40)
    seed3, seed4 = Resampling(seed=3), Resampling(seed=4)
    assert paired_test(new, old, resampling=seed3) == paired_test(new, old, resampling=seed3)
    assert paired_test(new, old, resampling=seed3).ci_low != paired_test(new, old, resampling=seed4).ci_low


def test_bootstrap_ci_covers_the_mean_and_matches_brute_force() -> None:
    rng = np.random.default_rng(6)
    new, old = rng.normal(0.2, 1.0, 30), rng.normal(size=30)
    res = paired_test(new, old, resampling=Resampling(n_boot=2000))
    assert res.ci_low < res.mean < res.ci_high
    assert res.ci_method == "paired bootstrap percentile" and res.note == ""
    # Independent check: resampled pairs' mean differences, drawn by index, spread like the CI says.
    d = new - old
    brute = np.array([d[rng.integers(0, 30, 30)].mean() for _ in range(4000)])
    se = d.std(ddof=1) / np.sqrt(30)
    assert res.ci_low == pytest.approx(np.quantile(brute, 0.025), abs=0.2 * se)
    assert res.ci_high == pytest.approx(np.quantile(brute, 0.975), abs=0.2 * se)


def test_ci_not_estimable_for_one_pair_or_degenerate_resamples() -> None:
    one = paired_test([2.0], [1.0])
    assert np.isnan(one.ci_low) and np.isnan(one.ci_high)
    assert (one.n, one.mean, one.p_value, one.ci_method, one.note) == (1, 1.0, 1.0, "none", "not estimable (n = 1)")
    # A single resample cannot spread although the differences do: no [x, x] interval.
    single = paired_test([1.0, 2.0, 4.0], [0.0, 0.0, 0.0], resampling=Resampling(n_boot=1))
    assert np.isnan(single.ci_low) and single.note == "not estimable (n = 3)"


def test_nan_pairs_dropped_and_all_zero_differences() -> None:
    res = paired_test([1.0, np.nan, 3.0, 4.0], [1.0, 2.0, np.nan, 4.0])
    assert (res.n, res.mean, res.p_value, res.note) == (2, 0.0, 1.0, "all differences 0")
    none = paired_test([np.nan], [1.0])
    assert none.n == 0 and np.isnan(none.mean) and np.isnan(none.p_value) and none.note == "no complete pairs"


def test_holm_hand_computed() -> None:
    # sorted 0.005, 0.01, 0.03, 0.04 -> 4 x 0.005, 3 x 0.01, 2 x 0.03, max(0.06, 1 x 0.04)
    got = holm([0.01, 0.04, np.nan, 0.03, 0.005])
    np.testing.assert_allclose(got, [0.03, 0.06, np.nan, 0.06, 0.02])
    np.testing.assert_array_equal(holm([0.5, 0.6]), [1.0, 1.0])
    assert holm([]).shape == (0,)


def test_holm_matches_a_brute_force_loop() -> None:
    rng = np.random.default_rng(7)
    for _ in range(20):
        p = rng.uniform(0, 0.2, rng.integers(1, 12))
        p[rng.random(p.size) < 0.2] = np.nan
        p[rng.random(p.size) < 0.2] = 0.05  # ties
        defined = [i for i in range(p.size) if not np.isnan(p[i])]
        order = sorted(defined, key=lambda i: p[i])
        expected, running = np.full(p.size, np.nan), 0.0
        for rank, i in enumerate(order):
            running = max(running, min(1.0, (len(order) - rank) * p[i]))
            expected[i] = running
        got = holm(p)
        np.testing.assert_allclose(got, expected, rtol=1e-12)
        assert np.all(got[defined] >= p[defined])


def test_constant_shift_is_an_exact_interval_not_a_degenerate_one() -> None:
    x = np.random.default_rng(8).normal(size=20)
    res = paired_test(x + 0.1, x)  # differences 0.1 up to rounding
    assert res.ci_low == pytest.approx(0.1) and res.ci_high == pytest.approx(0.1)
    assert res.note == "all 20 differences equal 0.1" and res.p_value == 1 / 10000
