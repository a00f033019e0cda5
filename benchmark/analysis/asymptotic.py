"""Normal-theory p-values and intervals, used above :data:`LARGE_N` values instead of resampling.

Below :data:`LARGE_N` every p-value of the report is an exact or Monte-Carlo permutation test and every interval a
bootstrap (:mod:`benchmark.analysis.correlation`, :mod:`benchmark.analysis.bootstrap`,
:mod:`benchmark.analysis.paired`). A nightly of real benchmarks pools tens of thousands of samples per task, where
those cost 10,000 pairings and 1,000 resamples of every sample, per score, quality metric, method and scope; at
that size the permutation and bootstrap distributions are normal to well within their own Monte-Carlo error, so
the report uses their normal approximations, each named in the result's ``p_method`` / ``ci_method``:

* correlation p-value: the permutation null of a (stratified) coefficient has mean 0 and, for standard scores
  ``a_i``, ``b_i`` of stratum i, the exact variance ``sum_i |a_i|^2 |b_i|^2 / (n_i - 1)`` over the squared
  denominator; p is the two-sided normal tail of the observed value over that standard deviation;
* correlation interval: Fisher's z, ``atanh(r) +- q sqrt(c / (n - 3))`` with ``c = 1`` for Pearson and
  Bonett & Wright's ``c = 1 + r^2 / 2`` for Spearman; for the pooled within-model coefficient
  ``r_w = sum_i w_i r_i`` (``w_i = n_i / n``) the delta method gives
  ``var(r_w) = sum_i w_i^2 c_i (1 - r_i^2)^2 / (n_i - 3)`` and ``se(atanh r_w) = sd(r_w) / (1 - r_w^2)``, which is
  the one-sample interval for one stratum;
* paired mean difference: the sign-flip null of ``sum d`` has variance ``sum d^2`` exactly (normal p), and the
  mean's interval is Student's t;
* a mean: Student's t interval.

``tests/analysis/test_asymptotic.py`` checks each against its permutation or bootstrap counterpart and its
coverage by simulation.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import stats

LARGE_N = 2000  # values (all strata together) above which p-values and intervals are the normal approximations


def stratified_normal_p(zu: Sequence[np.ndarray], zv: Sequence[np.ndarray], observed: float,
                        den: float) -> float:
    """Two-sided normal p-value of the stratified permutation test's ``observed`` coefficient, from the exact
    permutation variance (module docstring). ``zu``, ``zv``: centred scores per stratum; ``den``: the
    coefficient's denominator."""
    var = sum(float(a @ a) * float(b @ b) / (a.size - 1) for a, b in zip(zu, zv) if a.size > 1) / den**2
    if var <= 0:
        return 1.0
    return float(min(1.0, 2 * stats.norm.sf(abs(observed) / math.sqrt(var))))


def fisher_interval(method: str, sizes: Sequence[int], rs: Sequence[float], r: float,
                    confidence: float) -> tuple[float, float, str]:
    """Fisher-z interval of a correlation ``r`` pooled from strata of ``sizes`` with coefficients ``rs``
    (one stratum: ``sizes = [n]``, ``rs = [r]``); (low, high, note), NaN bounds with the reason when ``|r| = 1``."""
    if not math.isfinite(r) or abs(r) >= 1:
        return float("nan"), float("nan"), f"CI not estimable: r = {r:.3g}"
    n = float(sum(sizes))
    var = 0.0
    for n_i, r_i in zip(sizes, rs):
        c = 1 + r_i * r_i / 2 if method == "spearman" else 1.0
        var += (n_i / n) ** 2 * c * (1 - r_i * r_i) ** 2 / max(n_i - 3, 1)
    se = math.sqrt(var) / (1 - r * r)
    q = float(stats.norm.ppf(0.5 + confidence / 2))
    z = math.atanh(r)
    return math.tanh(z - q * se), math.tanh(z + q * se), ""


def sign_flip_normal_p(d: np.ndarray) -> float:
    """Two-sided normal p-value of ``mean(d) = 0`` under random signs: ``sum d`` over its exact sd ``sqrt(sum d^2)``."""
    scale = math.sqrt(float(d @ d))
    if scale == 0:
        return 1.0
    return float(min(1.0, 2 * stats.norm.sf(abs(float(d.sum())) / scale)))


def t_interval(x: np.ndarray, confidence: float) -> tuple[float, float]:
    """Student's t interval of the mean of ``x`` (at least 2 values); values that are all equal give their exact
    zero-width interval at that value."""
    if np.ptp(x) == 0:
        return float(x[0]), float(x[0])
    m, se = float(x.mean()), float(x.std(ddof=1)) / math.sqrt(x.size)
    half = float(stats.t.ppf(0.5 + confidence / 2, x.size - 1)) * se
    return m - half, m + half


def normal_p_text(n: int, within: str = "") -> str:
    """``p_method`` of a normal-approximation p-value (``within``: e.g. ``" within 9 models"``)."""
    return f"normal approximation (n = {n} > {LARGE_N}{within})"
