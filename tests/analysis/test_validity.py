from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from benchmark.analysis.correlation import TOO_FEW_MODELS, stratified_pvalue
from benchmark.analysis.resampling import Resampling
from benchmark.analysis.validity import (
    WITHIN_BETWEEN_NOTE,
    render_within_between,
    standard_scores,
    within_between,
    within_combined,
)


def zero_spearman_permutation(n: int, rng: np.random.Generator) -> np.ndarray:
    """A permutation of 0..n-1 whose Spearman correlation with 0..n-1 is exactly 0."""
    target = n * (n * n - 1) / 6  # sum of squared rank differences at rho = 0
    while True:
        p = rng.permutation(n)
        if np.sum((p - np.arange(n)) ** 2) == target:
            return p.astype(float)


def labelled(xs: list[np.ndarray], ys: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-group arrays as labelled pairs (x, y, group), the groups in sorted order."""
    groups = np.concatenate([np.full(x.size, f"g{k}") for k, x in enumerate(xs)])
    return np.concatenate(xs), np.concatenate(ys), groups


def tidy(task: str, data: dict[str, tuple[np.ndarray, np.ndarray]], x: str = "imacs_g",
         y: str = "masked_psnr") -> pd.DataFrame:
    rows = []
    for model, (xs, ys) in data.items():
        for i, (a, b) in enumerate(zip(xs, ys)):
            rows.append({"task": task, "model": model, "sample_id": f"s{i:03d}", "metric": x, "value": a})
            rows.append({"task": task, "model": model, "sample_id": f"s{i:03d}", "metric": y, "value": b})
    return pd.DataFrame(rows)


def with_pearson_r(x: np.ndarray, r: float, rng: np.random.Generator) -> np.ndarray:
    """y whose Pearson correlation with x is exactly r (up to round-off)."""
    zx = (x - x.mean()) / x.std()
    e = rng.normal(size=x.size)
    e -= e.mean() + (e @ zx) / x.size * zx  # orthogonal to 1 and to x
    return r * zx + math.sqrt(1 - r * r) * e / e.std()


def test_pooled_high_within_zero_between_high() -> None:
    # Every model: samples with zero rank correlation; models differ by a common offset in both metrics.
    rng = np.random.default_rng(0)
    data = {f"m{k}": (np.arange(12.0) + 100 * k, zero_spearman_permutation(12, rng) + 100 * k) for k in range(5)}
    out = within_between(tidy("t", data), scores=["imacs_g"], qualities=["masked_psnr"],
                         resampling=Resampling(n_boot=200, n_permutations=999))
    assert list(out["method"].unique()) == ["spearman", "pearson"]  # both by default
    spearman = out[out.method == "spearman"]
    by_scope = spearman.set_index("scope")
    assert list(spearman["scope"]) == ["pooled", *[f"within:m{k}" for k in range(5)], "within (combined)",
                                       "between models"]
    assert by_scope.loc["pooled", "statistic"] > 0.9 and by_scope.loc["pooled", "p_value"] < 0.01
    for k in range(5):
        assert by_scope.loc[f"within:m{k}", "statistic"] == pytest.approx(0.0, abs=1e-12)
        assert by_scope.loc[f"within:m{k}", "n"] == 12
    combined = by_scope.loc["within (combined)"]
    assert combined["statistic"] == pytest.approx(0.0, abs=1e-12)
    assert combined["ci_low"] < 0 < combined["ci_high"] and combined["p_value"] > 0.5
    assert combined["n"] == 60 and combined["ci_method"] == "stratified BCa"
    # Five models in perfect order: p exact (5! pairings), the CI not estimable and said why.
    between = by_scope.loc["between models"]
    assert between["statistic"] == pytest.approx(1.0) and between["n"] == 5
    assert between["p_value"] == pytest.approx(2 / 120)
    assert math.isnan(between["ci_low"]) and math.isnan(between["ci_high"])
    assert between["note"] == f"{TOO_FEW_MODELS} (n = 5 < 7)"
    assert "| masked_psnr | between models | 5 | 1.000 not estimable (n = 5), p 0.017 |" in "\n".join(
        render_within_between(out))


def test_pearson_rows_equal_scipy_pearsonr() -> None:
    rng = np.random.default_rng(7)
    data = {m: (x := rng.normal(size=9), 0.5 * x + rng.normal(size=9)) for m in ("a", "b")}
    out = within_between(tidy("t", data), scores=["imacs_g"], qualities=["masked_psnr"], methods=("pearson",),
                         resampling=Resampling(n_boot=100, n_permutations=499)).set_index("scope")
    pooled = stats.pearsonr(*(np.concatenate([v[i] for v in data.values()]) for i in (0, 1)))
    assert out.loc["pooled", "statistic"] == pytest.approx(pooled.statistic, rel=1e-12)
    for m, (x, y) in data.items():
        assert out.loc[f"within:{m}", "statistic"] == pytest.approx(stats.pearsonr(x, y).statistic, rel=1e-12)


def test_combined_is_the_sample_weighted_mean_of_the_per_model_coefficients() -> None:
    rng = np.random.default_rng(1)
    xs = [rng.normal(size=n) for n in (10, 25, 40)]
    ys = [x * s + rng.normal(size=x.size) for x, s in zip(xs, (0.2, 1.0, -0.5))]
    for method, f in (("spearman", stats.spearmanr), ("pearson", stats.pearsonr)):
        res = within_combined(*labelled(xs, ys), method, resampling=Resampling(n_boot=200, n_permutations=499))
        r = [f(x, y).statistic for x, y in zip(xs, ys)]
        assert res.statistic == pytest.approx(np.dot([10, 25, 40], r) / 75, rel=1e-12)
        # ... which is one Pearson r over the within-model standard scores (of ranks for Spearman).
        pooled = stats.pearsonr(np.concatenate([standard_scores(method, x) for x in xs]),
                                np.concatenate([standard_scores(method, y) for y in ys]))
        assert res.statistic == pytest.approx(pooled.statistic, rel=1e-12)
        assert res.n == 75 and res.ci_low < res.statistic < res.ci_high


def test_combined_by_hand() -> None:
    # Model A: ranks (1, 2, 3) against (1, 3, 2): standard scores (-1, 0, 1) and (-1, 1, 0) over sd sqrt(2/3),
    # sum of products 1 / (2/3) = 1.5, so r_A = 1.5 / 3 = 0.5. Model B: reversed order, r_B = -1.
    # Pooled: (3 * 0.5 + 4 * -1) / 7 = -5/14.
    x = np.array([1.0, 2.0, 3.0, 10.0, 20.0, 30.0, 40.0])
    y = np.array([5.0, 9.0, 7.0, 4.0, 3.0, 2.0, 1.0])
    groups = np.array(["A"] * 3 + ["B"] * 4)
    res = within_combined(x, y, groups, "spearman", resampling=Resampling(n_boot=200))
    assert res.statistic == pytest.approx(-5 / 14, abs=1e-12)
    assert res.n == 7 and res.p_method == "exact (144 permutations within 2 models)"


def test_a_perfect_model_does_not_dominate_the_combined_value() -> None:
    rng = np.random.default_rng(4)
    x = np.arange(6.0)
    xs, ys = [x, x + 10], [with_pearson_r(x, -0.8, rng), 2 * x + 1]
    res = within_combined(*labelled(xs, ys), "pearson", resampling=Resampling(n_boot=500))
    assert stats.pearsonr(xs[0], ys[0]).statistic == pytest.approx(-0.8, abs=1e-12)
    assert res.statistic == pytest.approx(0.1, abs=1e-12)  # (6 * -0.8 + 6 * 1) / 12, not 0.999
    assert res.ci_low < 0.1 < res.ci_high and res.p_value > 0.05
    frame = within_between(tidy("t", {"a": (xs[0], ys[0]), "b": (xs[1], ys[1])}), scores=["imacs_g"],
                           qualities=["masked_psnr"], resampling=Resampling(n_boot=300, n_permutations=999))
    row = frame[(frame.scope == "within (combined)") & (frame.method == "spearman")].iloc[0]
    rho_a = stats.spearmanr(xs[0], ys[0]).statistic
    assert row["statistic"] == pytest.approx((rho_a + 1) / 2, abs=1e-12)
    body = "\n".join(render_within_between(frame))
    assert "0.999" not in body and f"| within (combined) | 12 | {(rho_a + 1) / 2:.3f} [" in body


def brute_force_stratified_p(xs: list[np.ndarray], ys: list[np.ndarray], method: str) -> float:
    """Every within-group pairing of every group, enumerated with scipy's coefficients."""
    f = stats.spearmanr if method == "spearman" else stats.pearsonr
    per_group = [np.array([x.size * f(x, np.array(p)).statistic for p in itertools.permutations(y)])
                 for x, y in zip(xs, ys)]
    null = per_group[0]
    for g in per_group[1:]:
        null = np.add.outer(null, g).ravel()
    n = sum(x.size for x in xs)
    null /= n
    observed = sum(x.size * f(x, y).statistic for x, y in zip(xs, ys)) / n
    return float(min(1.0, 2 * min(np.mean(null >= observed - 1e-12), np.mean(null <= observed + 1e-12))))


@pytest.mark.parametrize("method", ["spearman", "pearson"])
def test_stratified_p_is_exact_up_to_8_factorial_pairings(method: str) -> None:
    rng = np.random.default_rng(2)
    xs = [rng.normal(size=4), rng.normal(size=5)]
    ys = [xs[0] + 0.5 * rng.normal(size=4), np.round(xs[1] + 1.5 * rng.normal(size=5))]  # ties in the second
    res = within_combined(*labelled(xs, ys), method, resampling=Resampling(n_boot=100))
    assert res.p_method == "exact (2880 permutations within 2 models)"
    assert res.p_value == pytest.approx(brute_force_stratified_p(xs, ys, method), abs=1e-12)


def test_stratified_p_monte_carlo_agrees_with_enumeration() -> None:
    rng = np.random.default_rng(3)
    xs = [rng.normal(size=6), rng.normal(size=6)]
    ys = [xs[0] + 3 * rng.normal(size=6), rng.normal(size=6)]
    exact = brute_force_stratified_p(xs, ys, "pearson")  # 720^2 pairings: more than 8!, so Monte Carlo
    p, how = stratified_pvalue(xs, ys, n_permutations=9999, strata="models")
    assert how == "Monte Carlo (9999 permutations within 2 models)"
    assert 0.05 < exact < 0.95 and p == pytest.approx(exact, abs=0.02)  # Monte-Carlo sd <= 0.01


def test_missing_values_short_models_and_rendering() -> None:
    rng = np.random.default_rng(3)
    data = {m: (rng.normal(size=20), rng.normal(size=20)) for m in ("a", "b", "c")}
    data["a"][0][:3] = np.nan
    data["c"] = (data["c"][0][:2], data["c"][1][:2])  # too short for the combined estimate
    frame = tidy("task1", data)
    out = within_between(frame, scores=["imacs_g", "imacs_r"], qualities=["masked_psnr"],
                         resampling=Resampling(n_boot=100, n_permutations=499))
    assert set(out["x"]) == {"imacs_g"}  # imacs_r absent from the frame: skipped
    assert set(out["method"]) == {"spearman", "pearson"}
    assert (out["x_sign"] == 1).all() and (out["y_sign"] == 1).all()
    a = out[(out.scope == "within:a") & (out.method == "spearman")].iloc[0]
    assert (a["n"], a["n_dropped"]) == (17, 3)
    comb = out[(out.scope == "within (combined)") & (out.method == "spearman")].iloc[0]
    assert comb["n"] == 37 and "left out" in comb["note"] and "c" in comb["note"]

    lines = render_within_between(out, labels={"imacs_g": "IMACS_g", "masked_psnr": "masked PSNR"})
    assert lines[0] == WITHIN_BETWEEN_NOTE
    assert "rank samples" in WITHIN_BETWEEN_NOTE and "rank models" in WITHIN_BETWEEN_NOTE
    body = "\n".join(lines)
    assert "| x | y | scope | n | Spearman: r [95% CI], p | Pearson: r [95% CI], p | note |" in body
    assert "| IMACS_g | masked PSNR | within (combined) | 37 |" in body
    assert "| between models | 3 |" in body and "not estimable (n = 3)" in body
    assert "| within:c | 2 | n/a | n/a | fewer than 3 complete pairs (n=2, 0 dropped) |" in body

    with pytest.raises(ValueError, match="duplicated"):
        within_between(pd.concat([frame, frame.head(1)]), scores=["imacs_g"], qualities=["masked_psnr"])


def test_lower_is_better_quality_is_negated_and_labelled() -> None:
    rng = np.random.default_rng(5)
    data = {m: (x := rng.normal(size=10), -x + 0.3 * rng.normal(size=10)) for m in ("a", "b")}  # LPIPS falls
    out = within_between(tidy("t", data, y="lpips"), scores=["imacs_g"], qualities=["lpips"],
                         resampling=Resampling(n_boot=100, n_permutations=499))
    assert (out["y_sign"] == -1).all() and (out["x_sign"] == 1).all()
    for m, (x, y) in data.items():
        row = out[(out.scope == f"within:{m}") & (out.method == "spearman")].iloc[0]
        assert row["statistic"] == pytest.approx(-stats.spearmanr(x, y).statistic, rel=1e-12) and row["statistic"] > 0
        assert row["ci_low"] > 0 and row["p_value"] < 0.05
    body = "\n".join(render_within_between(out, labels={"imacs_g": "IMACS_g", "lpips": "LPIPS"}))
    assert "| IMACS_g | \u2212LPIPS | pooled |" in body
    assert "\u2212LPIPS: lower is better, so correlations are given with the sign flipped" in body
