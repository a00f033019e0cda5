"""Within- versus between-model correlation of attribution scores with output quality.

A correlation over samples pooled across models mixes two questions, and
with models of different quality it is driven by the second:

* **within a model**: for a fixed model, do samples with a higher score have
  a higher quality? ("does IMACS rank samples?")
* **between models**: do models with a higher mean score have a higher mean
  quality? ("does IMACS rank models?")

:func:`within_between` answers both for every (score, quality) pair of every
task and for Spearman and Pearson, as one tidy frame with a ``scope`` column:

``pooled``
    all complete (score, quality) pairs of all models together;
``within:<model>``
    the pairs of one model (:func:`benchmark.analysis.correlation.correlation`);
``within (combined)``
    (:func:`within_combined`) ONE statistic with its own p-value and CI, so
    the three cannot disagree: within each model, score and quality are
    turned into standard scores (of their average ranks for Spearman, of the
    values for Pearson; population SD), then Pearson's r is taken over the
    standard scores of all models' pairs together. It equals the mean of the
    per-model coefficients weighted by each model's number of pairs
    (``sum_i n_i r_i / sum_i n_i``), so one perfect model cannot dominate.
    Its p-value is a stratified permutation test of that statistic (quality
    permuted within each model; every one of the ``prod_i n_i!`` within-model
    pairings up to 8! = 40,320 of them, seeded Monte Carlo beyond;
    :func:`benchmark.analysis.correlation.stratified_pvalue`); its CI a
    stratified bootstrap of that statistic (each model's pairs resampled on
    their own, standard scores redone per resample, BCa by
    ``scipy.stats.bootstrap``); above
    :data:`~benchmark.analysis.asymptotic.LARGE_N` pairs both are their normal
    approximations (:mod:`benchmark.analysis.asymptotic`). Models with fewer than 3 complete pairs or a
    constant score or quality are left out and named in ``note``;
``between models``
    one point per model: its mean score against its mean quality (each mean
    over the samples where that metric is defined, as on the leaderboard);
    n is the number of models.

Direction: a metric registered as lower-is-better (LPIPS, FID, KID, ...;
:func:`benchmark.registry.metric_direction`) enters every correlation negated,
``x_sign`` / ``y_sign`` = -1 in the frame, so a positive coefficient always
means "the score tracks better quality"; tables show it as ``−LPIPS``.

A CI that cannot be estimated (fewer than
:data:`~benchmark.analysis.correlation.MIN_PAIRS_FOR_CI` pairs or models, or
every bootstrap resample equal) is NaN with the reason in ``note`` and reads
``not estimable (n = 5)`` in the tables.
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
    MIN_PAIRS_FOR_CI,
    TOO_FEW_PAIRS,
    CorrelationResult,
    Method,
    correlation,
    fisher_ci,
    pearson_along,
    stratified_pvalue,
    zscores,
)
from benchmark.analysis.format import format_estimate, label, oriented_label, sign_note
from benchmark.analysis.resampling import Resampling
from benchmark.defaults import IMACS_SCORES
from benchmark.registry import metric_direction, quality_metric_order

__all__ = [
    "ATTRIBUTION_SCORES",
    "QUALITY_METRICS",
    "RESULT_COLUMNS",
    "WITHIN_BETWEEN_NOTE",
    "orientation",
    "paired_wide",
    "render_within_between",
    "result_row",
    "standard_scores",
    "within_between",
    "within_combined",
]

ATTRIBUTION_SCORES: tuple[str, ...] = IMACS_SCORES
QUALITY_METRICS: tuple[str, ...] = quality_metric_order()  # the registered ones, in the tables' order
RESULT_COLUMNS = ["statistic", "p_value", "ci_low", "ci_high", "n", "n_dropped", "p_method", "ci_method", "note"]
METHOD_NAMES = {"spearman": "Spearman", "pearson": "Pearson"}

WITHIN_BETWEEN_NOTE = (
    "Within-model rows answer *does IMACS rank samples?* (for one model, do its better-scored samples have "
    "better quality?); the between-models row answers *does IMACS rank models?* (one point per model); "
    "the pooled row mixes both and, when models differ in quality, mostly reflects the differences between models. "
    "*within (combined)* is one correlation over every model's samples of their within-model standard scores "
    "(of ranks for Spearman), i.e. the sample-weighted mean of the per-model coefficients; its p permutes and its "
    "CI resamples within each model."
)


def orientation(metric: str) -> int:
    """-1 for a metric registered as lower-is-better (it is correlated negated), 1 otherwise."""
    return -1 if metric_direction(metric) == "lower" else 1


def paired_wide(frame: pd.DataFrame, metrics: Sequence[str]) -> pd.DataFrame:
    """One row per (task, model, sample_id), one column per metric (NaN where missing).

    Args:
        frame: tidy frame with columns ``task, model, sample_id, metric, value``
            (one row per sample and metric).
        metrics: metric names to keep as columns (absent ones become all-NaN columns).

    Raises:
        ValueError: a missing column, or a duplicated (task, model, sample_id, metric) row.
    """
    need = ["task", "model", "sample_id", "metric", "value"]
    missing = [c for c in need if c not in frame.columns]
    if missing:
        raise ValueError(f"frame lacks columns {missing}; has {list(frame.columns)}")
    sub = frame.loc[frame["metric"].isin(list(metrics)), need]
    keys = ["task", "model", "sample_id", "metric"]
    dup = sub.duplicated(keys, keep=False)
    if dup.any():
        example = sub.loc[dup, keys].head(3).to_dict("records")
        raise ValueError(f"{int(dup.sum())} duplicated rows per (task, model, sample_id, metric), e.g. {example}")
    wide = sub.pivot(index=["task", "model", "sample_id"], columns="metric", values="value")
    wide = wide.reindex(columns=list(metrics)).astype(np.float64)
    wide.columns.name = None
    return wide.reset_index()


def result_row(res: CorrelationResult, **keys: Any) -> dict[str, Any]:
    """One row of a tidy result frame: ``keys``, then the :data:`RESULT_COLUMNS` of ``res``."""
    d = res.to_dict()
    return {**keys, **{c: d[c] for c in RESULT_COLUMNS}}


def _group_pairs(x: ArrayLike, y: ArrayLike, groups: ArrayLike) -> tuple[list, list, list[str], int]:
    """Complete (x, y) pairs per usable group, in sorted group order.

    Returns:
        (x per kept group, y per kept group, left-out group names, pairs with
        a NaN): a group is left out when it has fewer than :data:`MIN_PAIRS`
        complete pairs or a constant x or y (its correlation is undefined).
    """
    xa, ya, ga = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64), np.asarray(groups)
    if xa.ndim != 1 or xa.shape != ya.shape or ga.shape != xa.shape:
        raise ValueError(f"x, y and groups must be 1-D of equal length, got {xa.shape}, {ya.shape}, {ga.shape}")
    complete = np.isfinite(xa) & np.isfinite(ya)
    xs, ys, left_out = [], [], []
    for level in np.unique(ga):
        m = complete & (ga == level)
        if m.sum() >= MIN_PAIRS and np.ptp(xa[m]) > 0 and np.ptp(ya[m]) > 0:
            xs.append(xa[m])
            ys.append(ya[m])
        else:
            left_out.append(str(level))
    return xs, ys, left_out, int((~complete).sum())


def standard_scores(method: Method, v: np.ndarray) -> np.ndarray:
    """Standard scores along the last axis (population SD): of average ranks for Spearman, of the values for
    Pearson; 0 where that axis is constant (it then carries no within-model information)."""
    return zscores(stats.rankdata(v, axis=-1) if method == "spearman" else v)


def pooled_r(zx: Sequence[np.ndarray], zy: Sequence[np.ndarray]) -> np.ndarray:
    """Pearson r over all groups' standard scores together (broadcast over leading axes), a group constant in x or
    y (a bootstrap resample can be) left out; NaN when every group is. It is ``sum_i n_i r_i / sum_i n_i``."""
    sxx, syy = [(a * a).sum(axis=-1) for a in zx], [(b * b).sum(axis=-1) for b in zy]
    kept = [(u > 0) & (v > 0) for u, v in zip(sxx, syy)]
    num = sum(k * (a * b).sum(axis=-1) for k, a, b in zip(kept, zx, zy))
    den = np.sqrt(sum(k * u for k, u in zip(kept, sxx)) * sum(k * v for k, v in zip(kept, syy)))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, np.clip(num / np.where(den > 0, den, 1.0), -1.0, 1.0), np.nan)


def within_combined(
    x: ArrayLike,
    y: ArrayLike,
    groups: ArrayLike,
    method: Method = "spearman",
    *,
    resampling: Resampling = Resampling(),
) -> CorrelationResult:
    """Correlation of within-group standard scores over all groups, with a stratified p and CI (module docstring).

    Groups with fewer than :data:`MIN_PAIRS` complete pairs or a constant x
    or y are left out and named in ``note``; never raises on data.

    Args:
        x, y: (n,) paired values, NaN allowed (such pairs are dropped and counted).
        groups: (n,) group label per pair (the model).
        method: ``"spearman"`` (standard scores of within-group ranks) or ``"pearson"``.
        resampling: ``n_boot`` stratified bootstrap resamples (each group resampled
            on its own), ``n_permutations`` stratified Monte-Carlo permutations (y
            permuted within each group) when the within-group pairings are more than
            8!, the interval's ``confidence`` and the ``seed`` of both draws.

    Returns:
        A :class:`CorrelationResult`, statistic in [-1, 1]; ``n`` is the number
        of pairs in the kept groups.
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; expected one of {METHODS}")
    n_boot, confidence, seed = resampling.n_boot, resampling.confidence, resampling.seed
    xs, ys, left_out, n_dropped = _group_pairs(x, y, groups)
    why = (f"left out (fewer than {MIN_PAIRS} complete pairs, or a constant score or quality): "
           f"{', '.join(left_out)}" if left_out else "")
    if not xs:
        return CorrelationResult.undefined(method, 0, n_dropped, n_boot, confidence,
                                           f"no model has {MIN_PAIRS} or more complete pairs with a defined "
                                           "correlation")
    zx, zy = [standard_scores(method, v) for v in xs], [standard_scores(method, v) for v in ys]
    statistic = float(pooled_r(zx, zy))
    n = int(sum(v.size for v in xs))
    p_value, p_method = stratified_pvalue(zx, zy, n_permutations=resampling.n_permutations, seed=seed,
                                          strata="models")

    if n < MIN_PAIRS_FOR_CI:
        low, high, ci_method, ci_note = np.nan, np.nan, "none", f"{TOO_FEW_PAIRS} (n = {n} < {MIN_PAIRS_FOR_CI})"
    else:
        def stat(*idx: np.ndarray, axis: int = -1) -> np.ndarray:
            return pooled_r([standard_scores(method, v[i]) for v, i in zip(xs, idx)],
                             [standard_scores(method, v[i]) for v, i in zip(ys, idx)])

        if n > LARGE_N:  # Fisher's z of the pooled coefficient, its variance summed over the models
            ci = fisher_ci(method, [v.size for v in zx], [float(pearson_along(a, b)) for a, b in zip(zx, zy)],
                           statistic, confidence)
        else:
            ci = bootstrap_ci([np.arange(v.size) for v in xs], stat, paired=False, n_resamples=n_boot,
                              confidence=confidence, seed=seed)
        low, high, ci_note = ci.low, ci.high, ci.note
        ci_method = f"stratified {ci.method}" if ci.method != "none" else "none"
    return CorrelationResult(method, statistic, p_value, low, high, n, n_dropped, p_method, ci_method, n_boot,
                             confidence, "; ".join(filter(None, [ci_note, why])))


