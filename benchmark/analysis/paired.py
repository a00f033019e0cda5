"""Paired comparison of two models scored on the same samples.

For per-sample scores ``new`` and ``old`` (same samples, same order), after
dropping pairs with a NaN in either, the differences ``d = new - old`` give

* the mean difference;
* a two-sided sign-flip permutation p-value of ``mean(d) = 0``: under the null
  each difference is as likely to have either sign, so the p-value is the share
  of sign patterns whose ``|mean|`` reaches the observed one. Every one of the
  ``2**n`` patterns when that is at most ``n_permutations + 1`` (``"exact"``),
  otherwise ``n_permutations`` seeded random patterns with
  ``p = (1 + #extreme) / (1 + n_permutations)`` (``"monte-carlo"``, never 0);
* a paired percentile-bootstrap interval of the mean (pairs resampled), NaN when
  it cannot be estimated (fewer than 2 pairs, or every resample giving the same
  mean although the differences vary), so a collapsed ``[x, x]`` never poses as an
  interval; differences that are all equal give their exact zero-width interval,
  named in ``note``.

Above :data:`~benchmark.analysis.asymptotic.LARGE_N` pairs both are their normal
approximations: the sign-flip null's exact variance ``sum d^2`` and Student's t
interval (:mod:`benchmark.analysis.asymptotic`).

:func:`holm` adjusts a family of p-values (e.g. all model pairs of a task on one
metric) for multiple testing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from benchmark.analysis.asymptotic import LARGE_N, normal_p_text, sign_flip_normal_p, t_interval
from benchmark.analysis.bootstrap import drop_nan
from benchmark.analysis.resampling import Resampling

__all__ = ["PairedResult", "holm", "paired_test"]

_CHUNK = 1 << 20  # entries of the sign patterns or resamples held at once


@dataclass(frozen=True)
class PairedResult:
    """Mean paired difference with its bootstrap CI and sign-flip permutation p-value.

    Attributes:
        mean: mean of ``new - old`` over complete pairs; NaN when there are none.
        ci_low, ci_high: paired-bootstrap interval of ``mean``; NaN when not estimable (see ``note``).
        p_value: two-sided sign-flip permutation p-value of ``mean = 0``, in (0, 1]; NaN when n = 0.
        n: complete pairs used.
        p_method: ``"exact"``, ``"monte-carlo"`` or ``"none"`` (no pairs).
        ci_method: ``"paired bootstrap percentile"`` or ``"none"``.
        note: why a value is missing or degenerate; empty otherwise.
    """

    mean: float
    ci_low: float
    ci_high: float
    p_value: float
    n: int
    p_method: str
    ci_method: str
    note: str = ""


def paired_test(
    new: ArrayLike,
    old: ArrayLike,
    *,
    resampling: Resampling = Resampling(),
) -> PairedResult:
    """Compare ``new`` with ``old`` on the same samples.

    Args:
        new, old: 1-D arrays of equal length, one value per sample (NaN = undefined; such pairs are dropped).
        resampling: ``n_boot`` bootstrap resamples of the pairs; ``n_permutations`` random sign patterns when
            the exact enumeration (``2**n`` patterns) is larger than ``n_permutations + 1``; the interval's
            ``confidence``; the ``seed`` of both the bootstrap and the permutation draws (same seed, same result).
    """
    n_boot, n_permutations = resampling.n_boot, resampling.n_permutations
    seed, confidence = resampling.seed, resampling.confidence
    (a, b), _ = drop_nan(new, old)
    d = a - b
    n = int(d.size)
    if n == 0:
        return PairedResult(np.nan, np.nan, np.nan, np.nan, 0, "none", "none", "no complete pairs")
    # Independent streams: the p-value does not move when n_boot changes, nor the CI with n_permutations.
    boot_rng, perm_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
    if n > LARGE_N:  # the sign-flip and bootstrap distributions are normal to within their Monte-Carlo error
        p_value, p_method = sign_flip_normal_p(d), normal_p_text(n)
        ci_low, ci_high = t_interval(d, confidence)
        ci_note = ""
    else:
        p_value, p_method = _sign_flip_p(d, n_permutations, perm_rng)
        ci_low, ci_high, ci_note = _bootstrap_interval(d, n_boot, confidence, boot_rng)
    if ci_note:
        note = ci_note
    elif not np.any(d):
        note = "all differences 0"
    elif _all_equal(d):
        note = f"all {n} differences equal {d[0]:.4g}"
    else:
        note = ""
    ci_method = "none" if np.isnan(ci_low) else "t" if n > LARGE_N else "paired bootstrap percentile"
    return PairedResult(float(d.mean()), ci_low, ci_high, p_value, n, p_method, ci_method, note)


def _sign_flip_p(d: np.ndarray, n_permutations: int, rng: np.random.Generator) -> tuple[float, str]:
    """Two-sided sign-flip p-value of ``mean(d) = 0`` and how it was obtained (``d``: shape (n,))."""
    n = d.size
    observed = abs(d.sum())
    # Sums of the same terms in another order differ by rounding only; such ties must count as extreme.
    tol = 8 * n * np.finfo(np.float64).eps * np.abs(d).sum()
    # A sign pattern is a row of bytes, bit k of byte j flipping d[8j + k]: each byte's signed partial sum is
    # read from a (256, bytes) table, so a pattern costs one lookup per 8 differences and no float matrix.
    n_bytes = -(-n // 8)
    padded = np.zeros(8 * n_bytes)
    padded[:n] = d
    byte_signs = 1.0 - 2.0 * np.unpackbits(np.arange(256, dtype=np.uint8)[:, None], axis=1, bitorder="little")
    table = byte_signs @ padded.reshape(n_bytes, 8).T
    columns = np.arange(n_bytes)
    rows = max(1, _CHUNK // n_bytes)

    def extreme(codes: np.ndarray) -> int:
        return int(np.count_nonzero(np.abs(table[codes, columns].sum(axis=1)) >= observed - tol))

    if n < 63 and (1 << n) <= n_permutations + 1:  # integers: 2.0**n overflows a float from n = 1024
        total = 1 << n  # pattern c flips d[i] where bit i of c is set: every pattern once
        hits = sum(extreme(np.arange(start, min(start + rows, total), dtype="<u8")[:, None].view(np.uint8)[:, :n_bytes])
                   for start in range(0, total, rows))
        return hits / total, "exact"
    hits = sum(extreme(rng.integers(0, 256, size=(min(rows, n_permutations - start), n_bytes), dtype=np.uint8))
               for start in range(0, n_permutations, rows))
    return (1 + hits) / (1 + n_permutations), "monte-carlo"


def _bootstrap_interval(
    d: np.ndarray, n_boot: int, confidence: float, rng: np.random.Generator
) -> tuple[float, float, str]:
    """Percentile interval of the mean of ``d`` (shape (n,)) over resampled pairs, with a note when NaN."""
    n = d.size
    if n < 2:
        return np.nan, np.nan, f"not estimable (n = {n})"
    rows = max(1, _CHUNK // n)
    replicates = np.concatenate([
        d[rng.integers(0, n, size=(min(rows, n_boot - start), n))].mean(axis=1)
        for start in range(0, n_boot, rows)
    ])
    if np.ptp(replicates) == 0 and not _all_equal(d):
        return np.nan, np.nan, f"not estimable (n = {n})"
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(replicates, [alpha, 1.0 - alpha])
    return float(low), float(high), ""


def _all_equal(d: np.ndarray) -> bool:
    """Whether the differences are one value up to rounding (e.g. ``(x + c) - x`` for varying x)."""
    return bool(np.ptp(d) <= 1e-12 * np.abs(d).max())


def holm(p_values: ArrayLike) -> np.ndarray:
    """Holm step-down adjusted p-values, in the input's order and shape.

    The i-th smallest of the m defined p-values becomes ``max_{j <= i} min(1, (m - j + 1) p_(j))``; NaN
    entries stay NaN and do not count in m. Rejecting where the adjusted value is below alpha controls the
    family-wise error rate at alpha.
    """
    p = np.asarray(p_values, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    flat = p.ravel()
    defined = np.flatnonzero(~np.isnan(flat))
    order = defined[np.argsort(flat[defined], kind="stable")]
    m = order.size
    adjusted = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * flat[order]))
    out.ravel()[order] = adjusted
    return out
