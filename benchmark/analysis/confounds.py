"""Confound diagnostics: how much of a score-quality correlation is the size of the masks.

An attribution score can track the area of the inpainting region (or of the
reference region) and a quality metric can track it too; their correlation is
then the mask, not the metric. Per task, :func:`confounds` reports

* ``kind="area"``: the correlation of each attribution score and each quality
  metric with each area (``area_g``: share of the image inside the inpainting
  region; ``area_r``: share of the reference image inside the reference mask),
  pooled over the models' samples;
* ``kind="plain"``: the correlation of each score with each quality metric (pooled);
* ``kind="partial"``: the same pair with the areas partialled out
  (``controls="areas"``), and with the areas and the model partialled out
  (``controls="areas + model"``, model dummies: a within-model partial).

A lower-is-better metric enters negated (``x_sign`` / ``y_sign`` = -1, shown
as ``−LPIPS``), as in :mod:`benchmark.analysis.validity`, so a positive
score-quality value means the score tracks better quality.

:func:`partial_correlation` is the one computation. Spearman's partial
correlation is Pearson's partial correlation of ranks: x, y and every numeric
covariate are replaced by their average ranks; x and y are residualised by
least squares on an intercept, the covariates and (optionally) one dummy per
group; the statistic is Pearson's r of the two residual vectors. Its p-value
comes from permuting the pairing of the residuals (exact up to
:data:`~benchmark.analysis.correlation.EXACT_MAX_N` pairs; like every
residual-permutation test it ignores the covariates' degrees of freedom,
which is negligible when n is much larger than their number); its CI from a
BCa bootstrap of whole rows, ranks and regression redone in every resample.
Above :data:`~benchmark.analysis.asymptotic.LARGE_N` rows both are their normal
approximations (:mod:`benchmark.analysis.asymptotic`; Fisher's z with the
covariates' degrees of freedom).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from scipy import stats

from benchmark.analysis.asymptotic import LARGE_N
from benchmark.analysis.bootstrap import bootstrap_ci
from benchmark.analysis.correlation import (
    METHODS,
    MIN_PAIRS,
    CorrelationResult,
    Method,
    correlation,
    fisher_ci,
    pearson_along,
    permutation_pvalue,
)
from benchmark.analysis.format import format_estimate, label, oriented_label, sign_note
from benchmark.analysis.resampling import Resampling
from benchmark.analysis.validity import (
    ATTRIBUTION_SCORES,
    QUALITY_METRICS,
    RESULT_COLUMNS,
    orientation,
    paired_wide,
    result_row,
)

__all__ = ["AREAS", "confounds", "partial_correlation", "render_confounds"]

AREAS: tuple[str, ...] = ("area_g", "area_r")
BOOT_BATCH = 256  # resamples regressed at once: bounds memory at (batch, n, covariates)


def _residualise(v: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Least-squares residuals of v (..., n) on the columns of z (..., n, p); rank-deficient z is fine."""
    beta = np.linalg.pinv(z) @ v[..., None]
    return v - (z @ beta)[..., 0]


def _residuals(method: Method, x: np.ndarray, y: np.ndarray, cov: np.ndarray, dummies: np.ndarray) -> tuple:
    """(x, y, x residuals, y residuals) for stacked x, y (..., n), cov (..., n, k), dummies (..., n, d); x, y and
    cov ranked along the pairs for Spearman. The regressors are an intercept, cov and the dummies; the partial r
    is Pearson's r of the two residuals."""
    if method == "spearman":
        x, y = stats.rankdata(x, axis=-1), stats.rankdata(y, axis=-1)
        cov = stats.rankdata(cov, axis=-2) if cov.shape[-1] else cov
    z = np.concatenate([np.ones((*cov.shape[:-1], 1)), cov, dummies], axis=-1)
    return x, y, _residualise(x, z), _residualise(y, z)


