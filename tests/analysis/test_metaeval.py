"""Meta-evaluation statistics against exhaustive enumeration, scipy and hand-computed cases."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy import stats

from benchmark.analysis.metaeval import (EPSILON, combined_along, pairwise_accuracy, paired_difference,
                                         power_between, power_within, system_accuracy)
from benchmark.analysis.resampling import Resampling
from benchmark.analysis.validity import within_combined


def _z(v: np.ndarray, method: str) -> np.ndarray:
    u = stats.rankdata(v) if method == "spearman" else v
    return (u - u.mean()) / u.std()


def _combined_reference(xs, ys, method: str) -> float:
    """Sample-weighted mean of the per-model coefficients (scipy), which the combined statistic equals."""
    corr = stats.spearmanr if method == "spearman" else stats.pearsonr
    return sum(x.size * corr(x, y)[0] for x, y in zip(xs, ys)) / sum(x.size for x in xs)


def _swap_p_by_enumeration(a, b, h, groups, method: str) -> tuple[float, float]:
    """(difference, p) of the paired swap test, every one of the 2^n swap patterns by loops and scipy."""
    models = sorted(set(groups))
    idx = [np.flatnonzero(groups == m) for m in models]
    za = np.empty_like(a)
    zb = np.empty_like(b)
    for i in idx:
        za[i], zb[i] = _z(a[i], method), _z(b[i], method)

    def diff(x, y):
        return (_combined_reference([x[i] for i in idx], [h[i] for i in idx], method)
                - _combined_reference([y[i] for i in idx], [h[i] for i in idx], method))

    observed = diff(a, b)
    hits = 0
    patterns = list(itertools.product([False, True], repeat=a.size))
    for swap in patterns:
        s = np.asarray(swap)
        hits += abs(diff(np.where(s, zb, za), np.where(s, za, zb))) >= abs(observed) - 1e-12
    return observed, hits / len(patterns)


@pytest.mark.parametrize(("method", "sizes"), [("spearman", (8,)), ("spearman", (4, 4)), ("pearson", (7,)),
                                               ("pearson", (3, 5))])
def test_paired_permutation_p_equals_exhaustive_enumeration(method, sizes) -> None:
    rng = np.random.default_rng(sum(sizes) + len(sizes))
    groups = np.repeat([f"m{i}" for i in range(len(sizes))], sizes)
    h = rng.normal(size=groups.size)
    a = 0.8 * h + rng.normal(size=groups.size)
    b = rng.normal(size=groups.size)
    res = paired_difference(a, b, h, groups, method, resampling=Resampling(n_boot=200, n_permutations=1000))
    observed, p = _swap_p_by_enumeration(a, b, h, groups, method)
    assert res.difference == pytest.approx(observed, abs=1e-12)
    assert res.p_value == pytest.approx(p, abs=1e-12)
    assert res.p_method == f"exact ({2 ** groups.size} swap patterns)"
    assert res.n == groups.size and res.n_models == len(sizes)


def test_combined_statistic_is_the_pages_within_model_statistic() -> None:
    rng = np.random.default_rng(3)
    groups = np.repeat(["a", "b", "c"], [20, 30, 25])
    x, y = rng.normal(size=75), rng.normal(size=75)
    y += 0.5 * x
    xs = [x[groups == g] for g in "abc"]
    ys = [y[groups == g] for g in "abc"]
    for method in ("spearman", "pearson"):
        value = float(combined_along(xs, ys, method))
        assert value == pytest.approx(within_combined(x, y, groups, method,
                                                      resampling=Resampling(n_boot=50)).statistic, abs=1e-12)
        assert value == pytest.approx(_combined_reference(xs, ys, method), abs=1e-12)


def test_paired_difference_monte_carlo_and_bootstrap() -> None:
    rng = np.random.default_rng(4)
    groups = np.repeat(["a", "b", "c", "d"], 60)
    h = rng.normal(size=240)
    good, noise = h + 0.5 * rng.normal(size=240), rng.normal(size=240)
    res = paired_difference(good, noise, h, groups, resampling=Resampling(n_boot=500, n_permutations=999))
    assert res.p_method == "Monte Carlo (999 swap patterns)"
    assert res.p_value == pytest.approx(1 / 1000)  # no swap pattern reaches a difference this large
    assert 0 < res.ci_low < res.difference < res.ci_high
    twin = h + 0.5 * rng.normal(size=240)  # as good a score, drawn the same way
    same = paired_difference(good, twin, h, groups, resampling=Resampling(n_boot=500, n_permutations=999))
    assert same.p_value > 0.05 and same.ci_low <= 0 <= same.ci_high
    # The same ranks: every resample gives a difference of 0, which has no interval and says so.
    tie = paired_difference(good, good + 1e-9, h, groups, resampling=Resampling(n_boot=100, n_permutations=999))
    assert tie.difference == 0 and tie.p_value == 1 and np.isnan(tie.ci_low) and "not estimable" in tie.note
    # Samples with a NaN in either score are dropped from both; a model left with too few is named.
    a = good.copy()
    a[groups == "d"] = np.nan
    part = paired_difference(a, noise, h, groups, resampling=Resampling(n_boot=100, n_permutations=1000))
    assert part.n == 180 and part.n_models == 3 and "d" in part.note


def test_pairwise_accuracy_with_ties_hand_built() -> None:
    # Pairs of (score, quality) model means: (0,1) both tie -> agree; (2,3) opposite order -> disagree;
    # every other pair ordered alike -> agree: 5 of 6.
    assert pairwise_accuracy([1.0, 1.0, 2.0, 3.0], [0.5, 0.5, 0.7, 0.6]) == pytest.approx(5 / 6)
    # A tie on one side only disagrees: (0,1) score tie, quality not; (1,2) quality tie, score not -> 4 of 6.
    assert pairwise_accuracy([1.0, 1.0, 2.0, 3.0], [0.5, 0.7, 0.7, 0.9]) == pytest.approx(4 / 6)
    # Within epsilon is a tie, beyond it is not.
    near = 1.0 + EPSILON / 2
    assert pairwise_accuracy([1.0, near, 2.0], [0.5, 0.5, 0.7]) == pytest.approx(1.0)
    assert pairwise_accuracy([1.0, 1.0 + 2 * EPSILON, 2.0], [0.5, 0.5, 0.7]) == pytest.approx(2 / 3)
    # A constant score ties every pair: it agrees with none unless quality ties too.
    assert pairwise_accuracy([0.2, 0.2, 0.2], [0.1, 0.2, 0.3]) == 0.0
    assert np.isnan(pairwise_accuracy([1.0], [2.0]))


def test_pairwise_accuracy_is_kendall_without_ties_and_its_p_is_exact() -> None:
    rng = np.random.default_rng(5)
    groups = np.repeat([f"m{i}" for i in range(6)], 10)
    offsets = np.repeat(rng.normal(size=6), 10)
    score = offsets + 0.3 * rng.normal(size=60)
    quality = offsets + 0.3 * rng.normal(size=60)
    res = system_accuracy(score, quality, groups, resampling=Resampling(n_boot=300))
    sm = np.array([score[groups == g].mean() for g in np.unique(groups)])
    qm = np.array([quality[groups == g].mean() for g in np.unique(groups)])
    tau = stats.kendalltau(sm, qm)
    assert res.accuracy == pytest.approx((1 + tau.statistic) / 2)
    exact = stats.kendalltau(sm, qm, method="exact", alternative="greater").pvalue
    assert res.p_value == pytest.approx(exact, abs=1e-12)
    assert res.p_method == "exact (720 pairings)" and res.n_pairs == 15 and res.score_ties == 0
    assert res.ci_low <= res.accuracy <= res.ci_high


def test_pairwise_accuracy_bootstrap_recomputes_model_means() -> None:
    groups = np.repeat(["a", "b", "c"], 8)
    quality = np.repeat([0.0, 1.0, 2.0], 8) + np.tile(np.linspace(-0.1, 0.1, 8), 3)
    # Far apart means: every resample orders the models alike, so there is no interval, and it says so.
    res = system_accuracy(quality * 2, quality, groups, resampling=Resampling(n_boot=200))
    assert res.accuracy == 1.0 and np.isnan(res.ci_low) and "not estimable" in res.note
    # Overlapping models: resampled means sometimes swap, so the interval opens below the observed value.
    noisy = np.repeat([0.0, 0.05, 2.0], 8) + np.tile(np.linspace(-1, 1, 8), 3)
    res = system_accuracy(noisy, quality, groups, resampling=Resampling(n_boot=500))
    assert res.accuracy == 1.0 and res.ci_low < 1.0 and res.ci_high == 1.0


def _moran(rho_s: float, n: int) -> float:
    """Expected sample Spearman of n bivariate-normal pairs whose population Spearman is rho_s (Moran 1948)."""
    rho = 2 * math.sin(math.pi * rho_s / 6)
    return 6 / (math.pi * (n + 1)) * (math.asin(rho) + (n - 2) * math.asin(rho / 2))


def test_power_simulation_recovers_a_planted_correlation() -> None:
    rng = np.random.default_rng(6)
    groups = np.repeat(["a", "b", "c", "d"], 50)
    x, y = rng.normal(size=200), rng.lognormal(size=200)  # continuous marginals: no ties
    res = power_within(x, y, groups, 0.3, grid=(40,), n_sims=400)
    assert res.tried.keys() == {40}
    assert abs(res.mean_statistic - _moran(0.3, 40)) < 4 * res.statistic_se
    null = power_within(x, y, groups, 0.0, grid=(40,), n_sims=400)
    assert abs(null.power - 0.05) < 4 * math.sqrt(0.05 * 0.95 / 400)  # the level holds
    # Samples per model needed: power reaches the target there and not one sample below.
    found = power_within(x, y, groups, 0.3, n_sims=400)
    assert found.power >= 0.8 and found.tried[int(found.needed) - 1] < 0.8
    assert 12 < found.needed < 48  # about (2.8 / 0.3)^2 / 4 = 22 per model for 4 models


def test_between_model_power_recovers_a_planted_correlation() -> None:
    rng = np.random.default_rng(7)
    groups = np.repeat([f"m{i}" for i in range(5)], 30)
    means = np.repeat(rng.normal(size=5), 30)
    # Within-model deviations tiny against the spread of the means: observed means are the true ones.
    x, y = means + 1e-6 * rng.normal(size=150), means + 1e-6 * rng.normal(size=150)
    res = power_between(x, y, groups, 0.8, grid=(10,), n_sims=400)
    assert abs(res.mean_statistic - _moran(0.8, 10)) < 4 * res.statistic_se
    # With 4 models the smallest two-sided exact p is 2/24 > 0.05: no power at all.
    assert power_between(x, y, groups, 0.8, grid=(4,), n_sims=100).power == 0.0


def test_pairwise_accuracy_bootstrap_draws_the_same_inputs_for_every_model() -> None:
    rng = np.random.default_rng(8)
    groups = np.repeat(["a", "b", "c"], 10)
    units = np.tile([f"s{i}" for i in range(10)], 3)
    area = np.tile(rng.uniform(size=10), 3)  # a property of the input: equal for every model on it
    quality = np.repeat([0.0, 1.0, 2.0], 10) + rng.normal(size=30)
    paired = system_accuracy(area, quality, groups, units=units, resampling=Resampling(n_boot=200))
    assert paired.accuracy == 0.0 and paired.score_ties == 3 and np.isnan(paired.ci_low)  # ties in every resample
    apart = system_accuracy(area, quality, groups,
                            resampling=Resampling(n_boot=200))  # each model resampled on its own: ties break
    assert apart.accuracy == 0.0 and apart.ci_high > 0
    shuffled = np.concatenate([units[:10][::-1], units[10:]])  # the same inputs, in another order
    reordered = area[np.r_[np.arange(9, -1, -1), 10:30]]
    assert np.isnan(system_accuracy(reordered, quality, groups, units=shuffled,
                                    resampling=Resampling(n_boot=50)).ci_low)
