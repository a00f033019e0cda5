"""Spearman / Pearson correlation with permutation p-values and BCa bootstrap CIs.

For paired samples (x, y), after dropping pairs with a NaN in either:

* the statistic is Pearson's r of (x, y), or of their average ranks
  (Spearman's rho, as ``scipy.stats.spearmanr`` computes it);
* the p-value is two-sided, from a permutation test of the pairing
  (:func:`permutation_pvalue`, vectorised: r under a pairing is one dot product
  of standard scores): every one of the n! pairings when n <= :data:`EXACT_MAX_N`
  (so a perfect order of 4 models has p = 2/24, not the asymptotic ~0),
  otherwise a seeded Monte-Carlo draw of ``n_permutations`` pairings. Two-sided
  is scipy's convention: twice the smaller one-sided p, at most 1;
* the confidence interval is a paired BCa bootstrap (``scipy.stats.bootstrap``),
  falling back to the percentile interval with a ``note`` when BCa is not defined,
  and NaN ("not estimable") when every resample gives the same value (see
  :func:`benchmark.analysis.bootstrap.bootstrap_ci`). Fewer than
  :data:`MIN_PAIRS_FOR_CI` pairs (samples or models) get no interval: with
  probability (n + C(n, 2) (2^n - 2)) / n^n a bootstrap resample of n pairs
  holds at most two distinct pairs, and so a coefficient of exactly +-1 (or
  none) by construction; that is 2.0% at n = 6 and 0.3% at n = 7, so below 7
  such lumps reach the 2.5% tails of a 95% interval.

Above :data:`~benchmark.analysis.asymptotic.LARGE_N` pairs the p-value and the
interval are their normal approximations (permutation variance, Fisher's z:
:mod:`benchmark.analysis.asymptotic`), named in ``p_method`` and ``ci_method``.

Nothing here raises on data: fewer than :data:`MIN_PAIRS` complete pairs or a
constant coordinate give NaN values with the reason in ``note``.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats

from benchmark.analysis.asymptotic import LARGE_N, fisher_interval, normal_p_text, stratified_normal_p
from benchmark.analysis.bootstrap import Interval, bootstrap_ci, drop_nan
from benchmark.analysis.resampling import Resampling

Method = Literal["spearman", "pearson"]
Level = Literal["sample", "model"]
METHODS: tuple[Method, ...] = ("spearman", "pearson")
MIN_PAIRS = 3
MIN_PAIRS_FOR_CI = 7  # see the module docstring
MIN_MODELS_FOR_CI = MIN_PAIRS_FOR_CI  # the same rule, each pair being one model
EXACT_MAX_N = 8  # 8! = 40,320 pairings: all of them are enumerated up to here
EXACT_MAX_PERMUTATIONS = math.factorial(EXACT_MAX_N)  # the same bound for pairings permuted within strata
PAIRING_BLOCK = 1_000_000  # index entries (8 MB) per block of Monte-Carlo pairings: bounds memory at any n
TOO_FEW_MODELS = "too few models for a CI"
TOO_FEW_PAIRS = "too few pairs for a CI"

__all__ = [
    "EXACT_MAX_N",
    "METHODS",
    "MIN_MODELS_FOR_CI",
    "MIN_PAIRS",
    "MIN_PAIRS_FOR_CI",
    "TOO_FEW_MODELS",
    "TOO_FEW_PAIRS",
    "CorrelationResult",
    "correlation",
    "fisher_ci",
    "pearson_along",
    "permutation_pvalue",
    "statistic_along",
    "stratified_pvalue",
    "zscores",
]


@dataclass(frozen=True)
class CorrelationResult:
    """A correlation coefficient with its permutation p-value and bootstrap CI.

    Attributes:
        method: ``"spearman"`` or ``"pearson"``.
        statistic: coefficient in [-1, 1]; NaN when undefined (see ``note``).
        p_value: two-sided permutation p-value in (0, 1]; NaN when undefined.
        ci_low, ci_high: interval bounds; NaN when there is none (see ``note``).
        n: complete pairs used.
        n_dropped: pairs dropped for containing NaN.
        p_method: how ``p_value`` was obtained, e.g. ``"exact (24 permutations)"``.
        ci_method: ``"BCa"``, ``"percentile"`` or ``"none"``.
        n_boot: bootstrap resamples requested.
        confidence: interval coverage, e.g. 0.95.
        note: why a value is missing or the interval is not BCa; empty otherwise.
    """

    method: str
    statistic: float
    p_value: float
    ci_low: float
    ci_high: float
    n: int
    n_dropped: int
    p_method: str
    ci_method: str
    n_boot: int
    confidence: float
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def undefined(cls, method: str, n: int, n_dropped: int, n_boot: int, confidence: float,
                  note: str) -> CorrelationResult:
        """A result with NaN statistic, p-value and interval; ``note`` says why."""
        nan = float("nan")
        return cls(method, nan, nan, nan, nan, n, n_dropped, "none", "none", n_boot, confidence, note)


def fisher_ci(method: str, sizes: Sequence[int], rs: Sequence[float], r: float, confidence: float) -> Interval:
    """:func:`~benchmark.analysis.asymptotic.fisher_interval` as the :class:`Interval` the bootstrap would give
    (method ``"Fisher z"``, or ``"none"`` with the reason), for the intervals above
    :data:`~benchmark.analysis.asymptotic.LARGE_N` values."""
    low, high, why = fisher_interval(method, sizes, rs, r, confidence)
    return Interval(low, high, "none" if why else "Fisher z", 0, 0, why)


# --- vectorised statistics (the last axis holds the pairs) ----------------------------------
def pearson_along(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
    """Pearson r along ``axis`` of broadcastable arrays; NaN where either side is constant. Range [-1, 1]."""
    xc = x - x.mean(axis=axis, keepdims=True)
    yc = y - y.mean(axis=axis, keepdims=True)
    num = (xc * yc).sum(axis=axis)
    denom = np.sqrt((xc * xc).sum(axis=axis) * (yc * yc).sum(axis=axis))
    # Exactly constant inputs give 0/0; relative round-off guards near-constant ones.
    scale = np.sqrt((x * x).sum(axis=axis) * (y * y).sum(axis=axis))
    ok = denom > 1e-12 * np.maximum(scale, np.finfo(np.float64).tiny)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.where(ok, num / np.where(ok, denom, 1.0), np.nan)
    return np.clip(r, -1.0, 1.0)


def statistic_along(method: Method, x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
    """Spearman (Pearson of average ranks along ``axis``) or Pearson r, vectorised; NaN where undefined."""
    if method == "spearman":
        return pearson_along(stats.rankdata(x, axis=axis), stats.rankdata(y, axis=axis), axis=axis)
    if method == "pearson":
        return pearson_along(x, y, axis=axis)
    raise ValueError(f"unknown method {method!r}; expected one of {METHODS}")


def zscores(u: np.ndarray) -> np.ndarray:
    """Standard scores along the last axis (population SD); 0 where that axis is constant (round-off guarded)."""
    c = u - u.mean(axis=-1, keepdims=True)
    sd = np.sqrt((c * c).mean(axis=-1, keepdims=True))
    ok = sd > 1e-12 * np.maximum(np.sqrt((u * u).mean(axis=-1, keepdims=True)), np.finfo(np.float64).tiny)
    return np.where(ok, c / np.where(ok, sd, 1.0), 0.0)


@functools.lru_cache(maxsize=16)
def _pairings(n: int, rows: int, seed: int, block: int, stratum: int) -> np.ndarray:
    """(rows, n) seeded random permutations of range(n), read-only: block ``block`` of stratum ``stratum``'s draw.

    Kept for reuse: a report runs many tests on samples of the same size with the same seed, which draw the same
    pairings anyway; drawing them once leaves one gather and one product per test (at most 16 blocks of
    :data:`PAIRING_BLOCK` entries are kept).
    """
    idx = np.argsort(np.random.default_rng([seed, n, block, stratum]).random((rows, n)), axis=1)
    idx.flags.writeable = False
    return idx


def stratified_pvalue(
    us: Sequence[np.ndarray], vs: Sequence[np.ndarray], n_permutations: int = Resampling.n_permutations,
    seed: int = Resampling.seed, strata: str = "strata",
) -> tuple[float, str]:
    """Two-sided permutation p-value of the pooled within-stratum Pearson r under pairings permuted in each stratum.

    The statistic is ``sum_i zu_i . zv_i / sqrt(sum_i |zu_i|^2 sum_i |zv_i|^2)``
    with ``zu_i``, ``zv_i`` the standard scores of ``u_i``, ``v_i`` within
    stratum i (:func:`zscores`); with one stratum it is Pearson's r(u, v).
    Permuting within strata leaves every sum of squares unchanged, so each
    null value is one product per stratum: vectorised, no coefficient recomputed.

    Args:
        us, vs: per stratum, 1-D arrays of equal length, neither constant.
        n_permutations: Monte-Carlo draws when the within-stratum pairings number
            more than 8! = 40,320 (otherwise every one is enumerated).
        seed: seed of the Monte-Carlo draw.
        strata: what a stratum is, for the description (e.g. ``"models"``).

    Returns:
        (p in (0, 1], a description such as ``"exact (24 permutations)"`` or, with
        several strata, ``"Monte Carlo (9999 permutations within 5 models)"``):
        twice the smaller one-sided p, at most 1 (scipy's convention).
    """
    zu = [zscores(np.asarray(u, dtype=np.float64)) for u in us]
    zv = [zscores(np.asarray(v, dtype=np.float64)) for v in vs]
    within = f" within {len(zu)} {strata}" if len(zu) > 1 else ""
    den = math.sqrt(sum(float(a @ a) for a in zu) * sum(float(b @ b) for b in zv))
    observed = sum(float(a @ b) for a, b in zip(zu, zv)) / den
    n_total = sum(a.size for a in zu)
    if n_total > LARGE_N:  # the permutation distribution is normal to within its Monte-Carlo error
        return stratified_normal_p(zu, zv, observed, den), normal_p_text(n_total, within)
    total = math.prod(math.factorial(a.size) for a in zu)
    if total <= EXACT_MAX_PERMUTATIONS:
        null = np.zeros(1)
        for a, b in zip(zu, zv):
            null = np.add.outer(null, b[np.asarray(list(itertools.permutations(range(b.size))))] @ a).ravel()
        extra, how = 0, f"exact ({total} permutations{within})"
    else:
        null = np.zeros(n_permutations)
        rows = max(1, min(n_permutations, PAIRING_BLOCK // max(a.size for a in zu)))
        for block, start in enumerate(range(0, n_permutations, rows)):
            end = min(start + rows, n_permutations)
            null[start:end] = sum(b[_pairings(b.size, rows, seed, block, i)[: end - start]] @ a
                                  for i, (a, b) in enumerate(zip(zu, zv)))
        extra, how = 1, f"Monte Carlo ({n_permutations} permutations{within})"
    null /= den
    tol = 1e-12 * max(1.0, abs(observed))
    greater = (extra + np.sum(null >= observed - tol)) / (null.size + extra)
    less = (extra + np.sum(null <= observed + tol)) / (null.size + extra)
    return float(min(1.0, 2 * min(greater, less))), how


def permutation_pvalue(
    u: np.ndarray, v: np.ndarray, n_permutations: int = Resampling.n_permutations, seed: int = Resampling.seed
) -> tuple[float, str]:
    """Two-sided permutation p-value of Pearson r(u, v) under random pairing: :func:`stratified_pvalue` with one
    stratum, exact for n <= :data:`EXACT_MAX_N`.

    Spearman's test is this test on average ranks (ranking commutes with permuting).

    Args:
        u, v: 1-D float arrays of equal length n >= 2, neither constant.
        n_permutations: Monte-Carlo pairings when n > :data:`EXACT_MAX_N`.
        seed: seed of the Monte-Carlo draw.

    Returns:
        (p in (0, 1], a description such as ``"exact (24 permutations)"``).
    """
    return stratified_pvalue([u], [v], n_permutations=n_permutations, seed=seed)


def correlation(
    x: ArrayLike,
    y: ArrayLike,
    method: Method = "spearman",
    *,
    level: Level = "sample",
    resampling: Resampling = Resampling(),
) -> CorrelationResult:
    """Correlation of paired samples with a permutation p-value and a paired BCa bootstrap CI.

    Args:
        x, y: 1-D arrays of equal length, any real values; pairs with NaN in
            either are dropped and counted.
        method: ``"spearman"`` (rank) or ``"pearson"`` (linear).
        level: ``"model"`` when each pair is one model (means over its samples),
            ``"sample"`` otherwise; fewer than :data:`MIN_PAIRS_FOR_CI` pairs get
            no interval, with ``note`` starting :data:`TOO_FEW_MODELS` or
            :data:`TOO_FEW_PAIRS`.
        resampling: ``n_boot`` bootstrap resamples of the pairs, ``n_permutations``
            Monte-Carlo pairings for the p-value when n > :data:`EXACT_MAX_N`, the
            interval's ``confidence``, and the ``seed`` of both draws (fixed: the
            same inputs give the same result).

    Raises:
        ValueError: unknown ``method`` or ``level``, or x and y of different shapes.
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; expected one of {METHODS}")
    if level not in ("sample", "model"):
        raise ValueError(f"unknown level {level!r}; expected 'sample' or 'model'")
    n_boot, confidence, seed = resampling.n_boot, resampling.confidence, resampling.seed
    (xs, ys), n_dropped = drop_nan(x, y)
    n = int(xs.size)
    if n < MIN_PAIRS:
        why = f"fewer than {MIN_PAIRS} complete pairs (n={n}, {n_dropped} dropped)"
        return CorrelationResult.undefined(method, n, n_dropped, n_boot, confidence, why)
    constant = [name for name, a in (("x", xs), ("y", ys)) if np.ptp(a) == 0]
    if constant:
        why = f"{' and '.join(constant)} constant over the {n} pairs: no correlation defined"
        return CorrelationResult.undefined(method, n, n_dropped, n_boot, confidence, why)

    u, v = (stats.rankdata(xs), stats.rankdata(ys)) if method == "spearman" else (xs, ys)
    statistic = float(pearson_along(u, v))
    p_value, p_method = permutation_pvalue(u, v, n_permutations=resampling.n_permutations, seed=seed)

    if n < MIN_PAIRS_FOR_CI:
        why = f"{TOO_FEW_MODELS if level == 'model' else TOO_FEW_PAIRS} (n = {n} < {MIN_PAIRS_FOR_CI})"
        ci = Interval(float("nan"), float("nan"), "none", n_boot, 0, why)
    elif n > LARGE_N:
        ci = fisher_ci(method, [n], [statistic], statistic, confidence)
    else:
        ci = bootstrap_ci((xs, ys), lambda a, b, axis=-1: statistic_along(method, a, b, axis=axis),
                          paired=True, n_resamples=n_boot, confidence=confidence, seed=seed)
    return CorrelationResult(method, statistic, p_value, ci.low, ci.high, n, n_dropped, p_method, ci.method, n_boot,
                             confidence, ci.note)
