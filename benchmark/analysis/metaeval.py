"""Meta-evaluation of attribution scores against quality: which score tracks quality best, how well it orders the
models, and how many samples and models a conclusion needs.

The procedures are those of metric shared tasks (WMT's mt-metrics-eval toolkit; Deutsch, Dror and Roth, TACL
2021; Graham and Baldwin, EMNLP 2014), on the statistic the task pages already use: the combined within-model
correlation (:func:`benchmark.analysis.validity.within_combined`: Pearson's r over every model's within-model
standard scores, of ranks for Spearman).

* :func:`paired_difference`: corr(A, H) - corr(B, H) for two scores A, B on the same samples, both correlations
  combined within models. Its p is a paired permutation test, as mt-metrics-eval's ``PermutationSigDiff``: A and
  B are turned into within-model standard scores, then each sample's two scores are swapped with probability
  1/2 and the difference recomputed (ranks redone for Spearman); every one of the 2^n swap patterns when
  2^n <= :data:`EXACT_MAX_SWAPS`, otherwise a seeded Monte-Carlo draw with ``p = (1 + hits) / (1 + draws)``.
  Two-sided: a resample counts when its |difference| reaches the observed one (swapping every sample negates
  the difference, so the null is symmetric). Its CI is a percentile bootstrap of the difference, each model's
  samples resampled on their own and both correlations recomputed per resample. Above
  :data:`~benchmark.analysis.asymptotic.LARGE_N` samples both are normal approximations from the difference's
  normal-theory variance (Steiger's covariance of two correlations sharing H, per model, weighted as the
  combined statistic weights them: :func:`_difference_normal`).
* :func:`pairwise_accuracy` / :func:`system_accuracy`: over all pairs of models, the share ordered the same way
  by the score's model means and by the quality's; a pair whose means differ by at most ``epsilon`` is a tie,
  and a tie agrees only with a tie. CI: percentile bootstrap over samples (the same inputs drawn for every model
  when the models share their inputs, otherwise each model's samples on their own; every model mean recomputed
  per resample); p: one-sided permutation test of the models' pairing (score means
  permuted over the models; all m! pairings up to 8 models), the share of pairings at least as accurate.
* :func:`power_within` / :func:`power_between`: power by simulation from the task's own data, no normal
  approximation. Within: M models (the task's) of n samples each, score and quality drawn from each model's own
  empirical distributions (quantile function, so the data's ties stay) joined by a Gaussian copula whose
  Spearman correlation is the planted r (Pearson 2 sin(pi r / 6)); the test is the combined within-model
  Spearman, two-sided, its p read from the statistic simulated with r = 0 on the same marginals. Between: m
  models whose true score and quality means have Spearman r (copula, spread as the task's model means), each
  observed through the mean of n within-model deviations resampled in pairs from the
  task (so the noise of a mean is the task's); the test is Spearman over the m observed means against its
  permutation null. "Needed" is the smallest n (or m) whose simulated power reaches the target: the first such
  value on a grid, then bisection between it and the grid value before it; the Monte-Carlo standard error of a
  power p from S simulations is sqrt(p (1 - p) / S).

Nothing here raises on data: undefined values are NaN with the reason in ``note``.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from scipy import special, stats

from benchmark.analysis.asymptotic import LARGE_N, normal_p_text
from benchmark.analysis.bootstrap import percentile_interval
from benchmark.analysis.correlation import MIN_PAIRS, Method, pearson_along, statistic_along
from benchmark.analysis.resampling import Resampling
from benchmark.analysis.validity import pooled_r, standard_scores

__all__ = [
    "EPSILON",
    "EXACT_MAX_SWAPS",
    "AccuracyResult",
    "DifferenceResult",
    "PowerResult",
    "combined_along",
    "pairwise_accuracy",
    "paired_difference",
    "power_between",
    "power_within",
    "system_accuracy",
]

EPSILON = 1e-6  # model means closer than this (in the metric's units) are tied
EXACT_MAX_SWAPS = 2**12  # swap patterns enumerated up to here (n <= 12 samples); Monte Carlo beyond
BOOT_STREAM, SWAP_STREAM, PAIRING_STREAM = 1, 2, 3  # independent seeded draws: one moves without the others
EXACT_MAX_MODELS = 8  # model pairings enumerated up to 8! = 40,320
N_GRID = (4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024)  # samples per model tried
NULL_DRAWS = 20_000  # random pairings for the between-model null when m! is larger
M_GRID = (4, 5, 6, 7, 8, 9, 10, 12, 14, 16, 20, 25, 30, 40, 50, 75, 100)  # models tried


# --- the combined within-model correlation, vectorised over resamples -----------------------------------------
def combined_along(xs: Sequence[np.ndarray], ys: Sequence[np.ndarray], method: Method = "spearman") -> np.ndarray:
    """Combined within-model correlation of per-model arrays (..., n_i), broadcast over the leading axes.

    ``sum_i zx_i . zy_i / sqrt(sum_i |zx_i|^2 sum_i |zy_i|^2)`` with ``zx_i``, ``zy_i`` the standard scores of
    model i (of ranks for Spearman): the statistic of :func:`benchmark.analysis.validity.within_combined`. A model
    constant in x or y (a resample can be) is left out; NaN when every model is. Range [-1, 1].
    """
    return pooled_r([standard_scores(method, np.asarray(x, dtype=np.float64)) for x in xs],
                   [standard_scores(method, np.asarray(y, dtype=np.float64)) for y in ys])


def _groups(groups: np.ndarray, *arrays: np.ndarray) -> tuple[list[list[np.ndarray]], list[str]]:
    """Per model (sorted), the complete rows of ``arrays``; models with fewer than :data:`MIN_PAIRS` complete rows
    or a constant array are left out and named."""
    complete = np.all([np.isfinite(a) for a in arrays], axis=0)
    kept, left_out = [], []
    for level in np.unique(groups):
        m = complete & (groups == level)
        parts = [a[m] for a in arrays]
        if m.sum() >= MIN_PAIRS and all(np.ptp(p) > 0 for p in parts):
            kept.append(parts)
        else:
            left_out.append(str(level))
    return kept, left_out


def _percentile(values: np.ndarray, confidence: float) -> tuple[float, float]:
    """The percentile interval of the finite resamples; NaN when there are none or they are all equal."""
    finite = values[np.isfinite(values)]
    if finite.size == 0 or np.ptp(finite) <= 1e-12 * max(1.0, float(np.abs(finite).max())):
        return float("nan"), float("nan")
    return percentile_interval(finite, confidence)


def _resample_indices(sizes: Sequence[int], n_boot: int, seed: int) -> list[np.ndarray]:
    """Per model, (n_boot, n_i) indices drawn with replacement within that model (a stratified bootstrap)."""
    rng = np.random.default_rng([seed, BOOT_STREAM])
    return [rng.integers(0, n, size=(n_boot, n)) for n in sizes]


# --- 1. the difference of two dependent correlations ---------------------------------------------------------
@dataclass(frozen=True)
class DifferenceResult:
    """corr(A, H) - corr(B, H), both combined within models, on the samples complete in A, B and H.

    Attributes:
        difference: r_a - r_b in [-2, 2]; NaN when undefined.
        r_a, r_b: the two combined within-model correlations on those samples.
        p_value: two-sided paired-permutation p in (0, 1]; ci_low, ci_high: percentile bootstrap interval.
        n: samples used; n_models: models used.
        p_method: e.g. ``"exact (256 swap patterns)"`` or ``"Monte Carlo (1000 swap patterns)"``.
        note: models left out, or why a value is missing.
    """

    difference: float
    r_a: float
    r_b: float
    p_value: float
    ci_low: float
    ci_high: float
    n: int
    n_models: int
    p_method: str
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def paired_difference(
    a: ArrayLike, b: ArrayLike, quality: ArrayLike, groups: ArrayLike, method: Method = "spearman", *,
    resampling: Resampling = Resampling(),
) -> DifferenceResult:
    """Test of corr(A, H) = corr(B, H) by paired permutation (swaps within samples) with a bootstrap CI.

    Args:
        a, b: (n,) two scores of the same samples (NaN allowed: such samples are dropped from both).
        quality: (n,) oriented quality (higher is better).
        groups: (n,) model of each sample; the correlations are combined within models (:func:`combined_along`).
        method: ``"spearman"`` or ``"pearson"``.
        resampling: ``n_permutations`` Monte-Carlo swap patterns when 2^n > :data:`EXACT_MAX_SWAPS`; ``n_boot``
            bootstrap resamples; ``confidence``: interval coverage in (0, 1); ``seed``: of both draws.
    """
    n_resamples, n_boot = resampling.n_permutations, resampling.n_boot
    confidence, seed = resampling.confidence, resampling.seed
    arrays = [np.asarray(v, dtype=np.float64) for v in (a, b, quality)]
    kept, left_out = _groups(np.asarray(groups).astype(str), *arrays)
    note = f"left out (fewer than {MIN_PAIRS} complete samples or a constant value): {', '.join(left_out)}" \
        if left_out else ""
    if not kept:
        nan = float("nan")
        return DifferenceResult(nan, nan, nan, nan, nan, nan, 0, 0, "none", note or "no samples")
    za = [standard_scores(method, g[0]) for g in kept]
    zb = [standard_scores(method, g[1]) for g in kept]
    hs = [g[2] for g in kept]
    r_a, r_b = float(combined_along(za, hs, method)), float(combined_along(zb, hs, method))
    observed = r_a - r_b
    sizes = [g[0].size for g in kept]
    n = int(sum(sizes))
    if n > LARGE_N:
        return _difference_normal(za, zb, hs, method, observed, r_a, r_b, confidence, len(kept), note)

    # Swap patterns: rows of (patterns, n) booleans, True = the sample's two standard scores exchanged.
    if 2**n <= EXACT_MAX_SWAPS:
        swaps = ((np.arange(2**n)[:, None] >> np.arange(n)) & 1).astype(bool)
        extra, p_method = 0, f"exact ({2**n} swap patterns)"
    else:
        swaps = np.random.default_rng([seed, SWAP_STREAM]).random((n_resamples, n)) < 0.5
        extra, p_method = 1, f"Monte Carlo ({n_resamples} swap patterns)"
    bounds = np.cumsum([0, *sizes])
    sa = [np.where(swaps[:, i:j], y, x) for x, y, i, j in zip(za, zb, bounds[:-1], bounds[1:])]
    sb = [np.where(swaps[:, i:j], x, y) for x, y, i, j in zip(za, zb, bounds[:-1], bounds[1:])]
    null = combined_along(sa, hs, method) - combined_along(sb, hs, method)
    tol = 1e-12 * max(1.0, abs(observed))
    p = (extra + np.sum(np.abs(null) >= abs(observed) - tol)) / (null.size + extra)

    idx = _resample_indices(sizes, n_boot, seed)
    zh = [standard_scores(method, g[2][i]) for g, i in zip(kept, idx)]  # shared by both correlations
    boot = (pooled_r([standard_scores(method, g[0][i]) for g, i in zip(kept, idx)], zh)
            - pooled_r([standard_scores(method, g[1][i]) for g, i in zip(kept, idx)], zh))
    low, high = _percentile(boot, confidence)
    if not np.isfinite(low):
        note = "; ".join(filter(None, ["CI not estimable: every bootstrap resample gives the same difference", note]))
    return DifferenceResult(observed, r_a, r_b, float(min(1.0, p)), low, high, n, len(kept), p_method, note)


def _difference_normal(za: list, zb: list, hs: list, method: Method, observed: float, r_a: float, r_b: float,
                       confidence: float, n_models: int, note: str) -> DifferenceResult:
    """:func:`paired_difference` above :data:`LARGE_N` samples: the difference's normal-theory variance.

    Per model i, the variance of ``r_ah - r_bh`` (two correlations sharing H) is
    ``((1 - r_ah^2)^2 + (1 - r_bh^2)^2 - 2 psi) / n_i`` with Steiger's (1980) covariance term
    ``psi = r_ab (1 - r_ah^2 - r_bh^2) - r_ah r_bh (1 - r_ah^2 - r_bh^2 - r_ab^2) / 2``, on the scores' ranks for
    Spearman; the combined difference ``sum_i w_i (r_ah,i - r_bh,i)`` (``w_i = n_i / n``) has variance
    ``sum_i w_i^2 var_i``. p: two-sided normal; CI: the difference +- its normal quantile times that sd."""
    sizes = np.array([a.size for a in za], dtype=np.float64)
    w = sizes / sizes.sum()
    zh = [standard_scores(method, h) for h in hs]
    var = 0.0
    for wi, ni, a, b, h in zip(w, sizes, za, zb, zh):
        rah, rbh, rab = (float(pearson_along(x, y)) for x, y in ((a, h), (b, h), (a, b)))
        psi = rab * (1 - rah**2 - rbh**2) - rah * rbh * (1 - rah**2 - rbh**2 - rab**2) / 2
        var += wi**2 * max((1 - rah**2) ** 2 + (1 - rbh**2) ** 2 - 2 * psi, 0.0) / ni
    n = int(sizes.sum())
    how = normal_p_text(n, "; Steiger's variance")
    if var <= 0:
        nan = float("nan")
        return DifferenceResult(observed, r_a, r_b, nan, nan, nan, n, n_models, how,
                                "; ".join(filter(None, ["the two scores' standard scores are identical", note])))
    sd = math.sqrt(var)
    q = float(stats.norm.ppf(0.5 + confidence / 2))
    p = float(min(1.0, 2 * stats.norm.sf(abs(observed) / sd)))
    return DifferenceResult(observed, r_a, r_b, p, observed - q * sd, observed + q * sd, n, n_models, how, note)


# --- 2. system-level pairwise accuracy ------------------------------------------------------------------------
def pairwise_accuracy(score_means: ArrayLike, quality_means: ArrayLike, epsilon: float = EPSILON) -> np.ndarray:
    """Share of model pairs ordered alike by score and quality means, along the last axis (the m models).

    A pair is a tie on a side when its two means differ by at most ``epsilon``; it agrees when both sides tie,
    or neither ties and the differences have the same sign. Shape: the leading axes; NaN with fewer than 2 models
    or a NaN mean.
    """
    s, q = np.asarray(score_means, dtype=np.float64), np.asarray(quality_means, dtype=np.float64)
    m = s.shape[-1]
    if m < 2:
        return np.full(s.shape[:-1], np.nan)
    i, j = np.triu_indices(m, k=1)
    ds, dq = s[..., i] - s[..., j], q[..., i] - q[..., j]
    sign_s = np.where(np.abs(ds) <= epsilon, 0, np.sign(ds))
    sign_q = np.where(np.abs(dq) <= epsilon, 0, np.sign(dq))
    acc = (sign_s == sign_q).mean(axis=-1)
    return np.where(np.isnan(ds).any(axis=-1) | np.isnan(dq).any(axis=-1), np.nan, acc)


@dataclass(frozen=True)
class AccuracyResult:
    """System-level pairwise accuracy of a score against quality.

    Attributes:
        accuracy: share of model pairs ordered alike, in [0, 1]; NaN with fewer than 2 models.
        ci_low, ci_high: percentile bootstrap interval (samples resampled within models).
        p_value: one-sided permutation p (pairing of score and quality means permuted over models), in (0, 1].
        n_models, n_pairs: models and model pairs; score_ties, quality_ties: tied pairs on each side.
        epsilon: the tie tolerance; p_method: e.g. ``"exact (24 pairings)"``; note: why a value is missing.
    """

    accuracy: float
    ci_low: float
    ci_high: float
    p_value: float
    n_models: int
    n_pairs: int
    score_ties: int
    quality_ties: int
    epsilon: float
    p_method: str
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def system_accuracy(
    score: ArrayLike, quality: ArrayLike, groups: ArrayLike, *, units: ArrayLike | None = None,
    epsilon: float = EPSILON, resampling: Resampling = Resampling(),
) -> AccuracyResult:
    """Pairwise accuracy of the models' mean score against their mean quality, with a bootstrap CI and a p.

    Args:
        score, quality: (n,) per-sample values (quality oriented: higher is better); samples with a NaN in
            either are dropped, so both means of a model are over the same samples.
        groups: (n,) model of each sample.
        units: (n,) input of each sample (its sample id). When every model has the same inputs, a bootstrap
            resample draws inputs, the same ones for every model (models compared on the same inputs stay
            paired, so a score equal across models on an input, like its region area, keeps its ties);
            otherwise, and without ``units``, each model's samples are resampled on their own.
        epsilon: tie tolerance of :func:`pairwise_accuracy`.
        resampling: ``n_boot``, ``confidence``, ``seed``: bootstrap settings; ``n_permutations``: Monte-Carlo
            pairings above 8 models (drawn with ``seed`` too).
    """
    n_boot, n_permutations = resampling.n_boot, resampling.n_permutations
    confidence, seed = resampling.confidence, resampling.seed
    s, q, g = np.asarray(score, dtype=np.float64), np.asarray(quality, dtype=np.float64), np.asarray(groups)
    ok = np.isfinite(s) & np.isfinite(q)
    models = [m for m in np.unique(g[ok])]
    parts = [(s[ok & (g == m)], q[ok & (g == m)]) for m in models]
    k = len(parts)
    if k < 2:
        nan = float("nan")
        return AccuracyResult(nan, nan, nan, nan, k, 0, 0, 0, epsilon, "none", "fewer than 2 models")
    sm, qm = np.array([p[0].mean() for p in parts]), np.array([p[1].mean() for p in parts])
    acc = float(pairwise_accuracy(sm, qm, epsilon))
    i, j = np.triu_indices(k, k=1)
    ties_s, ties_q = int((np.abs(sm[i] - sm[j]) <= epsilon).sum()), int((np.abs(qm[i] - qm[j]) <= epsilon).sum())

    if math.factorial(k) <= math.factorial(EXACT_MAX_MODELS):
        orders = np.asarray(list(itertools.permutations(range(k))))
        extra, p_method = 0, f"exact ({len(orders)} pairings)"
    else:
        rng = np.random.default_rng([seed, PAIRING_STREAM])
        orders = np.argsort(rng.random((n_permutations, k)), axis=1)
        extra, p_method = 1, f"Monte Carlo ({n_permutations} pairings)"
    null = pairwise_accuracy(sm[orders], qm, epsilon)
    p = (extra + np.sum(null >= acc - 1e-12)) / (null.size + extra)

    shared = _shared_inputs(g[ok], None if units is None else np.asarray(units)[ok], models)
    if shared is not None:  # (k, U) positions of each model's sample of every input, in the same input order
        draw = _resample_indices([shared.shape[1]], n_boot, seed)[0]
        idx = [row[draw] for row in shared]
        parts = [(s[ok], q[ok])] * k
    else:
        idx = _resample_indices([p_[0].size for p_ in parts], n_boot, seed)
    boot_s = np.stack([p_[0][i_].mean(axis=1) for p_, i_ in zip(parts, idx)], axis=1)
    boot_q = np.stack([p_[1][i_].mean(axis=1) for p_, i_ in zip(parts, idx)], axis=1)
    low, high = _percentile(pairwise_accuracy(boot_s, boot_q, epsilon), confidence)
    note = "" if np.isfinite(low) else "CI not estimable: every bootstrap resample gives the same accuracy"
    if units is not None and shared is None:
        note = "; ".join(filter(None, [note, "models do not share their inputs: samples resampled per model"]))
    return AccuracyResult(acc, low, high, float(p), k, int(i.size), ties_s, ties_q, epsilon, p_method, note)


def _shared_inputs(groups: np.ndarray, units: np.ndarray | None, models: list) -> np.ndarray | None:
    """(models, inputs) positions into the samples when every model has each input exactly once, else None."""
    if units is None:
        return None
    inputs = np.unique(units)
    rows = []
    for m in models:
        pos = np.flatnonzero(groups == m)
        if pos.size != inputs.size or not np.array_equal(np.sort(units[pos]), inputs):
            return None
        rows.append(pos[np.argsort(units[pos])])
    return np.stack(rows)


# --- 3. power by simulation -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class PowerResult:
    """How many samples per model (or models) a planted correlation needs to be detected.

    Attributes:
        effect: the planted Spearman correlation.
        needed: the smallest grid value whose simulated power reaches ``target``; NaN when none on the grid does.
        power: simulated power at ``needed`` (at the largest grid value tried when none reaches the target).
        power_se: its Monte-Carlo standard error, sqrt(p (1 - p) / n_sims).
        mean_statistic, statistic_se: mean simulated statistic at that grid value and its Monte-Carlo SE.
        tried: {grid value: power} of every value simulated.
        n_sims, alpha, target: settings; design: what was simulated (models, samples per model).
    """

    effect: float
    needed: float
    power: float
    power_se: float
    mean_statistic: float
    statistic_se: float
    tried: dict
    n_sims: int
    alpha: float
    target: float
    design: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _copula_pearson(r: float) -> float:
    """The Gaussian copula's Pearson correlation whose Spearman correlation is ``r``."""
    return 2.0 * math.sin(math.pi * r / 6.0)


