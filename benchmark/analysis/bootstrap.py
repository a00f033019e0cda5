"""Bootstrap confidence intervals with seeded resampling.

Two tools live here:

* :func:`bootstrap_ci`: a BCa interval for any vectorised statistic, drawn by
  ``scipy.stats.bootstrap`` with a fixed seed, that falls back to the
  percentile interval of the same resamples (and says so) when BCa is not
  defined because some resamples have an undefined statistic (e.g. a constant
  coordinate), or when the data hold more than :data:`BCA_MAX_N` values: BCa's
  acceleration is a jackknife, n evaluations of the statistic on n - 1 values,
  so its cost grows as n^2 (minutes and gigabytes for one interval of 30,000
  pairs), while the two intervals agree ever more closely as n grows. A
  degenerate bootstrap distribution (every defined resample gives the same
  value, e.g. a perfect rank order) has no interval at all: NaN bounds, "not
  estimable" with the value in ``note``, never ``[1, 1]``;
* :func:`bootstrap_mean`: the mean of one sample with a percentile interval
  (the leaderboard cells); Student's t interval above
  :data:`~benchmark.analysis.asymptotic.LARGE_N` values.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats

from benchmark.analysis.asymptotic import LARGE_N, t_interval
from benchmark.analysis.resampling import Resampling

__all__ = ["BCA_MAX_N", "Interval", "MeanCI", "bootstrap_ci", "bootstrap_mean", "drop_nan", "percentile_interval",
           "summarise_means"]

BCA_MAX_N = 1000  # values (all samples together) up to which bootstrap_ci forms BCa; above, the percentile interval
RESAMPLE_ENTRIES = 1 << 22  # above BCA_MAX_N: resampled values evaluated at once (bounds memory, 32 MiB each)


@dataclass(frozen=True)
class Interval:
    """A bootstrap confidence interval.

    Attributes:
        low, high: bounds; NaN when no interval could be formed.
        method: ``"BCa"``, ``"percentile"`` (BCa was not defined, or more than :data:`BCA_MAX_N` values) or
            ``"none"`` (no interval).
        n_resamples: resamples drawn.
        n_undefined: resamples whose statistic was undefined (NaN), left out of a percentile interval.
        note: why the interval is not BCa or is missing; empty otherwise.
    """

    low: float
    high: float
    method: str
    n_resamples: int
    n_undefined: int
    note: str = ""


def bootstrap_ci(
    data: Sequence[np.ndarray],
    statistic: Callable[..., np.ndarray],
    *,
    paired: bool,
    n_resamples: int = Resampling.n_boot,
    confidence: float = Resampling.confidence,
    seed: int = Resampling.seed,
    batch: int | None = None,
) -> Interval:
    """BCa bootstrap interval of ``statistic(*data)``: percentile when BCa is not defined, NaN when degenerate.

    Args:
        data: the samples, 1-D arrays. With ``paired=True`` they have equal
            length and are resampled together (rows); with ``paired=False`` each
            is resampled on its own (a stratified bootstrap when each sample is
            one stratum).
        statistic: vectorised ``statistic(*samples, axis=-1)`` returning NaN
            where it is undefined for a resample.
        paired: see ``data``.
        n_resamples: bootstrap resamples.
        confidence: interval coverage in (0, 1).
        seed: seed of the resampling generator (same seed, same interval).
        batch: resamples evaluated at once (bounds memory for heavy statistics); above :data:`BCA_MAX_N`
            values at most ``RESAMPLE_ENTRIES // n`` whatever is given.
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    n = sum(len(d) for d in data)
    large = n > BCA_MAX_N
    if large:
        batch = max(1, min(batch or n_resamples, RESAMPLE_ENTRIES // n))
    with warnings.catch_warnings():
        # BCa's failures are detected from the result below and reported in ``note``.
        warnings.simplefilter("ignore")
        with np.errstate(all="ignore"):
            res = stats.bootstrap(
                tuple(data), statistic, paired=paired, vectorized=True, n_resamples=n_resamples,
                confidence_level=confidence, method="percentile" if large else "BCa", batch=batch,
                rng=np.random.default_rng(seed),
            )
    dist = np.asarray(res.bootstrap_distribution, dtype=np.float64)
    finite = dist[np.isfinite(dist)]
    n_undefined = int(dist.size - finite.size)
    if finite.size == 0:
        return Interval(np.nan, np.nan, "none", n_resamples, n_undefined,
                        f"the statistic is undefined in all {n_resamples} bootstrap resamples")
    # Round-off alone separates the resamples of a perfect order (1 - 2e-16 against 1).
    if np.ptp(finite) <= 1e-12 * max(1.0, float(np.max(np.abs(finite)))):
        undefined = f", {n_undefined} undefined" if n_undefined else ""
        return Interval(np.nan, np.nan, "none", n_resamples, n_undefined,
                        f"CI not estimable: every bootstrap resample gives {finite[0]:.3g}{undefined}")
    low, high = float(res.confidence_interval.low), float(res.confidence_interval.high)
    if not large and n_undefined == 0 and np.isfinite(low) and np.isfinite(high):
        return Interval(low, high, "BCa", n_resamples, 0)
    if large and n_undefined == 0:
        return Interval(*percentile_interval(finite, confidence), "percentile", n_resamples, 0,
                        f"percentile interval: n = {n} > {BCA_MAX_N}, where BCa's jackknife costs n^2")
    why = (f"{n_undefined} of {n_resamples} resamples undefined, left out" if n_undefined
           else "BCa acceleration undefined")
    return Interval(*percentile_interval(finite, confidence), "percentile", n_resamples, n_undefined,
                    f"BCa not defined ({why}); percentile interval")


def percentile_interval(replicates: np.ndarray, confidence: float) -> tuple[float, float]:
    """Equal-tailed percentile interval of bootstrap replicates; (NaN, NaN) when there are none."""
    if replicates.size == 0:
        return float("nan"), float("nan")
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(replicates, [alpha, 1.0 - alpha])
    return float(low), float(high)


# --- percentile bootstrap of a mean (leaderboard cells) --------------------------------------
@dataclass(frozen=True)
class MeanCI:
    """Mean of a sample with a percentile-bootstrap confidence interval.

    Attributes:
        mean: sample mean of the finite values.
        ci_low, ci_high: bounds of the ``confidence`` percentile-bootstrap interval.
        n: number of values used.
        n_dropped: number of NaN values dropped before computing.
        n_boot: number of bootstrap resamples.
        confidence: interval coverage, e.g. 0.95.
    """

    mean: float
    ci_low: float
    ci_high: float
    n: int
    n_dropped: int
    n_boot: int
    confidence: float


def drop_nan(*arrays: ArrayLike) -> tuple[list[np.ndarray], int]:
    """Drop positions where any of the equally long 1-D arrays is NaN.

    Returns:
        (the filtered float64 arrays, number of positions dropped).
    """
    arrs = [np.asarray(a, dtype=np.float64) for a in arrays]
    for a in arrs:
        if a.ndim != 1:
            raise ValueError(f"expected 1-D arrays, got shape {a.shape}")
        if a.shape != arrs[0].shape:
            raise ValueError(f"arrays have different lengths: {[x.shape[0] for x in arrs]}")
    keep = ~np.any([np.isnan(a) for a in arrs], axis=0)
    return [a[keep] for a in arrs], int((~keep).sum())


def bootstrap_mean(values: ArrayLike, resampling: Resampling = Resampling()) -> MeanCI:
    """Mean of a 1-D sample with a percentile-bootstrap CI.

    Args:
        values: 1-D array of any real values; NaNs are dropped and counted.
        resampling: ``n_boot`` resamples at coverage ``confidence``, drawn with ``seed``.
    """
    n_boot, confidence, seed = resampling.n_boot, resampling.confidence, resampling.seed
    (x,), n_dropped = drop_nan(values)
    if x.size == 0:
        raise ValueError(f"no finite values to average ({n_dropped} NaN dropped)")
    if x.size > LARGE_N:  # the bootstrap distribution of a mean is normal to within its Monte-Carlo error
        low, high = t_interval(x, confidence)
        return MeanCI(float(x.mean()), low, high, int(x.size), n_dropped, n_boot, confidence)
    # Resamples drawn uniformly with replacement; NaN replicates (degenerate resamples) are ignored.
    replicates = x[np.random.default_rng(seed).integers(0, x.size, size=(n_boot, x.size))].mean(axis=1)
    low, high = percentile_interval(replicates[~np.isnan(replicates)], confidence)
    return MeanCI(float(x.mean()), low, high, int(x.size), n_dropped, n_boot, confidence)


def summarise_means(frame, keys: list[str], resampling: Resampling = Resampling()):
    """Per group of ``keys`` of a tidy frame (a ``value`` column, NaN = undefined; a ``note`` column is joined when
    present): mean [bootstrap CI] (:func:`bootstrap_mean` with ``resampling``), n defined, n undefined. Columns
    ``keys + [mean, ci_low, ci_high, n, n_undefined, note]``; a group with no defined value has NaN statistics and
    n = 0."""
    import pandas as pd

    stats_columns = ["mean", "ci_low", "ci_high", "n", "n_undefined"]
    rows = []
    for group, g in frame.groupby(keys, sort=True):
        values = g["value"].to_numpy(float)
        row = dict(zip(keys, group if isinstance(group, tuple) else (group,)))
        row["note"] = "; ".join(sorted({n for n in g["note"] if n})) if "note" in g else ""
        if np.isfinite(values).any():
            ci = bootstrap_mean(values, resampling)
            row.update(zip(stats_columns, (ci.mean, ci.ci_low, ci.ci_high, ci.n, ci.n_dropped)))
        else:
            row.update(zip(stats_columns, (np.nan, np.nan, np.nan, 0, len(values))))
        rows.append(row)
    return pd.DataFrame(rows, columns=[*keys, *stats_columns, "note"])
