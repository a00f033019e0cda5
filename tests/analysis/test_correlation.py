from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from benchmark.analysis.correlation import (
    correlation,
    model_level_correlation,
    pearson,
    sample_level_correlations,
    spearman,
)


def noisy_linear(n: int, seed: int, noise: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    return x, x + noise * rng.normal(size=n)


def test_perfectly_monotone_gives_rho_one() -> None:
    x = np.arange(10, dtype=float)
    res = spearman(x, np.exp(x), n_boot=300)
    assert res.statistic == pytest.approx(1.0)
    assert res.p_value == pytest.approx(stats.spearmanr(x, np.exp(x)).pvalue)
    assert res.ci_low == pytest.approx(1.0) and res.ci_high == pytest.approx(1.0)
    assert spearman(x, -x**3, n_boot=50).statistic == pytest.approx(-1.0)


def test_matches_scipy_on_noisy_data() -> None:
    x, y = noisy_linear(60, seed=0)
    for method, ref in (("spearman", stats.spearmanr(x, y)), ("pearson", stats.pearsonr(x, y))):
        res = correlation(x, y, method=method, n_boot=500)
        assert res.statistic == pytest.approx(ref.statistic, rel=1e-12)
        assert res.p_value == pytest.approx(ref.pvalue, rel=1e-9)
        assert res.ci_low <= res.statistic <= res.ci_high
        assert res.n == 60 and res.n_boot_valid == 500


def test_bootstrap_replicates_match_brute_force_loop() -> None:
    x, y = noisy_linear(25, seed=1)
    res = spearman(x, y, n_boot=200, seed=5)
    rng = np.random.default_rng(5)
    idx = rng.integers(0, 25, size=(200, 25))
    reps = np.array([stats.spearmanr(x[i], y[i]).statistic for i in idx])
    assert (res.ci_low, res.ci_high) == pytest.approx(tuple(np.quantile(reps, [0.025, 0.975])), rel=1e-9)


def test_ci_narrows_with_more_samples() -> None:
    small = pearson(*noisy_linear(30, seed=2), n_boot=500)
    large = pearson(*noisy_linear(600, seed=3), n_boot=500)
    assert (large.ci_high - large.ci_low) < (small.ci_high - small.ci_low)


def test_nan_pairs_dropped_and_counted_and_seed_reproducible() -> None:
    x, y = noisy_linear(40, seed=4)
    x[[0, 5]] = np.nan
    y[7] = np.nan
    res = spearman(x, y, n_boot=100, seed=9)
    keep = ~(np.isnan(x) | np.isnan(y))
    assert (res.n, res.n_dropped) == (37, 3)
    assert res.statistic == pytest.approx(stats.spearmanr(x[keep], y[keep]).statistic)
    assert spearman(x, y, n_boot=100, seed=9) == res


def test_constant_and_too_short_inputs() -> None:
    res = spearman(np.ones(5), np.arange(5.0), n_boot=10)
    assert res.constant_input and math.isnan(res.statistic) and math.isnan(res.ci_low)
    with pytest.raises(ValueError, match="at least 3"):
        pearson([1.0, 2.0, np.nan], [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="unknown method"):
        correlation([1, 2, 3], [1, 2, 3], method="kendall")  # type: ignore[arg-type]


def test_model_level_one_point_per_model() -> None:
    models = ["a", "b", "c", "d", "e"]
    attribution = [0.1, 0.4, 0.2, 0.9, 0.5]
    fid = [30.0, 12.0, 25.0, 3.0, 10.0]  # exactly reversed ranks: lower FID for higher attribution
    frame = pd.DataFrame(
        [{"model": m, "metric": "attr", "value": v} for m, v in zip(models, attribution)]
        + [{"model": m, "metric": "fid", "value": v} for m, v in zip(models, fid)]
        + [{"model": "f", "metric": "attr", "value": 0.3}]  # no FID: dropped and counted
    )
    res = model_level_correlation(frame, "attr", "fid", n_boot=100)
    assert res.statistic == pytest.approx(-1.0)
    assert (res.n, res.n_dropped) == (5, 1)
    with pytest.raises(ValueError, match="duplicated"):
        model_level_correlation(pd.concat([frame, frame.head(1)]), "attr", "fid")
    with pytest.raises(ValueError, match="not in frame"):
        model_level_correlation(frame, "attr", "lpips")


def test_sample_level_pooled_and_per_model() -> None:
    rng = np.random.default_rng(6)
    rows = []
    data: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for model, noise in (("m1", 0.2), ("m2", 2.0)):
        x = rng.normal(size=30)
        y = x + noise * rng.normal(size=30)
        data[model] = (x, y)
        for i in range(30):
            rows.append({"task": "t", "model": model, "sample_id": i, "metric": "attr", "value": x[i]})
            rows.append({"task": "t", "model": model, "sample_id": i, "metric": "ssim", "value": y[i]})
    out = sample_level_correlations(pd.DataFrame(rows), "attr", "ssim", n_boot=100)
    assert out["scope"].tolist() == ["pooled", "model", "model"]
    assert out["model"].tolist()[1:] == ["m1", "m2"]
    pooled_x = np.concatenate([data["m1"][0], data["m2"][0]])
    pooled_y = np.concatenate([data["m1"][1], data["m2"][1]])
    assert out.loc[0, "statistic"] == pytest.approx(stats.spearmanr(pooled_x, pooled_y).statistic)
    for row, model in ((1, "m1"), (2, "m2")):
        assert out.loc[row, "statistic"] == pytest.approx(stats.spearmanr(*data[model]).statistic)
        assert out.loc[row, "n"] == 30
