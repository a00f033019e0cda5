"""Spearman / Pearson correlation with p-values and paired percentile-bootstrap CIs.

Point estimates and p-values come from ``scipy.stats`` (``spearmanr``,
``pearsonr``; two-sided). Confidence intervals resample (x, y) *pairs* with a
seeded ``numpy.random.Generator`` and take equal-tailed percentiles of the
replicate statistics; replicates that are undefined because a resample has a
constant coordinate are ignored (their number is reported). Pairs with a NaN
in either coordinate are dropped before anything else, and counted.

Frame helpers take the benchmark's tidy layout: model level (one row per
model and metric: columns ``model, metric, value``) and sample level
(``task, model, sample_id, metric, value``).
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from scipy import stats

from benchmark.analysis.bootstrap import bootstrap_indices, drop_nan, percentile_interval

Method = Literal["spearman", "pearson"]
METHODS: tuple[Method, ...] = ("spearman", "pearson")
MIN_PAIRS = 3

__all__ = [
    "METHODS",
    "MIN_PAIRS",
    "CorrelationResult",
    "correlation",
    "spearman",
    "pearson",
    "model_level_correlation",
    "sample_level_correlations",
]


@dataclass(frozen=True)
class CorrelationResult:
    """A correlation coefficient with its p-value and bootstrap CI.

    Attributes:
        method: ``"spearman"`` or ``"pearson"``.
        statistic: coefficient in [-1, 1]; NaN if either input is constant.
        p_value: two-sided p-value from scipy; NaN if either input is constant.
        ci_low, ci_high: percentile-bootstrap interval bounds.
        n: number of complete pairs used.
        n_dropped: number of pairs dropped for containing NaN.
        n_boot: number of bootstrap resamples drawn.
        n_boot_valid: resamples whose statistic was defined (non-constant).
        confidence: interval coverage, e.g. 0.95.
        constant_input: True when x or y is constant (nothing is defined).
    """

    method: Method
    statistic: float
    p_value: float
    ci_low: float
    ci_high: float
    n: int
    n_dropped: int
    n_boot: int
    n_boot_valid: int
    confidence: float
    constant_input: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _rowwise_pearson(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Pearson r of each row pair of (k, n) arrays; NaN where a row is constant."""
    xc = x - x.mean(axis=1, keepdims=True)
    yc = y - y.mean(axis=1, keepdims=True)
    denom = np.sqrt((xc * xc).sum(axis=1) * (yc * yc).sum(axis=1))
    num = (xc * yc).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.where(denom > 0, num / np.where(denom > 0, denom, 1.0), np.nan)
    return np.clip(r, -1.0, 1.0)


