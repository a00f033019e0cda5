from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from benchmark.analysis.correlation import correlation
from benchmark.analysis.resampling import Resampling
from benchmark.analysis.sweep import (
    SweepData,
    SweepGrid,
    correlation_sweep,
    plot_sweep_heatmap,
    render_sweep,
    split_halves,
)
from benchmark.analysis.validity import orientation
from benchmark.config import ConfigError, RunConfig

LAMBDAS = [0.0, 1.0, 3.0]
THRESHOLDS = [0.2, 0.4, 0.6]


def test_split_is_seeded_stratified_and_keeps_units_together() -> None:
    groups = np.array(["a"] * 11 + ["b"] * 7 + ["c"] * 10)
    sel = split_halves(groups, seed=3)
    assert np.array_equal(sel, split_halves(groups, seed=3))
    assert not np.array_equal(sel, split_halves(groups, seed=4))
    for g, n in (("a", 11), ("b", 7), ("c", 10)):
        assert sel[groups == g].sum() in (n // 2, n // 2 + 1)
    assert abs(int(sel.sum()) - int((~sel).sum())) <= 1
    units = np.tile(np.arange(9), 3)
    by_unit = split_halves(np.repeat(["a", "b", "c"], 9), seed=0, units=units)
    for u in range(9):
        assert len(set(by_unit[units == u])) == 1  # one input never straddles the halves
    assert by_unit.sum() == 3 * 4


def make_disagreeing_halves(seed: int = 0) -> tuple:
    """Threshold 0.2 tracks quality on the selection half only; threshold 0.6 on the held-out half only."""
    rng = np.random.default_rng(seed)
    s = 80
    groups = np.repeat(["m1", "m2"], s // 2)
    sel = split_halves(groups, seed=seed)
    quality = rng.normal(size=s)
    noise = rng.normal(size=(s, 3))
    a = noise.copy()
    a[sel, 0] = quality[sel] + 0.1 * noise[sel, 0]
    a[~sel, 2] = quality[~sel] + 0.1 * noise[~sel, 2]
    b = np.zeros((s, 3))
    return a, b, quality, groups, sel


def test_best_cell_is_chosen_on_the_selection_half_and_evaluated_on_the_other() -> None:
    a, b, quality, groups, sel = make_disagreeing_halves()
    frame = correlation_sweep(SweepData(a, b, quality, groups), SweepGrid(LAMBDAS, THRESHOLDS, default=(3.0, 0.4)),
                              resampling=Resampling(n_boot=200, n_permutations=999))
    assert len(frame) == 9 and frame["chosen"].sum() == 1 and frame["default"].sum() == 1
    chosen = frame[frame["chosen"]].iloc[0]
    assert chosen["threshold"] == 0.2 and chosen["lambda"] == 0.0  # first in grid order among equal cells
    assert chosen["selection"] == pytest.approx(stats.spearmanr(a[sel, 0], quality[sel]).statistic)
    assert chosen["selection"] > 0.9
    # Held-out: the chosen cell is noise there, although threshold 0.6 would look excellent.
    ref = correlation(a[~sel, 0], quality[~sel], resampling=Resampling(n_boot=200, n_permutations=999))
    assert chosen["held_out"] == pytest.approx(ref.statistic) and abs(chosen["held_out"]) < 0.4
    assert (chosen["held_out_ci_low"], chosen["held_out_p"]) == pytest.approx((ref.ci_low, ref.p_value))
    assert (chosen["n_selection"], chosen["n_held_out"]) == (sel.sum(), (~sel).sum())
    assert stats.spearmanr(a[~sel, 2], quality[~sel]).statistic > 0.9
    others = frame[~frame["chosen"] & ~frame["default"]]
    assert others["held_out"].isna().all()  # held-out values only where they were asked for
    default = frame[frame["default"]].iloc[0]
    assert (default["lambda"], default["threshold"]) == (3.0, 0.4) and np.isfinite(default["held_out"])


def test_heatmap_and_markdown(tmp_path: Path) -> None:
    a, b, quality, groups, sel = make_disagreeing_halves()
    b = np.abs(np.random.default_rng(1).normal(size=b.shape))
    frame = correlation_sweep(SweepData(a, b, quality, groups), SweepGrid(LAMBDAS, THRESHOLDS),
                              resampling=Resampling(n_boot=100, n_permutations=499))
    out = plot_sweep_heatmap(frame, tmp_path / "plots" / "sweep.png", title="t: IMACS_g vs masked PSNR")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = render_sweep(frame, "IMACS_g vs masked PSNR")[0]
    chosen = frame[frame["chosen"]].iloc[0]
    assert "9 (lambda, threshold) cells" in text and "seed 0" in text
    assert f"selection half (n = {sel.sum()})" in text and f"n = {(~sel).sum()}" in text
    assert f"{chosen['held_out']:.2f}" in text and "The default (lambda = 3, threshold = 0.4)" in text


def test_validation() -> None:
    a, b, quality, groups, _ = make_disagreeing_halves()
    with pytest.raises(ValueError, match="shape"):
        correlation_sweep(SweepData(a[:, :2], b, quality, groups), SweepGrid(LAMBDAS, THRESHOLDS))
    with pytest.raises(ValueError, match="not on the grid"):
        correlation_sweep(SweepData(a, b, quality, groups), SweepGrid(LAMBDAS, THRESHOLDS, default=(5.0, 0.4)))
    with pytest.raises(ValueError, match="duplicates"):
        correlation_sweep(SweepData(a, b, quality, groups), SweepGrid([1.0, 1.0, 2.0], THRESHOLDS))
    with pytest.raises(ValueError, match="sign must be 1 or -1"):
        correlation_sweep(SweepData(a, b, quality, groups, sign=0), SweepGrid(LAMBDAS, THRESHOLDS))
    nothing = correlation_sweep(SweepData(np.full_like(a, np.nan), b, quality, groups),
                                SweepGrid(LAMBDAS, THRESHOLDS, default=None))
    assert not nothing["chosen"].any() and "no (lambda, threshold) cell" in render_sweep(nothing)[0]



def test_with_lpips_as_quality_the_best_cell_tracks_lower_lpips() -> None:
    rng = np.random.default_rng(2)
    s = 80
    groups = np.repeat(["m1", "m2"], s // 2)
    lpips = rng.random(s)
    a = np.column_stack([lpips + 0.05 * rng.normal(size=s),  # threshold 0.2: high score = HIGH (worse) LPIPS
                         rng.normal(size=s),
                         -lpips + 0.1 * rng.normal(size=s)])  # threshold 0.6: high score = low (better) LPIPS
    b = np.zeros((s, 3))
    sign = orientation("lpips")
    assert sign == -1
    frame = correlation_sweep(SweepData(a, b, lpips, groups, sign=sign), SweepGrid(LAMBDAS, THRESHOLDS),
                              resampling=Resampling(n_boot=100, n_permutations=499))
    sel = split_halves(groups, seed=0)
    chosen = frame[frame["chosen"]].iloc[0]
    assert chosen["threshold"] == 0.6 and (frame["sign"] == -1).all()
    assert chosen["selection"] == pytest.approx(stats.spearmanr(a[sel, 2], -lpips[sel]).statistic)
    assert chosen["selection"] > 0.8
    assert chosen["held_out"] > 0.8 and chosen["held_out_ci_low"] > 0
    assert "lower-is-better and enters negated" in render_sweep(frame, "IMACS_g vs \u2212LPIPS")[0]
    # Read as if higher were better, the same data would pick the cell that tracks the WORST LPIPS.
    naive = correlation_sweep(SweepData(a, b, lpips, groups), SweepGrid(LAMBDAS, THRESHOLDS),
                              resampling=Resampling(n_boot=100, n_permutations=499))
    assert naive[naive["chosen"]].iloc[0]["threshold"] == 0.2


def test_pearson_sweep_and_the_sweep_method_setting() -> None:
    a, b, quality, groups, sel = make_disagreeing_halves()
    frame = correlation_sweep(SweepData(a, b, quality, groups), SweepGrid(LAMBDAS, THRESHOLDS), "pearson",
                              Resampling(n_boot=100, n_permutations=499))
    chosen = frame[frame["chosen"]].iloc[0]
    assert (frame["method"] == "pearson").all() and chosen["threshold"] == 0.2
    assert chosen["selection"] == pytest.approx(stats.pearsonr(a[sel, 0], quality[sel]).statistic, rel=1e-12)
    base = {"name": "x", "tasks": [{"task": "tasks/object_inpainting",
                                    "models": [{"name": "m", "adapter": "reference_unet", "path": "nowhere"}]}]}
    assert RunConfig.from_dict(base).scoring.sweep_method == "spearman"
    assert RunConfig.from_dict({**base, "scoring": {"sweep_method": "pearson"}}).scoring.sweep_method == "pearson"
    with pytest.raises(ConfigError, match=r"scoring.sweep_method: expected one of \['spearman', 'pearson'\], "
                                          r"got 'pearsn'; did you mean 'pearson'\?"):
        RunConfig.from_dict({**base, "scoring": {"sweep_method": "pearsn"}})