def within_between(
    frame: pd.DataFrame,
    scores: Sequence[str] = ATTRIBUTION_SCORES,
    qualities: Sequence[str] = QUALITY_METRICS,
    methods: Sequence[Method] = METHODS,
    *,
    resampling: Resampling = Resampling(),
) -> pd.DataFrame:
    """Pooled, within-model (per model and combined) and between-model correlations, oriented by direction.

    Args:
        frame: tidy frame with columns ``task, model, sample_id, metric, value``
            (one row per sample and metric; NaN values allowed). Baseline
            models should already be removed.
        scores: attribution-score metric names (x).
        qualities: quality metric names (y). Pairs whose metrics are absent
            from a task are skipped.
        methods: any of ``"spearman"``, ``"pearson"`` (both by default).
        resampling: see :func:`benchmark.analysis.correlation.correlation`.

    Returns:
        Tidy frame, per task, x, y and method: rows with ``scope`` ``pooled``,
        ``within:<model>`` (one per model, sorted), ``within (combined)`` and
        ``between models``; columns ``task, x, y, x_sign, y_sign, method, scope,
        model`` (the model for per-model rows, else None) and ``statistic,
        p_value, ci_low, ci_high, n, n_dropped, p_method, ci_method, note``.
        ``statistic`` (in [-1, 1]) and the CI are those of ``x_sign * x``
        against ``y_sign * y`` (:func:`orientation`: -1 for a lower-is-better
        metric), so a positive value means the score tracks better quality.
    """
    wide = paired_wide(frame, [*scores, *qualities])
    rows: list[dict[str, Any]] = []
    for task, tf in wide.groupby("task", sort=True):
        for x in scores:
            for y in qualities:
                if tf[x].notna().any() and tf[y].notna().any():
                    for method in methods:
                        rows.extend(_task_rows(task, tf, x, y, method, resampling))
    return pd.DataFrame(rows, columns=["task", "x", "y", "x_sign", "y_sign", "method", "scope", "model",
                                       *RESULT_COLUMNS])


