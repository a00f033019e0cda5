"""Trends over the nightly runs: per task, each model's IMACS_g and primary quality metric run after run.

The figure is drawn from ``history.csv`` (:mod:`benchmark.report.history`) through the figures machinery
(:class:`benchmark.report.figures_page.Figures`), stamped by a digest of the rows it shows, so it is
redrawn only when those rows change. Only runs with the task's current version and scoring settings are shown:
an IMACS under another lambda or threshold is another number.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from benchmark.registry import metric_direction, metric_label
from benchmark.report import memo
from benchmark.report.figures_page import Figures
from benchmark.report.history import CI_COLUMNS
from benchmark.store import write_atomic

TREND_COLUMNS = ["run_id", "model", "metric", "value", *CI_COLUMNS]
MAX_TICKS = 12  # run labels on the x axis; more runs label every k-th


def trend_rows(history: pd.DataFrame, task: str, task_version: int, scoring_key: str, models: list[str],
               metrics: list[str]) -> pd.DataFrame:
    """The rows a task's trend shows (columns :data:`TREND_COLUMNS`, sorted by run, model and metric): ``models``
    and ``metrics`` of ``task`` at ``task_version`` and ``scoring_key``."""
    if history.empty:
        return pd.DataFrame(columns=TREND_COLUMNS)
    h = history[(history.task == task) & (history.task_version.astype(int) == task_version)
                & (history.scoring_key.astype(str) == scoring_key) & history.model.isin(models)
                & history.metric.isin(metrics)]
    return h[TREND_COLUMNS].sort_values(["run_id", "model", "metric"]).reset_index(drop=True)


def schedule_trend(figures: Figures, rows: pd.DataFrame, task: str, metrics: list[str]) -> Path | None:
    """Schedule ``figures/<task>/trend.png`` from ``rows`` (:func:`trend_rows`) unless it was drawn from the same
    rows; its path, or None when there is no row to draw."""
    metrics = [m for m in metrics if m in set(rows.metric)]
    if not metrics:
        return None
    path = figures.fig_dir / task / "trend.png"
    # Digested at the precision history.csv keeps: rows not yet recorded stamp the figure as they will read back.
    figures.schedule("benchmark.report.trends:plot_trend", (rows, metrics, path, task), path,
                     memo.digest(rows.to_csv(index=False, float_format="%.6g"), metrics))
    return path


def plot_trend(rows: pd.DataFrame, metrics: list[str], path: Path, task: str) -> None:
    """Write :func:`trend_figure` as a PNG at ``path``."""
    from benchmark.scoring.figures import png_bytes  # heavy: matplotlib, torch

    write_atomic(path, png_bytes(trend_figure(rows, metrics, task), 100))


def trend_figure(rows: pd.DataFrame, metrics: list[str], task: str):
    """One panel per metric: per model its value (bars: 95% CI where the history has one) at each run, joined
    by lines; one run only gives points and the title says so. Returns a matplotlib Figure."""
    from matplotlib.figure import Figure

    runs = sorted(rows.run_id.unique())
    x_of = {run: i for i, run in enumerate(runs)}
    models = sorted(rows.model.unique())
    colour = {m: f"C{i % 10}" for i, m in enumerate(models)}
    # Models side by side around each run, so that their intervals do not hide each other.
    dodge = {m: (i - (len(models) - 1) / 2) * 0.4 / max(len(models), 1) for i, m in enumerate(models)}
    fig = Figure(figsize=(4.2 * len(metrics) + 1.8, 3.6), layout="constrained")
    axes = fig.subplots(1, len(metrics), squeeze=False)[0]
    for ax, metric in zip(axes, metrics):
        for model, g in rows[rows.metric == metric].groupby("model"):
            x = g.run_id.map(x_of).to_numpy(float) + dodge[model]
            y = g.value.to_numpy(float)
            low, high = (g[c].to_numpy(float) for c in CI_COLUMNS)
            err = np.where(np.isfinite(low) & np.isfinite(high), np.clip([y - low, high - y], 0, None), 0.0)
            ax.errorbar(x, y, yerr=err, color=colour[model], marker="o", ms=4, capsize=2, label=model,
                        linestyle="-" if len(runs) > 1 else "none")
        direction = metric_direction(metric)
        ax.set_ylabel(metric_label(metric) + (f" ({direction} is better)" if direction else ""))
        ticks = range(0, len(runs), max(1, len(runs) // MAX_TICKS))
        ax.set_xticks(ticks, [runs[i][:16].replace("T", "\n") for i in ticks], fontsize=7)
        ax.set_xlim(-0.5, len(runs) - 0.5)
        ax.set_xlabel("run (UTC)")
        ax.grid(alpha=0.3)
    handles = {label: h for ax in axes for h, label in zip(*ax.get_legend_handles_labels())}
    if handles:
        fig.legend(list(handles.values()), list(handles), loc="outside right upper", title="model", fontsize=7,
                   title_fontsize=8)
    notes = ["one run in history so far: points, no trend yet" if len(runs) == 1 else f"{len(runs)} runs"]
    notes += ["bars: 95% CI"] if rows[CI_COLUMNS].notna().all(axis=1).any() else []
    fig.suptitle(f"{task}: model means over the nightly runs ({'; '.join(notes)})", fontsize=10)
    return fig
