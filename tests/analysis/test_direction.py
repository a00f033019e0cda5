"""A lower-is-better metric is correlated negated everywhere, and every table says so."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from benchmark.analysis.confounds import confounds, render_confounds
from benchmark.analysis.format import format_ci, format_estimate, oriented_label, sign_note
from benchmark.analysis.resampling import Resampling
from benchmark.analysis.validity import orientation


def test_orientation_follows_the_registry() -> None:
    assert [orientation(m) for m in ("lpips", "fid", "kid")] == [-1, -1, -1]
    assert [orientation(m) for m in ("imacs_g", "masked_psnr", "ssim", "area_g", "unregistered")] == [1] * 5


def test_labels_and_cells() -> None:
    assert oriented_label("lpips", -1, {"lpips": "LPIPS"}) == "\u2212LPIPS"
    assert oriented_label("masked_psnr", 1, {"masked_psnr": "masked PSNR"}) == "masked PSNR"
    assert sign_note([]) == ""
    assert sign_note(["LPIPS", "FID", "LPIPS"]).startswith("\u2212LPIPS, \u2212FID: lower is better")
    assert format_ci(np.nan, np.nan) == "n/a" and format_ci(np.nan, 0.5, n=5) == "not estimable (n = 5)"
    assert format_estimate(0.25, 0.1, 0.4, 0.01, 30) == "0.250 [0.100, 0.400], p 0.010"
    assert format_estimate(1.0, np.nan, np.nan, 2 / 120, 5) == "1.000 not estimable (n = 5), p 0.017"
    assert format_estimate(np.nan, np.nan, np.nan, np.nan, 2) == "n/a"


def test_confounds_negate_a_lower_is_better_quality() -> None:
    rng = np.random.default_rng(0)
    rows = []
    for model in ("m1", "m2"):
        for i in range(15):
            area = rng.uniform(0.1, 0.5)
            score = rng.normal()
            values = {"imacs_g": score, "lpips": -score + 0.3 * rng.normal() + area, "area_g": area}
            rows += [{"task": "t", "model": model, "sample_id": f"s{i}", "metric": m, "value": v}
                     for m, v in values.items()]
    frame = pd.DataFrame(rows)
    out = confounds(frame, qualities=["lpips"], areas=["area_g"], resampling=Resampling(n_boot=100, n_permutations=499))
    plain = out[out.kind == "plain"].iloc[0]
    wide = frame.pivot(index=["model", "sample_id"], columns="metric", values="value")
    assert (plain["x_sign"], plain["y_sign"]) == (1, -1)
    assert plain["statistic"] == pytest.approx(-stats.spearmanr(wide["imacs_g"], wide["lpips"]).statistic)
    assert plain["statistic"] > 0.5
    lpips_area = out[(out.kind == "area") & (out.x == "lpips")].iloc[0]
    assert lpips_area["statistic"] == pytest.approx(-stats.spearmanr(wide["lpips"], wide["area_g"]).statistic)
    body = "\n".join(render_confounds(out, labels={"imacs_g": "IMACS_g", "lpips": "LPIPS"}))
    assert "| IMACS_g | \u2212LPIPS |" in body and "| \u2212LPIPS | " in body
    assert "\u2212LPIPS: lower is better" in body