def _task_rows(task: Any, tf: pd.DataFrame, x: str, y: str, method: Method,
               resampling: Resampling) -> list[dict[str, Any]]:
    sx, sy = orientation(x), orientation(y)
    xv, yv, models = sx * tf[x].to_numpy(), sy * tf[y].to_numpy(), tf["model"].astype(str).to_numpy()

    def row(scope: str, model: Any, res: CorrelationResult) -> dict[str, Any]:
        return result_row(res, task=task, x=x, y=y, x_sign=sx, y_sign=sy, method=method, scope=scope, model=model)

    rows = [row("pooled", None, correlation(xv, yv, method, resampling=resampling))]
    for model in sorted(set(tf["model"])):
        m = (tf["model"] == model).to_numpy()
        rows.append(row(f"within:{model}", model, correlation(xv[m], yv[m], method, resampling=resampling)))
    rows.append(row("within (combined)", None, within_combined(xv, yv, models, method, resampling=resampling)))
    means = pd.DataFrame({"x": xv, "y": yv, "model": tf["model"].to_numpy()}).groupby("model", sort=True).mean()
    rows.append(row("between models", None,
                    correlation(means["x"], means["y"], method, level="model", resampling=resampling)))
    return rows


def _notes(rows: pd.DataFrame) -> str:
    """The rows' notes, once when every method has the same, otherwise each after its method's name."""
    notes = {METHOD_NAMES.get(r.method, r.method): r.note for r in rows.itertuples(index=False) if r.note}
    if len(set(notes.values())) <= 1:
        return next(iter(notes.values()), "")
    return "; ".join(f"{name}: {note}" for name, note in notes.items())


