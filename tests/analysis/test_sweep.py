from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from benchmark.analysis.sweep import best_cell, correlation_sweep, plot_sweep_heatmap

LAMBDAS = [1.0, 2.0, 3.0, 4.0]
THRESHOLDS = [0.2, 0.4, 0.6]


def make_problem() -> tuple:
    rng = np.random.default_rng(0)
    quality = rng.normal(size=40)
    noise = rng.normal(size=40)

    def score(lam: float, thr: float) -> np.ndarray:
        # Exactly monotone in quality at the default cell, noisier further away.
        return quality + (abs(lam - 3.0) + 5 * abs(thr - 0.4)) * noise

    return score, quality


def test_sweep_frame() -> None:
    score, quality = make_problem()
    frame = correlation_sweep(score, quality, LAMBDAS, THRESHOLDS, n_boot=100)
    assert len(frame) == 12
    assert list(frame.columns[:8]) == ["lambda", "threshold", "n", "n_dropped", "spearman", "p", "ci_low", "ci_high"]
    assert {"pearson", "pearson_p", "pearson_ci_low", "pearson_ci_high"} <= set(frame.columns)
    cell = frame[(frame["lambda"] == 1.0) & (frame["threshold"] == 0.6)].iloc[0]
    ref = stats.spearmanr(score(1.0, 0.6), quality)
    assert cell["spearman"] == pytest.approx(ref.statistic) and cell["p"] == pytest.approx(ref.pvalue)
    assert cell["pearson"] == pytest.approx(stats.pearsonr(score(1.0, 0.6), quality).statistic)
    top = best_cell(frame)
    assert (top["lambda"], top["threshold"], top["spearman"]) == (3.0, 0.4, pytest.approx(1.0))
    assert (frame["ci_low"] <= frame["spearman"] + 1e-12).all()
    assert (frame["spearman"] <= frame["ci_high"] + 1e-12).all()


def test_sweep_rejects_misaligned_scores() -> None:
    with pytest.raises(ValueError, match="shape"):
        correlation_sweep(lambda lam, thr: np.zeros(3), np.zeros(4), [1.0], [0.4])


def test_heatmap_png(tmp_path: Path) -> None:
    score, quality = make_problem()
    frame = correlation_sweep(score, quality, LAMBDAS, THRESHOLDS, n_boot=50)
    out = plot_sweep_heatmap(frame, tmp_path / "plots" / "sweep.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="not on the grid"):
        plot_sweep_heatmap(frame, tmp_path / "bad.png", default=(5.0, 0.4))