def _copula(rng: np.random.Generator, rho_s: float, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Two uniform (0, 1) arrays of ``shape`` with Spearman correlation ``rho_s`` (Gaussian copula)."""
    rho = _copula_pearson(rho_s)
    z1 = rng.standard_normal(shape)
    z2 = rho * z1 + math.sqrt(1.0 - rho * rho) * rng.standard_normal(shape)
    return special.ndtr(z1), special.ndtr(z2)


def _quantile(values: np.ndarray, u: np.ndarray) -> np.ndarray:
    """The empirical quantile function of ``values`` (linear between order statistics) at ``u`` in [0, 1]."""
    v = np.sort(values)
    return np.interp(u * (v.size - 1), np.arange(v.size), v)


def _rejects(null: np.ndarray, statistic: np.ndarray, alpha: float, exact: bool) -> np.ndarray:
    """Whether each two-sided test rejects at ``alpha``: its p, the share of the null's |values| reaching
    |statistic| (``(1 + hits) / (1 + draws)`` for a simulated null), is at most ``alpha``. NaN never rejects."""
    null_abs = np.sort(np.abs(null[np.isfinite(null)]))
    obs = np.abs(statistic)
    hits = null_abs.size - np.searchsorted(null_abs, obs - 1e-12 * np.maximum(1.0, obs), side="left")
    p = hits / null_abs.size if exact else (1 + hits) / (1 + null_abs.size)
    return np.isfinite(statistic) & (p <= alpha)


def _search(grid: Sequence[int], power_at, target: float) -> tuple[float, int]:
    """The smallest value whose power reaches ``target`` (NaN if no grid value does) and the value whose power is
    reported: the first grid value reaching it, then bisection on the integers down to the grid value before."""
    low = None
    for value in grid:
        if power_at(value) >= target:
            high = value
            while low is not None and high - low > 1:
                mid = (low + high) // 2
                low, high = (low, mid) if power_at(mid) >= target else (mid, high)
            return float(high), high
        low = value
    return float("nan"), grid[-1]


def power_within(
    x: ArrayLike, y: ArrayLike, groups: ArrayLike, effect: float, *, alpha: float = 0.05, target: float = 0.8,
    n_sims: int = 400, grid: Sequence[int] = N_GRID, seed: int = 0,
) -> PowerResult:
    """Samples per model needed to detect a within-model Spearman ``effect`` (combined over the task's models).

    Args:
        x, y: (n,) the task's per-sample score and quality; their per-model empirical distributions are the
            simulated marginals (NaN dropped). groups: (n,) model of each sample.
        effect: planted Spearman correlation in (-1, 1).
        alpha: two-sided level; target: power to reach; n_sims: simulations per grid value (and as many under
            the null, which gives each simulated test its p); grid: samples per model tried, increasing;
            seed: of the draws.
    """
    xa, ya, g = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64), np.asarray(groups).astype(str)
    marginals = [(xa[(g == m) & np.isfinite(xa)], ya[(g == m) & np.isfinite(ya)]) for m in np.unique(g)]
    marginals = [(a, b) for a, b in marginals if a.size >= 2 and b.size >= 2]
    cache: dict[int, tuple[float, float, float]] = {}

    def simulate(n: int, rho_s: float, stream: int) -> np.ndarray:
        rng = np.random.default_rng([seed, n, stream])
        xs, ys = [], []
        for a, b in marginals:
            u, v = _copula(rng, rho_s, (n_sims, n))
            xs.append(_quantile(a, u))
            ys.append(_quantile(b, v))
        return combined_along(xs, ys, "spearman")

    def power_at(n: int) -> float:
        null, alt = simulate(n, 0.0, 0), simulate(n, effect, 1)
        cache[n] = (float(np.mean(_rejects(null, alt, alpha, exact=False))), float(np.nanmean(alt)),
                    float(np.nanstd(alt) / math.sqrt(n_sims)))
        return cache[n][0]

    design = f"{len(marginals)} models, samples per model on the grid"
    if not marginals:
        nan = float("nan")
        return PowerResult(effect, nan, nan, nan, nan, nan, {}, n_sims, alpha, target, "no model with data")
    needed, last = _search(grid, power_at, target)
    power, mean_stat, stat_se = cache[last]
    return PowerResult(effect, needed, power, math.sqrt(power * (1 - power) / n_sims), mean_stat, stat_se,
                       {k: v[0] for k, v in cache.items()}, n_sims, alpha, target, design)


def power_between(
    x: ArrayLike, y: ArrayLike, groups: ArrayLike, effect: float = 0.8, *, alpha: float = 0.05, target: float = 0.8,
    n_sims: int = 400, grid: Sequence[int] = M_GRID, n_per_model: int | None = None, seed: int = 0,
) -> PowerResult:
    """Models needed to detect a between-model Spearman ``effect`` from model means of ``n_per_model`` samples.

    The true model means of score and quality have Spearman ``effect`` (Gaussian copula) and the spread (SD) of
    the task's model means; each observed mean adds the mean of ``n_per_model`` within-model deviations
    (sample minus its model's mean) of the task, resampled as (score, quality) pairs.

    Args:
        x, y: (n,) the task's per-sample score and quality (samples with a NaN in either are dropped).
        groups: (n,) model of each sample (at least 2 models).
        effect: planted Spearman correlation of the true model means.
        alpha: two-sided level of the Spearman permutation test (all m! pairings up to :data:`NULL_DRAWS`,
            that many random ones beyond);
            target, n_sims, grid (models tried), seed: as in :func:`power_within`.
        n_per_model: samples behind each mean; default the task's median per model.
    """
    xa, ya, g = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64), np.asarray(groups).astype(str)
    ok = np.isfinite(xa) & np.isfinite(ya)
    xa, ya, g = xa[ok], ya[ok], g[ok]
    models = np.unique(g)
    if models.size < 2:
        nan = float("nan")
        return PowerResult(effect, nan, nan, nan, nan, nan, {}, n_sims, alpha, target, "fewer than 2 models")
    sizes = np.array([(g == m).sum() for m in models])
    n = int(n_per_model or np.median(sizes))
    mx, my = np.array([xa[g == m].mean() for m in models]), np.array([ya[g == m].mean() for m in models])
    deviations = np.stack([xa - mx[np.searchsorted(models, g)], ya - my[np.searchsorted(models, g)]], axis=1)
    sd_x, sd_y = mx.std(ddof=1), my.std(ddof=1)
    cache: dict[int, tuple[float, float, float]] = {}

    def power_at(m: int) -> float:
        rng = np.random.default_rng([seed, m])
        u, v = _copula(rng, effect, (n_sims, m))
        noise = deviations[rng.integers(0, deviations.shape[0], size=(n_sims, m, n))].mean(axis=2)
        obs_x = sd_x * special.ndtri(u) + noise[..., 0]
        obs_y = sd_y * special.ndtri(v) + noise[..., 1]
        rho = statistic_along("spearman", obs_x, obs_y)
        ranks = np.arange(m, dtype=np.float64)
        exact = math.factorial(m) <= NULL_DRAWS
        orders = (np.asarray(list(itertools.permutations(range(m))), dtype=np.float64) if exact else
                  np.argsort(np.random.default_rng([seed, m, 1]).random((NULL_DRAWS, m)), axis=1).astype(np.float64))
        null = statistic_along("spearman", orders, ranks)
        cache[m] = (float(np.mean(_rejects(null, rho, alpha, exact))), float(np.nanmean(rho)),
                    float(np.nanstd(rho) / math.sqrt(n_sims)))
        return cache[m][0]

    needed, last = _search(grid, power_at, target)
    power, mean_stat, stat_se = cache[last]
    return PowerResult(effect, needed, power, math.sqrt(power * (1 - power) / n_sims), mean_stat, stat_se,
                       {k: v[0] for k, v in cache.items()}, n_sims, alpha, target,
                       f"{n} samples per model, true means spread as the task's {models.size} model means")
