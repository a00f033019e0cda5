"""Within- versus between-model correlation of attribution scores with output quality.

A correlation over samples pooled across models mixes two questions, and
with models of different quality it is driven by the second:

* **within a model**: for a fixed model, do samples with a higher score have
  a higher quality? ("does IMACS rank samples?")
* **between models**: do models with a higher mean score have a higher mean
  quality? ("does IMACS rank models?")

:func:`within_between` answers both for every (score, quality) pair of every
task, as one tidy frame with a ``scope`` column:

``pooled``
    all complete (score, quality) pairs of all models together;
``within:<model>``
    the pairs of one model (:func:`benchmark.analysis.correlation.correlation`);
``within (combined)``
    (:func:`within_combined`) the per-model coefficients pooled by Fisher's z: ``tanh(sum_i w_i
    atanh(r_i) / sum_i w_i)`` with ``w_i = n_i - 3`` over models with
    ``n_i >= 4`` and a defined ``r_i`` (``|r_i|`` capped at 1 - 1e-7 so that
    ``atanh`` stays finite). Its p-value comes from a stratified permutation
    test (quality permuted within each model, seeded Monte Carlo: scipy has no
    stratified permutation test); its CI from a stratified BCa bootstrap
    (each model's pairs resampled on their own, ``scipy.stats.bootstrap``);
``between models``
    one point per model: its mean score against its mean quality (each mean
    over the samples where that metric is defined, as on the leaderboard);
    n is the number of models, and below 5 models there is no CI.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from benchmark.analysis.bootstrap import bootstrap_ci
from benchmark.analysis.correlation import METHODS, CorrelationResult, Method, correlation, statistic_along
from benchmark.analysis.format import format_ci, format_p, format_value, label

__all__ = [
    "ATTRIBUTION_SCORES",
    "QUALITY_METRICS",
    "RESULT_COLUMNS",
    "WITHIN_BETWEEN_NOTE",
    "paired_wide",
    "render_within_between",
    "result_row",
    "within_between",
    "within_combined",
]

ATTRIBUTION_SCORES: tuple[str, ...] = ("imacs_g", "imacs_r")
QUALITY_METRICS: tuple[str, ...] = ("masked_psnr", "masked_ssim", "psnr", "ssim")
RESULT_COLUMNS = ["statistic", "p_value", "ci_low", "ci_high", "n", "n_dropped", "p_method", "ci_method", "note"]
R_CAP = 1.0 - 1e-7

WITHIN_BETWEEN_NOTE = (
    "Within-model rows answer *does IMACS rank samples?* (for one model, do its better-scored samples have "
    "better quality?); the between-models row answers *does IMACS rank models?* (one point per model); "
    "the pooled row mixes both and, when models differ in quality, mostly reflects the differences between models."
)


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
        a NaN): a group is left out when it has fewer than 4 complete pairs or
        a constant x or y (its correlation is undefined).
    """
    xa, ya, ga = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64), np.asarray(groups)
    if xa.ndim != 1 or xa.shape != ya.shape or ga.shape != xa.shape:
        raise ValueError(f"x, y and groups must be 1-D of equal length, got {xa.shape}, {ya.shape}, {ga.shape}")
    complete = np.isfinite(xa) & np.isfinite(ya)
    xs, ys, left_out = [], [], []
    for level in np.unique(ga):
        m = complete & (ga == level)
        if m.sum() >= 4 and np.ptp(xa[m]) > 0 and np.ptp(ya[m]) > 0:
            xs.append(xa[m])
            ys.append(ya[m])
        else:
            left_out.append(str(level))
    return xs, ys, left_out, int((~complete).sum())


def _combined_statistic(method: Method, xs: list[np.ndarray], ys: list[np.ndarray], axis: int = -1) -> np.ndarray:
    """Fisher-z mean (weights n_i - 3) of per-group coefficients along ``axis``; NaN if any group's is NaN."""
    zs, ws = [], []
    for x, y in zip(xs, ys):
        r = np.clip(statistic_along(method, x, y, axis=axis), -R_CAP, R_CAP)
        zs.append(np.arctanh(r))
        ws.append(x.shape[axis] - 3.0)
    w = np.asarray(ws)
    return np.tanh(sum(wi * zi for wi, zi in zip(w, zs)) / w.sum())