def partial_correlation(
    x: ArrayLike,
    y: ArrayLike,
    covariates: ArrayLike | None = None,
    groups: ArrayLike | None = None,
    method: Method = "spearman",
    *,
    resampling: Resampling = Resampling(),
) -> CorrelationResult:
    """Partial correlation of x and y given numeric covariates and/or a group label.

    Args:
        x, y: (n,) paired values, any real range.
        covariates: (n,) or (n, k) numeric covariates (ranked too for Spearman), or None.
        groups: (n,) labels (e.g. the model): one dummy per group is
            partialled out (equivalent to centring x and y per group), or None.
        method: ``"spearman"`` (partial on ranks) or ``"pearson"``.
        resampling: as in :func:`benchmark.analysis.correlation.correlation`.

    Rows with NaN in x, y or any covariate are dropped and counted. With no
    covariates and no groups this is the plain correlation. Never raises on
    data: too few rows, or nothing left after partialling out, give NaN with
    the reason in ``note``.
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; expected one of {METHODS}")
    n_boot, confidence, seed = resampling.n_boot, resampling.confidence, resampling.seed
    xa, ya = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if xa.ndim != 1 or xa.shape != ya.shape:
        raise ValueError(f"x and y must be 1-D of equal length, got {xa.shape} and {ya.shape}")
    n_all = xa.size
    cov = np.zeros((n_all, 0)) if covariates is None else np.asarray(covariates, dtype=np.float64)
    cov = cov[:, None] if cov.ndim == 1 else cov
    if cov.shape[0] != n_all:
        raise ValueError(f"covariates have {cov.shape[0]} rows for {n_all} pairs")
    if groups is None:
        dummies = np.zeros((n_all, 0))
    else:
        g = np.asarray(groups)
        if g.shape != (n_all,):
            raise ValueError(f"groups must have shape ({n_all},), got {g.shape}")
        levels = np.unique(g)
        dummies = (g[:, None] == levels[None, 1:]).astype(np.float64)  # first level is the intercept's

    keep = ~(np.isnan(xa) | np.isnan(ya) | np.isnan(cov).any(axis=1))
    xs, ys, cs, ds = xa[keep], ya[keep], cov[keep], dummies[keep]
    n, n_dropped = int(keep.sum()), int((~keep).sum())
    n_params = 1 + cs.shape[1] + ds.shape[1]
    if n < max(MIN_PAIRS, n_params + 2):
        return CorrelationResult.undefined(method, n, n_dropped, n_boot, confidence,
                                           f"too few complete rows (n={n}) for {n_params} regressors")
    xt, yt, u, v = _residuals(method, xs, ys, cs, ds)
    # Residuals at round-off level mean the covariates explain x (or y) completely.
    explained = [name for name, t, e in (("x", xt, u), ("y", yt, v))
                 if np.linalg.norm(e) <= 1e-9 * max(np.linalg.norm(t - t.mean()), np.finfo(np.float64).tiny)]
    if explained:
        why = f"{' and '.join(explained)} fully explained by the covariates: no partial correlation defined"
        return CorrelationResult.undefined(method, n, n_dropped, n_boot, confidence, why)
    statistic = float(pearson_along(u, v))
    p_value, p_method = permutation_pvalue(u, v, n_permutations=resampling.n_permutations, seed=seed)

    def stat(idx: np.ndarray, axis: int = -1) -> np.ndarray:
        return pearson_along(*_residuals(method, xs[idx], ys[idx], cs[idx], ds[idx])[2:])

    if n > LARGE_N:  # Fisher's z with the k = n_params - 1 covariates' degrees of freedom: se 1 / sqrt(n - 3 - k)
        ci = fisher_ci(method, [n - n_params + 1], [statistic], statistic, confidence)
    else:
        ci = bootstrap_ci((np.arange(n),), stat, paired=True, n_resamples=n_boot, confidence=confidence, seed=seed,
                          batch=BOOT_BATCH)
    return CorrelationResult(method, statistic, p_value, ci.low, ci.high, n, n_dropped,
                             f"{p_method} of residuals", ci.method, n_boot, confidence, ci.note)


def confounds(
    frame: pd.DataFrame,
    scores: Sequence[str] = ATTRIBUTION_SCORES,
    qualities: Sequence[str] = QUALITY_METRICS,
    areas: Sequence[str] = AREAS,
    method: Method = "spearman",
    *,
    resampling: Resampling = Resampling(),
) -> pd.DataFrame:
    """Area correlations and area-partial correlations per task (see the module docstring).

    Args:
        frame: tidy frame with columns ``task, model, sample_id, metric, value``;
            the areas are metrics of each sample (values in [0, 1]). Metrics or
            areas absent from a task (or NaN everywhere) are skipped.
        scores, qualities: attribution-score and quality metric names.
        areas: area metric names to correlate with and to partial out.
        method: ``"spearman"`` or ``"pearson"``.
        resampling: as in :func:`benchmark.analysis.correlation.correlation`.

    Returns:
        Tidy frame with columns ``task, kind, x, y, x_sign, y_sign, controls,
        method`` and ``statistic, p_value, ci_low, ci_high, n, n_dropped,
        p_method, ci_method, note``. ``kind`` is ``area`` (y is the area),
        ``plain`` or ``partial``; ``controls`` is ``""``, ``"areas"`` or
        ``"areas + model"``; the statistic is that of ``x_sign * x`` against
        ``y_sign * y`` (-1 for a lower-is-better metric).
    """
    wide = paired_wide(frame, [*scores, *qualities, *areas])
    rows: list[dict[str, Any]] = []

    def add(task: Any, kind: str, x: str, y: str, controls: str, res: CorrelationResult) -> None:
        rows.append(result_row(res, task=task, kind=kind, x=x, y=y, x_sign=orientation(x), y_sign=orientation(y),
                               controls=controls, method=method))

    for task, tf in wide.groupby("task", sort=True):
        task_scores, task_qualities, task_areas = ([m for m in names if tf[m].notna().any()]
                                                   for names in (scores, qualities, areas))
        v = {m: orientation(m) * tf[m].to_numpy() for m in [*task_scores, *task_qualities, *task_areas]}
        for metric in [*task_scores, *task_qualities]:
            for area in task_areas:
                add(task, "area", metric, area, "", correlation(v[metric], v[area], method, resampling=resampling))
        cov = tf[task_areas].to_numpy()
        partials = [("areas", None), ("areas + model", tf["model"].astype(str).to_numpy())] if task_areas else []
        for x in task_scores:
            for y in task_qualities:
                add(task, "plain", x, y, "", correlation(v[x], v[y], method, resampling=resampling))
                for controls, groups in partials:
                    add(task, "partial", x, y, controls,
                        partial_correlation(v[x], v[y], cov, groups, method, resampling=resampling))
    return pd.DataFrame(rows, columns=["task", "kind", "x", "y", "x_sign", "y_sign", "controls", "method",
                                       *RESULT_COLUMNS])


def _cell(r: pd.Series) -> str:
    return format_estimate(r["statistic"], r["ci_low"], r["ci_high"], r["p_value"], r["n"])


def render_confounds(frame: pd.DataFrame, labels: Mapping[str, str] | None = None) -> list[str]:
    """Markdown lines per task: a table of correlations with the areas, then plain vs partial correlations.

    Args:
        frame: output of :func:`confounds`.
        labels: display names of metrics; names are shown as-is otherwise.
    """
    if frame.empty:
        return []
    flipped = [label(m, labels) for m, sign in (*zip(frame.x, frame.x_sign), *zip(frame.y, frame.y_sign))
               if sign < 0]
    lines: list[str] = [sign_note(flipped), ""] if flipped else []
    for task, tf in frame.groupby("task", sort=False):
        if frame["task"].nunique() > 1:
            lines += [f"**{task}**", ""]
        area = tf[tf["kind"] == "area"]
        if not area.empty:
            area_names = list(dict.fromkeys(area["y"]))
            lines += [f"Correlation ({area['method'].iloc[0]}, pooled over models) with the region areas "
                      "(`area_g`: share of the image inside the inpainting region; `area_r`: share of the "
                      "reference inside the reference mask):", "",
                      "| metric | " + " | ".join(area_names) + " | n |",
                      "|---|" + "---|" * len(area_names) + "---|"]
            for metric, mf in area.groupby("x", sort=False):
                by_area = {r["y"]: r for _, r in mf.iterrows()}
                cells = [_cell(by_area[a]) if a in by_area else "n/a" for a in area_names]
                name = oriented_label(metric, mf["x_sign"].iloc[0], labels)
                lines.append(f"| {name} | " + " | ".join(cells) + f" | {int(mf['n'].max())} |")
            lines.append("")
        pair = tf[tf["kind"].isin(["plain", "partial"])]
        if not pair.empty:
            lines += ["Score vs quality, plain and with the areas (and the model) partialled out; r [95% CI], p:", "",
                      "| x | y | plain | partial: areas | partial: areas + model | n |", "|---|---|---|---|---|---|"]
            for (x, y), pf in pair.groupby(["x", "y"], sort=False):
                get = {("plain" if r["kind"] == "plain" else r["controls"]): r for _, r in pf.iterrows()}
                cells = [_cell(get[k]) if k in get else "n/a" for k in ("plain", "areas", "areas + model")]
                n = int(get["plain"]["n"]) if "plain" in get else int(pf["n"].max())
                names = oriented_label(x, pf["x_sign"].iloc[0], labels), oriented_label(y, pf["y_sign"].iloc[0], labels)
                lines.append(f"| {names[0]} | {names[1]} | " + " | ".join(cells) + f" | {n} |")
            lines.append("")
    return lines
