from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from benchmark.analysis.confounds import confounds, partial_correlation, render_confounds
from benchmark.analysis.resampling import Resampling


def first_order_partial(r_xy: float, r_xz: float, r_yz: float) -> float:
    """Textbook partial correlation of x and y given one covariate z."""
    return (r_xy - r_xz * r_yz) / math.sqrt((1 - r_xz**2) * (1 - r_yz**2))


def test_partial_matches_closed_form_for_one_covariate() -> None:
    rng = np.random.default_rng(0)
    z = rng.uniform(size=60)
    x = z + 0.5 * rng.normal(size=60)
    y = np.exp(z) + 0.3 * x + 0.5 * rng.normal(size=60)
    for method, f in (("pearson", stats.pearsonr), ("spearman", stats.spearmanr)):
        res = partial_correlation(x, y, z, method=method, resampling=Resampling(n_boot=200, n_permutations=999))
        ref = first_order_partial(f(x, y).statistic, f(x, z).statistic, f(y, z).statistic)
        assert res.statistic == pytest.approx(ref, rel=1e-10)
        assert res.ci_low < res.statistic < res.ci_high
    plain = partial_correlation(x, y, None, method="spearman", resampling=Resampling(n_boot=50, n_permutations=99))
    assert plain.statistic == pytest.approx(stats.spearmanr(x, y).statistic, rel=1e-12)


def test_group_dummies_equal_per_group_centring() -> None:
    rng = np.random.default_rng(1)
    groups = np.repeat(["a", "b", "c"], 15)
    offset = np.repeat([0.0, 3.0, -2.0], 15)
    x = offset + rng.normal(size=45)
    y = offset + 0.4 * x + rng.normal(size=45)
    res = partial_correlation(x, y, None, groups, method="pearson",
                              resampling=Resampling(n_boot=100, n_permutations=999))
    frame = pd.DataFrame({"g": groups, "x": x, "y": y})
    centred = frame[["x", "y"]] - frame.groupby("g")[["x", "y"]].transform("mean")
    assert res.statistic == pytest.approx(stats.pearsonr(centred["x"], centred["y"]).statistic, rel=1e-10)
    assert res.statistic < stats.pearsonr(x, y).statistic  # the offsets inflate the plain one


def test_area_confound_vanishes_when_partialled_out() -> None:
    rng = np.random.default_rng(2)
    n = 150
    area = rng.uniform(0.05, 0.6, size=n)
    score = -3.0 * area + 0.15 * rng.normal(size=n)  # f(area) + noise
    quality = np.sqrt(0.7 - area) + 0.05 * rng.normal(size=n)  # g(area) + independent noise
    plain = stats.spearmanr(score, quality).statistic
    res = partial_correlation(score, quality, area, method="spearman",
                              resampling=Resampling(n_boot=300, n_permutations=999))
    assert plain > 0.6
    assert abs(res.statistic) < 0.15 and res.ci_low < 0 < res.ci_high and res.p_value > 0.05


def test_small_n_exact_and_undefined_cases() -> None:
    x = np.array([1.0, 3.0, 2.0, 5.0, 4.0, 7.0, 6.0])
    z = np.array([0.1, 0.4, 0.3, 0.2, 0.6, 0.5, 0.7])
    res = partial_correlation(x, x**2 + z, z, method="pearson", resampling=Resampling(n_boot=50))
    assert res.p_method == "exact (5040 permutations) of residuals"
    explained = partial_correlation(x, np.arange(7.0), 2 * x, method="pearson", resampling=Resampling(n_boot=50))
    assert math.isnan(explained.statistic) and "fully explained" in explained.note
    short = partial_correlation(x[:3], x[:3], z[:3], method="spearman", resampling=Resampling(n_boot=50))
    assert math.isnan(short.statistic) and "too few" in short.note
    with pytest.raises(ValueError, match="rows"):
        partial_correlation(x, x, z[:3])


def test_confounds_frame_and_renderer() -> None:
    rng = np.random.default_rng(3)
    rows = []
    for k, model in enumerate(["m1", "m2", "m3"]):
        for i in range(20):
            area_g, area_r = rng.uniform(0.1, 0.5), rng.uniform(0.2, 0.8)
            values = {"imacs_g": k - 2 * area_g + 0.2 * rng.normal(), "masked_psnr": 12 + k + rng.normal(),
                      "area_g": area_g, "area_r": area_r}
            rows += [{"task": "t", "model": model, "sample_id": f"s{i}", "metric": m, "value": v}
                     for m, v in values.items()]
    frame = pd.DataFrame(rows)
    out = confounds(frame, resampling=Resampling(n_boot=100, n_permutations=499))
    assert set(out["kind"]) == {"area", "plain", "partial"}
    area = out[out.kind == "area"]
    assert sorted(zip(area["x"], area["y"])) == [("imacs_g", "area_g"), ("imacs_g", "area_r"),
                                                 ("masked_psnr", "area_g"), ("masked_psnr", "area_r")]
    assert area.set_index(["x", "y"]).loc[("imacs_g", "area_g"), "statistic"] < -0.3
    assert list(out[out.kind == "partial"]["controls"]) == ["areas", "areas + model"]
    lines = render_confounds(out, labels={"imacs_g": "IMACS_g", "masked_psnr": "masked PSNR"})
    body = "\n".join(lines)
    assert "| metric | area_g | area_r | n |" in body
    assert "| x | y | plain | partial: areas | partial: areas + model | n |" in body
    assert "| IMACS_g | masked PSNR |" in body
