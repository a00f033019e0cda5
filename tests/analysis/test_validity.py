from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from benchmark.analysis.validity import WITHIN_BETWEEN_NOTE, render_within_between, within_between, within_combined


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


def test_pooled_high_within_zero_between_high() -> None:
    # Every model: samples with zero rank correlation; models differ by a common offset in both metrics.
    rng = np.random.default_rng(0)
    data = {f"m{k}": (np.arange(12.0) + 100 * k, zero_spearman_permutation(12, rng) + 100 * k) for k in range(5)}
    out = within_between(tidy("t", data), scores=["imacs_g"], qualities=["masked_psnr"], n_boot=200,
                         n_permutations=999)
    by_scope = out.set_index("scope")
    assert list(out["scope"]) == ["pooled", *[f"within:m{k}" for k in range(5)], "within (combined)", "between models"]
    assert by_scope.loc["pooled", "statistic"] > 0.9 and by_scope.loc["pooled", "p_value"] < 0.01
    for k in range(5):
        assert by_scope.loc[f"within:m{k}", "statistic"] == pytest.approx(0.0, abs=1e-12)
        assert by_scope.loc[f"within:m{k}", "n"] == 12
    combined = by_scope.loc["within (combined)"]
    assert combined["statistic"] == pytest.approx(0.0, abs=1e-12)
    assert combined["ci_low"] < 0 < combined["ci_high"] and combined["p_value"] > 0.5
    assert combined["n"] == 60
    between = by_scope.loc["between models"]
    assert between["statistic"] == pytest.approx(1.0) and between["n"] == 5
    assert between["p_value"] == pytest.approx(2 / 120)  # exact: 5! pairings
    assert between["note"] != "too few models for a CI"

    four = within_between(tidy("t", {k: v for k, v in data.items() if k != "m4"}), scores=["imacs_g"],
                          qualities=["masked_psnr"], n_boot=100, n_permutations=499)
    b4 = four.set_index("scope").loc["between models"]
    assert b4["p_value"] == pytest.approx(1 / 12) and b4["note"] == "too few models for a CI"
    assert math.isnan(b4["ci_low"])


def test_combined_is_weighted_fisher_z_mean() -> None:
    rng = np.random.default_rng(1)
    xs = [rng.normal(size=n) for n in (10, 25, 40)]
    ys = [x * s + rng.normal(size=x.size) for x, s in zip(xs, (0.2, 1.0, -0.5))]
    for method, f in (("spearman", stats.spearmanr), ("pearson", stats.pearsonr)):
        res = within_combined(*labelled(xs, ys), method, n_boot=200, n_permutations=499)
        z = [math.atanh(f(x, y).statistic) for x, y in zip(xs, ys)]
        w = [x.size - 3 for x in xs]
        assert res.statistic == pytest.approx(math.tanh(np.dot(w, z) / sum(w)), rel=1e-12)
        assert res.n == 75 and res.ci_low < res.statistic < res.ci_high


def test_stratified_permutation_p_matches_exact_enumeration() -> None:
    rng = np.random.default_rng(2)
    xs = [rng.normal(size=4), rng.normal(size=5)]
    ys = [xs[0] + 0.5 * rng.normal(size=4), xs[1] + 1.5 * rng.normal(size=5)]

    def z(x: np.ndarray, y: np.ndarray) -> float:
        return math.atanh(float(np.clip(stats.pearsonr(x, y).statistic, -1 + 1e-7, 1 - 1e-7)))

    # Weights n_i - 3 = 1 and 2; every within-group pairing of both groups, enumerated.
    z0 = np.array([z(xs[0], np.array(p)) for p in itertools.permutations(ys[0])])
    z1 = np.array([z(xs[1], np.array(p)) for p in itertools.permutations(ys[1])])
    null = np.tanh((z0[:, None] + 2 * z1[None, :]) / 3).ravel()
    observed = math.tanh((z(xs[0], ys[0]) + 2 * z(xs[1], ys[1])) / 3)
    exact = min(1.0, 2 * min(np.mean(null >= observed - 1e-12), np.mean(null <= observed + 1e-12)))
    res = within_combined(*labelled(xs, ys), "pearson", n_boot=100, n_permutations=9999)
    assert res.statistic == pytest.approx(observed, rel=1e-9)
    assert res.p_value == pytest.approx(exact, abs=0.02)  # Monte-Carlo sd ~0.005


def test_missing_values_short_models_and_rendering() -> None:
    rng = np.random.default_rng(3)
    data = {m: (rng.normal(size=20), rng.normal(size=20)) for m in ("a", "b", "c")}
    data["a"][0][:3] = np.nan
    data["c"] = (data["c"][0][:3], data["c"][1][:3])  # too short for the combined estimate
    frame = tidy("task1", data)
    out = within_between(frame, scores=["imacs_g", "imacs_r"], qualities=["masked_psnr"],
                         methods=("spearman", "pearson"), n_boot=100, n_permutations=499)
    assert set(out["x"]) == {"imacs_g"}  # imacs_r absent from the frame: skipped
    assert set(out["method"]) == {"spearman", "pearson"}
    a = out[(out.scope == "within:a") & (out.method == "spearman")].iloc[0]
    assert (a["n"], a["n_dropped"]) == (17, 3)
    comb = out[(out.scope == "within (combined)") & (out.method == "spearman")].iloc[0]
    assert comb["n"] == 37 and "left out" in comb["note"] and "c" in comb["note"]

    lines = render_within_between(out, labels={"imacs_g": "IMACS_g", "masked_psnr": "masked PSNR"})
    assert lines[0] == WITHIN_BETWEEN_NOTE
    assert "rank samples" in WITHIN_BETWEEN_NOTE and "rank models" in WITHIN_BETWEEN_NOTE
    body = "\n".join(lines)
    assert "| IMACS_g | masked PSNR | spearman | within (combined) |" in body
    assert "| between models |" in body and "too few models for a CI" in body

    with pytest.raises(ValueError, match="duplicated"):
        within_between(pd.concat([frame, frame.head(1)]), scores=["imacs_g"], qualities=["masked_psnr"])