def render_within_between(frame: pd.DataFrame, labels: Mapping[str, str] | None = None) -> list[str]:
    """Markdown lines: the reading guide, then per task one table of :func:`within_between` rows, one column
    per method (r [95% CI], p), lower-is-better metrics labelled ``−<label>`` and explained.

    Args:
        frame: output of :func:`within_between` (one task or several).
        labels: display names of metrics (e.g. ``imacs_g`` -> ``IMACS_g``); names are shown as-is otherwise.
    """
    if frame.empty:
        return []
    flipped = [label(m, labels) for m, sign in (*zip(frame.x, frame.x_sign), *zip(frame.y, frame.y_sign))
               if sign < 0]
    lines = [" ".join(filter(None, [WITHIN_BETWEEN_NOTE, sign_note(flipped)])), ""]
    methods = [m for m in METHODS if m in set(frame["method"])]
    for task, tf in frame.groupby("task", sort=False):
        if frame["task"].nunique() > 1:
            lines += [f"**{task}**", ""]
        lines += ["| x | y | scope | n | " + " | ".join(f"{METHOD_NAMES[m]}: r [95% CI], p" for m in methods)
                  + " | note |", "|---|---|---|---|" + "---|" * len(methods) + "---|"]
        for (x, y, scope), g in tf.groupby(["x", "y", "scope"], sort=False):
            by_method = {r.method: r for r in g.itertuples(index=False)}
            cells = [format_estimate(r.statistic, r.ci_low, r.ci_high, r.p_value, r.n) if (r := by_method.get(m))
                     else "n/a" for m in methods]
            names = (oriented_label(x, g["x_sign"].iloc[0], labels), oriented_label(y, g["y_sign"].iloc[0], labels))
            lines.append(f"| {names[0]} | {names[1]} | {scope} | {int(g['n'].max())} | " + " | ".join(cells)
                         + f" | {_notes(g)} |")
        lines.append("")
    return lines