def _rowwise_statistic(method: Method, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    if method == "spearman":
        # Average ranks per row, as spearmanr does; Spearman = Pearson of ranks.
        return _rowwise_pearson(stats.rankdata(x, axis=1), stats.rankdata(y, axis=1))
    return _rowwise_pearson(x, y)


def correlation(
    x: ArrayLike,
    y: ArrayLike,
    method: Method = "spearman",
    n_boot: int = 2000,
    confidence: float = 0.95,
    seed: int | np.random.Generator = 0,
) -> CorrelationResult:
    """Correlation of paired samples with a p-value and a paired percentile-bootstrap CI.

    Args:
        x, y: 1-D arrays of equal length; pairs with NaN in either are dropped and counted.
        method: ``"spearman"`` (rank) or ``"pearson"`` (linear).
        n_boot: bootstrap resamples of the pairs.
        confidence: interval coverage in (0, 1).
        seed: seed or Generator; the same seed gives the same resamples for
            both methods, so their intervals are paired.

    Raises:
        ValueError: unknown method or fewer than :data:`MIN_PAIRS` complete pairs.
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; expected one of {METHODS}")
    (xs, ys), n_dropped = drop_nan(x, y)
    n = int(xs.size)
    if n < MIN_PAIRS:
        raise ValueError(
            f"{method} correlation needs at least {MIN_PAIRS} complete pairs, got {n} ({n_dropped} dropped)"
        )
    constant = bool(np.ptp(xs) == 0 or np.ptp(ys) == 0)
    if constant:
        nan = float("nan")
        return CorrelationResult(method, nan, nan, nan, nan, n, n_dropped, n_boot, 0, confidence, True)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", stats.ConstantInputWarning)
        res = stats.spearmanr(xs, ys) if method == "spearman" else stats.pearsonr(xs, ys)
    rng = np.random.default_rng(seed)
    idx = bootstrap_indices(n, n_boot, rng)
    replicates = _rowwise_statistic(method, xs[idx], ys[idx])
    low, high = percentile_interval(replicates, confidence)
    return CorrelationResult(
        method=method,
        statistic=float(res.statistic),
        p_value=float(res.pvalue),
        ci_low=low,
        ci_high=high,
        n=n,
        n_dropped=n_dropped,
        n_boot=n_boot,
        n_boot_valid=int((~np.isnan(replicates)).sum()),
        confidence=confidence,
        constant_input=False,
    )


def spearman(x: ArrayLike, y: ArrayLike, **kwargs: Any) -> CorrelationResult:
    """:func:`correlation` with ``method="spearman"``."""
    return correlation(x, y, method="spearman", **kwargs)


def pearson(x: ArrayLike, y: ArrayLike, **kwargs: Any) -> CorrelationResult:
    """:func:`correlation` with ``method="pearson"``."""
    return correlation(x, y, method="pearson", **kwargs)


def _require_columns(frame: pd.DataFrame, columns: list[str]) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"frame lacks columns {missing}; has {list(frame.columns)}")


def _paired_metrics(frame: pd.DataFrame, index: list[str], x_metric: str, y_metric: str) -> pd.DataFrame:
    """Wide frame (one row per ``index`` combination) with columns x_metric, y_metric."""
    _require_columns(frame, [*index, "metric", "value"])
    if x_metric == y_metric:
        raise ValueError(f"x_metric and y_metric are both {x_metric!r}")
    sub = frame[frame["metric"].isin([x_metric, y_metric])]
    for metric in (x_metric, y_metric):
        if not (sub["metric"] == metric).any():
            raise ValueError(f"metric {metric!r} not in frame; available: {sorted(frame['metric'].unique())}")
    dup = sub.duplicated([*index, "metric"], keep=False)
    if dup.any():
        example = sub.loc[dup, [*index, "metric"]].head(3).to_dict("records")
        raise ValueError(
            f"{int(dup.sum())} duplicated rows per ({', '.join(index)}, metric); aggregate first, e.g. {example}"
        )
    wide = sub.pivot(index=index, columns="metric", values="value")
    # Pairs with one metric missing become NaN here and are dropped/counted by correlation().
    return wide.reindex(columns=[x_metric, y_metric]).astype(np.float64)


def model_level_correlation(
    frame: pd.DataFrame,
    x_metric: str,
    y_metric: str,
    method: Method = "spearman",
    **kwargs: Any,
) -> CorrelationResult:
    """Correlation across models, one point per model.

    Args:
        frame: aggregated tidy frame with columns ``model, metric, value``
            (exactly one row per model and metric).
        x_metric, y_metric: metric names to correlate.
        method, **kwargs: see :func:`correlation`.
    """
    wide = _paired_metrics(frame, ["model"], x_metric, y_metric)
    return correlation(wide[x_metric].to_numpy(), wide[y_metric].to_numpy(), method=method, **kwargs)


def sample_level_correlations(
    frame: pd.DataFrame,
    x_metric: str,
    y_metric: str,
    method: Method = "spearman",
    **kwargs: Any,
) -> pd.DataFrame:
    """Per-sample correlation, pooled over all models and per model.

    Args:
        frame: tidy frame with columns ``task, model, sample_id, metric, value``
            (one row per task, model, sample and metric).
        x_metric, y_metric: metric names to correlate.
        method, **kwargs: see :func:`correlation`.

    Returns:
        One row for ``scope="pooled"`` (``model`` None) followed by one row per
        model (``scope="model"``), with the :class:`CorrelationResult` fields as columns.
    """
    wide = _paired_metrics(frame, ["task", "model", "sample_id"], x_metric, y_metric)
    rows: list[dict[str, Any]] = []
    pooled = correlation(wide[x_metric].to_numpy(), wide[y_metric].to_numpy(), method=method, **kwargs)
    rows.append({"scope": "pooled", "model": None, **pooled.to_dict()})
    for model, group in wide.groupby(level="model", sort=True):
        try:
            res = correlation(group[x_metric].to_numpy(), group[y_metric].to_numpy(), method=method, **kwargs)
        except ValueError as err:
            raise ValueError(f"model {model!r}: {err}") from err
        rows.append({"scope": "model", "model": model, **res.to_dict()})
    return pd.DataFrame(rows)