def within_combined(
    x: ArrayLike,
    y: ArrayLike,
    groups: ArrayLike,
    method: Method = "spearman",
    *,
    n_boot: int = 2000,
    n_permutations: int = 9999,
    confidence: float = 0.95,
    seed: int = 0,
) -> CorrelationResult:
    """Stratified within-group correlation: Fisher-z mean of per-group coefficients (see the module docstring).

    Groups with fewer than 4 complete pairs or an undefined correlation are
    left out and named in ``note``; never raises on data.

    Args:
        x, y: (n,) paired values, NaN allowed (such pairs are dropped and counted).
        groups: (n,) group label per pair (the model).
        method: ``"spearman"`` or ``"pearson"``.
        n_boot: stratified bootstrap resamples (each group resampled on its own).
        n_permutations: stratified permutations (y permuted within each group).
        confidence: interval coverage in (0, 1).
        seed: seed of the permutations and the resampling.

    Returns:
        A :class:`CorrelationResult`; ``n`` is the number of pairs in the kept groups.
    """
    xs, ys, left_out, n_dropped = _group_pairs(x, y, groups)
    if not xs:
        return CorrelationResult.undefined(method, 0, n_dropped, n_boot, confidence,
                                           "no model has 4 or more complete pairs with a defined correlation")
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; expected one of {METHODS}")
    statistic = float(_combined_statistic(method, xs, ys))
    n = int(sum(x.size for x in xs))

    # Stratified permutation test: pairings are shuffled inside each group only,
    # so differences between groups never enter the null distribution.
    rng = np.random.default_rng(seed)
    null = np.empty(n_permutations)
    batch = max(1, min(n_permutations, 2_000_000 // max(x.size for x in xs)))
    for start in range(0, n_permutations, batch):
        b = min(batch, n_permutations - start)
        permuted = [rng.permuted(np.broadcast_to(y, (b, y.size)), axis=1) for y in ys]
        null[start:start + b] = _combined_statistic(method, [np.broadcast_to(x, (b, x.size)) for x in xs], permuted)
    tol = 1e-12 * max(1.0, abs(statistic))
    p_greater = (1 + np.sum(null >= statistic - tol)) / (n_permutations + 1)
    p_less = (1 + np.sum(null <= statistic + tol)) / (n_permutations + 1)
    p_value = float(min(1.0, 2 * min(p_greater, p_less)))

    def stat(*idx: np.ndarray, axis: int = -1) -> np.ndarray:
        return _combined_statistic(method, [x[i] for x, i in zip(xs, idx)], [y[i] for y, i in zip(ys, idx)], axis)

    ci = bootstrap_ci([np.arange(x.size) for x in xs], stat, paired=False, n_resamples=n_boot,
                      confidence=confidence, seed=seed)
    why = f"left out (fewer than 4 pairs or undefined): {', '.join(left_out)}" if left_out else ""
    return CorrelationResult(
        method, statistic, p_value, ci.low, ci.high, n, n_dropped,
        f"stratified Monte Carlo ({n_permutations} permutations within {len(xs)} groups)",
        f"stratified {ci.method}" if ci.method != "none" else "none", n_boot, confidence,
        "; ".join(filter(None, [ci.note, why])),
    )


def within_between(
    frame: pd.DataFrame,
    scores: Sequence[str] = ATTRIBUTION_SCORES,
    qualities: Sequence[str] = QUALITY_METRICS,
    methods: Sequence[Method] = ("spearman",),
    *,
    n_boot: int = 2000,
    n_permutations: int = 9999,
    confidence: float = 0.95,
    seed: int = 0,
) -> pd.DataFrame:
    """Pooled, within-model (per model and combined) and between-model correlations.

    Args:
        frame: tidy frame with columns ``task, model, sample_id, metric, value``
            (one row per sample and metric; NaN values allowed). Baseline
            models should already be removed.
        scores: attribution-score metric names (x).
        qualities: quality metric names (y). Pairs whose metrics are absent
            from a task are skipped.
        methods: any of ``"spearman"``, ``"pearson"``.
        n_boot, n_permutations, confidence, seed: see
            :func:`benchmark.analysis.correlation.correlation`.

    Returns:
        Tidy frame, per task, x, y and method: rows with ``scope`` ``pooled``,
        ``within:<model>`` (one per model, sorted), ``within (combined)`` and
        ``between models``; columns ``task, x, y, method, scope, model`` (the
        model for per-model rows, else None) and ``statistic, p_value, ci_low,
        ci_high, n, n_dropped, p_method, ci_method, note``.
    """
    wide = paired_wide(frame, [*scores, *qualities])
    kw = {"n_boot": n_boot, "n_permutations": n_permutations, "confidence": confidence, "seed": seed}
    rows: list[dict[str, Any]] = []
    for task, tf in wide.groupby("task", sort=True):
        for x in scores:
            for y in qualities:
                if tf[x].notna().any() and tf[y].notna().any():
                    for method in methods:
                        rows.extend(_task_rows(task, tf, x, y, method, kw))
    return pd.DataFrame(rows, columns=["task", "x", "y", "method", "scope", "model", *RESULT_COLUMNS])


def _task_rows(task: Any, tf: pd.DataFrame, x: str, y: str, method: Method, kw: dict) -> list[dict[str, Any]]:
    def row(scope: str, model: Any, res: CorrelationResult) -> dict[str, Any]:
        return result_row(res, task=task, x=x, y=y, method=method, scope=scope, model=model)

    rows = [row("pooled", None, correlation(tf[x], tf[y], method, **kw))]
    for model, g in tf.groupby("model", sort=True):
        rows.append(row(f"within:{model}", model, correlation(g[x], g[y], method, **kw)))
    combined = within_combined(tf[x], tf[y], tf["model"].astype(str).to_numpy(), method, **kw)
    rows.append(row("within (combined)", None, combined))
    means = tf.groupby("model", sort=True)[[x, y]].mean()
    rows.append(row("between models", None, correlation(means[x], means[y], method, level="model", **kw)))
    return rows


def render_within_between(frame: pd.DataFrame, labels: Mapping[str, str] | None = None) -> list[str]:
    """Markdown lines: the one-line reading guide, then per task one table of :func:`within_between` rows.

    Args:
        frame: output of :func:`within_between` (one task or several).
        labels: display names of metrics (e.g. ``imacs_g`` -> ``IMACS_g``); names are shown as-is otherwise.
    """
    if frame.empty:
        return []
    lines = [WITHIN_BETWEEN_NOTE, ""]
    for task, tf in frame.groupby("task", sort=False):
        if frame["task"].nunique() > 1:
            lines += [f"**{task}**", ""]
        lines += ["| x | y | method | scope | r | p | 95% CI | n | note |", "|---|---|---|---|---|---|---|---|---|"]
        for r in tf.itertuples(index=False):
            lines.append(
                f"| {label(r.x, labels)} | {label(r.y, labels)} | {r.method} | {r.scope} | "
                f"{format_value(r.statistic)} | {format_p(r.p_value)} | {format_ci(r.ci_low, r.ci_high)} | {r.n} | "
                f"{r.note} |"
            )
        lines.append("")
    return lines
