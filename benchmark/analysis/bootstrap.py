"""Percentile-bootstrap confidence intervals with seeded resampling."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

__all__ = ["MeanCI", "bootstrap_indices", "percentile_interval", "bootstrap_mean", "drop_nan"]


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
    keep = np.ones(arrs[0].shape[0], dtype=bool)
    for a in arrs:
        keep &= ~np.isnan(a)
    return [a[keep] for a in arrs], int((~keep).sum())


def bootstrap_indices(n: int, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """Resampling indices, int array (n_boot, n), drawn uniformly with replacement."""
    if n < 1 or n_boot < 1:
        raise ValueError(f"need n >= 1 and n_boot >= 1, got n={n}, n_boot={n_boot}")
    return rng.integers(0, n, size=(n_boot, n))


def percentile_interval(replicates: np.ndarray, confidence: float) -> tuple[float, float]:
    """Equal-tailed percentile interval of bootstrap replicates; NaN replicates (degenerate resamples) are ignored."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    finite = replicates[~np.isnan(replicates)]
    if finite.size == 0:
        return float("nan"), float("nan")
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(finite, [alpha, 1.0 - alpha])
    return float(low), float(high)


def bootstrap_mean(
    values: ArrayLike, n_boot: int = 2000, confidence: float = 0.95, seed: int | np.random.Generator = 0
) -> MeanCI:
    """Mean of a 1-D sample with a percentile-bootstrap CI.

    Args:
        values: 1-D array of any real values; NaNs are dropped and counted.
        n_boot: number of resamples.
        confidence: interval coverage in (0, 1).
        seed: seed or ``numpy.random.Generator`` for the resampling.
    """
    (x,), n_dropped = drop_nan(values)
    if x.size == 0:
        raise ValueError(f"no finite values to average ({n_dropped} NaN dropped)")
    rng = np.random.default_rng(seed)
    replicates = x[bootstrap_indices(x.size, n_boot, rng)].mean(axis=1)
    low, high = percentile_interval(replicates, confidence)
    return MeanCI(
        mean=float(x.mean()),
        ci_low=low,
        ci_high=high,
        n=int(x.size),
        n_dropped=n_dropped,
        n_boot=n_boot,
        confidence=confidence,
    )
