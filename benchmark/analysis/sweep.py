"""Sensitivity of a score-quality correlation to two hyper-parameters (lambda x threshold).

:func:`correlation_sweep` evaluates a per-sample score at every grid point
and correlates it with a fixed per-sample quality array (Spearman and
Pearson, both with bootstrap CIs drawn from the same resamples);
:func:`plot_sweep_heatmap` renders one column of the result as a heat map
with the best cell and the default cell (lambda = 3, threshold = 0.4) marked.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from benchmark.analysis.correlation import correlation

DEFAULT_CELL: tuple[float, float] = (3.0, 0.4)
Best = Literal["max", "min", "abs"]

__all__ = ["DEFAULT_CELL", "correlation_sweep", "best_cell", "plot_sweep_heatmap"]


def correlation_sweep(
    score: Callable[[float, float], ArrayLike],
    quality: ArrayLike,
    lambdas: Sequence[float],
    thresholds: Sequence[float],
    n_boot: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> pd.DataFrame:
    """Correlation between ``score(lambda_, threshold)`` and ``quality`` at every grid point.

    Args:
        score: ``score(lambda_, threshold) -> (N,)`` per-sample scores.
        quality: (N,) per-sample quality, aligned with the scores.
        lambdas, thresholds: grid values (each non-empty, no duplicates).
        n_boot, confidence: bootstrap settings (see :func:`benchmark.analysis.correlation.correlation`).
        seed: resampling seed, the same at every grid point so that cells are
            compared on identical resamples.

    Returns:
        Tidy frame, one row per (lambda, threshold) in grid order, with columns
        ``lambda, threshold, n, n_dropped, spearman, p, ci_low, ci_high,
        pearson, pearson_p, pearson_ci_low, pearson_ci_high, constant_input``.
        NaN pairs are dropped per cell and counted in ``n_dropped``.
    """
    q = np.asarray(quality, dtype=np.float64)
    if q.ndim != 1:
        raise ValueError(f"quality must be 1-D, got shape {q.shape}")
    for name, grid in (("lambdas", lambdas), ("thresholds", thresholds)):
        if len(grid) == 0 or len(set(grid)) != len(grid):
            raise ValueError(f"{name} must be non-empty without duplicates, got {list(grid)}")
    rows: list[dict[str, Any]] = []
    for lam in lambdas:
        for thr in thresholds:
            s = np.asarray(score(float(lam), float(thr)), dtype=np.float64)
            if s.shape != q.shape:
                raise ValueError(f"score({lam}, {thr}) returned shape {s.shape}; quality has shape {q.shape}")
            sp = correlation(s, q, "spearman", n_boot=n_boot, confidence=confidence, seed=seed)
            pe = correlation(s, q, "pearson", n_boot=n_boot, confidence=confidence, seed=seed)
            rows.append(
                {
                    "lambda": float(lam),
                    "threshold": float(thr),
                    "n": sp.n,
                    "n_dropped": sp.n_dropped,
                    "spearman": sp.statistic,
                    "p": sp.p_value,
                    "ci_low": sp.ci_low,
                    "ci_high": sp.ci_high,
                    "pearson": pe.statistic,
                    "pearson_p": pe.p_value,
                    "pearson_ci_low": pe.ci_low,
                    "pearson_ci_high": pe.ci_high,
                    "constant_input": sp.constant_input,
                }
            )
    return pd.DataFrame(rows)


def best_cell(frame: pd.DataFrame, value: str = "spearman", best: Best = "max") -> pd.Series:
    """Row of the best grid cell by ``value``: largest (``"max"``), smallest (``"min"``,
    e.g. when quality is lower-is-better) or largest magnitude (``"abs"``). NaN cells never win."""
    if value not in frame.columns:
        raise ValueError(f"column {value!r} not in sweep frame; has {list(frame.columns)}")
    col = frame[value].astype(np.float64)
    if col.isna().all():
        raise ValueError(f"every cell of {value!r} is NaN")
    if best == "max":
        idx = col.idxmax()
    elif best == "min":
        idx = col.idxmin()
    elif best == "abs":
        idx = col.abs().idxmax()
    else:
        raise ValueError(f"best must be 'max', 'min' or 'abs', got {best!r}")
    return frame.loc[idx]


def _grid_index(values: np.ndarray, target: float, name: str) -> int:
    hits = np.flatnonzero(np.isclose(values, target))
    if hits.size == 0:
        raise ValueError(f"default {name}={target} is not on the grid {values.tolist()}")
    return int(hits[0])


def plot_sweep_heatmap(
    frame: pd.DataFrame,
    path: str | os.PathLike[str],
    value: str = "spearman",
    best: Best = "max",
    default: tuple[float, float] | None = DEFAULT_CELL,
    title: str | None = None,
) -> Path:
    """Save a heat map of ``frame[value]`` over (threshold, lambda) to a PNG.

    Args:
        frame: output of :func:`correlation_sweep`.
        path: destination ``.png``; parent directories are created.
        value: column to plot (e.g. ``"spearman"``, ``"pearson"``).
        best: how the best cell is chosen (see :func:`best_cell`); outlined in solid black.
        default: (lambda, threshold) of the default cell, outlined dashed; it
            must lie on the grid. None skips it.
        title: figure title; defaults to ``value``.

    Returns:
        The path written.
    """
    # A bare Figure renders through the Agg canvas without touching pyplot's
    # global backend or figure registry (safe headless and inside notebooks).
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    grid = frame.pivot(index="lambda", columns="threshold", values=value).sort_index().sort_index(axis=1)
    lam_values = grid.index.to_numpy(dtype=np.float64)
    thr_values = grid.columns.to_numpy(dtype=np.float64)
    data = grid.to_numpy(dtype=np.float64)

    fig = Figure(figsize=(1.1 * len(thr_values) + 2.5, 0.8 * len(lam_values) + 1.8))
    ax = fig.subplots()
    finite = data[np.isfinite(data)]
    bound = float(np.max(np.abs(finite))) if finite.size else 1.0
    image = ax.imshow(data, cmap="RdBu_r", vmin=-bound, vmax=bound, origin="lower", aspect="auto")
    fig.colorbar(image, ax=ax, label=value)
    ax.set_xticks(range(len(thr_values)), [f"{t:g}" for t in thr_values])
    ax.set_yticks(range(len(lam_values)), [f"{lam:g}" for lam in lam_values])
    ax.set_xlabel("threshold")
    ax.set_ylabel("lambda")
    for i in range(data.shape[0]):
        for j in range(data.shape[1]):
            text = "nan" if np.isnan(data[i, j]) else f"{data[i, j]:.2f}"
            ax.text(j, i, text, ha="center", va="center", fontsize=8)

    top = best_cell(frame, value, best)
    bi = _grid_index(lam_values, float(top["lambda"]), "lambda")
    bj = _grid_index(thr_values, float(top["threshold"]), "threshold")
    ax.add_patch(Rectangle((bj - 0.5, bi - 0.5), 1, 1, fill=False, edgecolor="black", linewidth=2.5, label="best"))
    if default is not None:
        di = _grid_index(lam_values, default[0], "lambda")
        dj = _grid_index(thr_values, default[1], "threshold")
        ax.add_patch(
            Rectangle(
                (dj - 0.5, di - 0.5), 1, 1, fill=False, edgecolor="dimgray", linewidth=2.0, linestyle="--",
                label=f"default (lambda={default[0]:g}, threshold={default[1]:g})",
            )
        )
    ax.legend(loc="upper left", bbox_to_anchor=(0.0, -0.12), fontsize=8, frameon=False)
    ax.set_title(title or value)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120, bbox_inches="tight")
    return out
