"""Which model is better: every pair of a task's tested models compared on the samples both have.

Every model of a task runs on the same samples, so two models are compared per sample, which removes the
between-sample spread that the leaderboard's unpaired CIs carry. Per pair and metric
(:func:`benchmark.analysis.paired.paired_test`): the mean difference ``a - b``, a paired bootstrap CI and a
sign-flip permutation p-value, Holm-adjusted over the pairs of the task for that metric. FID and KID are not
per-sample values: their difference is bootstrapped over the samples from the stored Inception features (the
same resampled samples for both models and the reference set), and its p-value inverts that bootstrap's
percentile interval. Random-init baselines are left out.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from benchmark.analysis.paired import holm, paired_test
from benchmark.analysis.resampling import Resampling
from benchmark.config import RunConfig, TaskConfig
from benchmark.defaults import IMACS_SCORES
from benchmark.registry import SET_METRICS, metric_direction, metric_label
from benchmark.report.render import ARROWS
from benchmark.report.store_view import StoreView

ALPHA = 0.05  # Holm-adjusted level; the CI has coverage 1 - ALPHA
MIN_SET_SAMPLES = 3  # FID needs a covariance and KID an unbiased MMD of at least this many samples
# Above this many shared samples a pair gets no FID / KID difference: the bootstrap holds (k, n, n) matrices and FID
# takes an n x n SVD per resample and model (cubic in n: about a day at a nightly's 3,300 samples per model).
MAX_SET_SAMPLES = 256
PAIR_COLUMNS = ["task", "model_a", "model_b", "metric", "direction", "n", "mean_diff", "ci_low", "ci_high", "p_value",
                "p_holm", "p_method", "ci_method", "better", "note"]

__all__ = ["ALPHA", "PAIR_COLUMNS", "SetFeatures", "pairs_frame", "render_pairs", "stored_features", "task_pairs"]


@dataclass(frozen=True)
class SetFeatures:
    """Stored Inception features of one task's models, for paired FID / KID differences.

    Attributes:
        metrics: the task's set metrics (``fid``, ``kid``) to compare.
        generated: model -> sample id -> (D,) features of its generated image.
        reference: sample id -> (D,) features of the sample's reference image.
        missing: model -> why it has no features (e.g. the Inception weights are absent).
    """

    metrics: tuple[str, ...] = ()
    generated: Mapping[str, Mapping[str, np.ndarray]] = field(default_factory=dict)
    reference: Mapping[str, np.ndarray] = field(default_factory=dict)
    missing: Mapping[str, str] = field(default_factory=dict)

    def unavailable(self, baselines: set[str] = frozenset()) -> str:
        """One line saying which tested models have no paired FID / KID and why; "" when none is missing."""
        missing = {m: why for m, why in self.missing.items() if m not in baselines}
        if not self.metrics or not missing:
            return ""
        reasons = "; ".join(sorted(set(missing.values())))
        return (f"{', '.join(metric_label(m) for m in self.metrics)}: no paired difference for "
                f"{', '.join(sorted(missing))} ({reasons})")


def stored_features(view: StoreView, task: TaskConfig) -> SetFeatures:
    """The features each model's jobs stored in ``set_inputs.npz`` for the samples the view uses."""
    from benchmark.metrics import SetInputs  # heavy: torch, matplotlib (benchmark.metrics.set_metrics)

    metrics = tuple(m.name for m in task.metrics if m.name in SET_METRICS)
    if not metrics:
        return SetFeatures()
    generated, reference, missing = {}, {}, {}
    for sm in view.of(task.name):
        feats, why = {}, set()
        for job in sm.jobs:
            path = job.dir / "set_inputs.npz"
            try:
                inputs = SetInputs.load(path)
            except OSError:
                why.add(f"no stored features ({path})")
                continue
            if inputs.inception_generated is None or inputs.inception_reference is None:
                why.add(inputs.notes.get("fid", "no features"))
                continue
            for i, s in job.kept_samples():
                feats[s["sample_id"]] = inputs.inception_generated[i]
                reference.setdefault(s["sample_id"], inputs.inception_reference[i])
        if why or not feats:
            missing[sm.model] = "; ".join(sorted(why)) or "no stored samples"
        else:
            generated[sm.model] = feats
    return SetFeatures(metrics, generated, reference, missing)


def task_pairs(cfg: RunConfig, view: StoreView, task: TaskConfig, frame: pd.DataFrame, quality: Sequence[str],
               resampling: Resampling) -> tuple[pd.DataFrame, str]:
    """:func:`pairs_frame` of one task with the report's ``resampling``, the config's KID scale and the stored
    features, and the line saying which tested models have no paired FID / KID (``""`` when none is missing)."""
    features = stored_features(view, task)
    pairs = pairs_frame(frame, task.name, view.baselines, quality, resampling, features=features,
                        kid_scale=cfg.metrics.kid_scale)
    return pairs, features.unavailable(view.baselines)


def pairs_frame(frame: pd.DataFrame, task: str, baselines: set[str], quality: Sequence[str],
                resampling: Resampling = Resampling(), *, features: SetFeatures | None = None,
                kid_scale: float = 1000.0) -> pd.DataFrame:
    """Every pair (a, b) of ``task``'s tested models on each metric, compared on the samples both have.

    Args:
        frame: the sample frame (:func:`benchmark.report.store_view.sample_frame` columns; other tasks ignored).
        task: task name.
        baselines: models left out (random-init copies).
        quality: the task's per-sample quality metrics; compared after IMACS_g and IMACS_r.
        resampling: as :func:`benchmark.analysis.paired.paired_test`, at confidence 1 - :data:`ALPHA` whatever
            it says; FID / KID draw its ``n_boot`` bootstrap resamples of the samples.
        features: stored features for FID / KID (:func:`stored_features`); pairs of models that both have them
            get rows, other pairs none.
        kid_scale: multiplies KID, as on the leaderboard.

    Returns:
        Columns :data:`PAIR_COLUMNS`: ``mean_diff`` is a - b (a before b by name); ``p_holm`` is Holm-adjusted
        over the task's pairs of that metric; ``better`` names the better model (direction-aware) where
        ``p_holm < ALPHA`` and the CI excludes 0, else "".
    """
    tf = frame[(frame.task == task) & ~frame.model.isin(baselines)]
    resampling = replace(resampling, confidence=1.0 - ALPHA)
    blocks = []
    stored = set(tf.metric)
    for metric in [m for m in (*IMACS_SCORES, *quality) if m in stored]:
        values = tf[tf.metric == metric].set_index(["sample_id", "model"])["value"].unstack("model")
        rows = []
        for a, b in itertools.combinations(sorted(values.columns), 2):
            r = paired_test(values[a].to_numpy(float), values[b].to_numpy(float), resampling=resampling)
            rows.append((a, b, r.n, r.mean, r.ci_low, r.ci_high, r.p_value, r.p_method, r.ci_method, r.note))
        blocks.append(_finish(task, metric, rows))
    if features is not None:
        models = sorted(m for m in features.generated if m not in baselines)
        for metric in features.metrics:
            blocks.append(_finish(task, metric, _set_rows(features, metric, models, resampling, kid_scale)))
    blocks = [b for b in blocks if not b.empty]
    return pd.concat(blocks, ignore_index=True) if blocks else pd.DataFrame(columns=PAIR_COLUMNS)


def _finish(task: str, metric: str, rows: list[tuple]) -> pd.DataFrame:
    """Rows of one metric with Holm-adjusted p-values and the better model of each pair."""
    out = pd.DataFrame(rows, columns=["model_a", "model_b", "n", "mean_diff", "ci_low", "ci_high", "p_value",
                                      "p_method", "ci_method", "note"])
    direction = metric_direction(metric)
    out = out.assign(task=task, metric=metric, direction=direction or "", p_holm=holm(out.p_value.to_numpy(float)))
    significant = (out.p_holm < ALPHA) & ((out.ci_low > 0) | (out.ci_high < 0)) & (direction is not None)
    a_better = out.mean_diff > 0 if direction == "higher" else out.mean_diff < 0
    out["better"] = np.where(significant, np.where(a_better, out.model_a, out.model_b), "")
    return out[PAIR_COLUMNS]


# --- FID / KID from features ---------------------------------------------------------------------------------
def _set_rows(features: SetFeatures, metric: str, models: list[str], resampling: Resampling,
              kid_scale: float) -> list[tuple]:
    """(a, b, n, mean, ci_low, ci_high, p, p_method, ci_method, note) of FID or KID of a minus that of b, for
    every pair of ``models``. Each model's bootstrap values are computed once per set of shared samples: the
    resamples depend only on (seed, n), so both models of a pair see the same samples and reference images."""
    n_boot, seed = resampling.n_boot, resampling.seed
    values: dict[tuple, tuple[float, np.ndarray]] = {}

    def of(model: str, ids: tuple[str, ...]) -> tuple[float, np.ndarray]:
        """(value on the shared samples, (n_boot,) values on the resamples)."""
        if (model, ids) not in values:
            n = len(ids)
            stat = _Gram(np.stack([features.generated[model][i] for i in ids]),
                         np.stack([features.reference[i] for i in ids]), metric, kid_scale)
            counts = np.random.default_rng(seed).multinomial(n, np.full(n, 1.0 / n), size=n_boot)
            values[model, ids] = float(stat(np.ones((1, n)))[0]), stat(counts)
        return values[model, ids]

    rows = []
    for a, b in itertools.combinations(models, 2):
        ids = tuple(sorted(set(features.generated[a]) & set(features.generated[b]) & set(features.reference)))
        n = len(ids)
        if n < MIN_SET_SAMPLES:
            rows.append((a, b, n, np.nan, np.nan, np.nan, np.nan, "none", "none",
                         f"fewer than {MIN_SET_SAMPLES} samples with both models' features"))
            continue
        if n > MAX_SET_SAMPLES:
            rows.append((a, b, n, np.nan, np.nan, np.nan, np.nan, "none", "none",
                         f"not computed: {n} samples > {MAX_SET_SAMPLES} (an n x n SVD per bootstrap resample)"))
            continue
        (value_a, boot_a), (value_b, boot_b) = of(a, ids), of(b, ids)
        diff, replicates = value_a - value_b, boot_a - boot_b
        if not (np.isfinite(diff) and np.isfinite(replicates).all()):
            rows.append((a, b, n, np.nan, np.nan, np.nan, np.nan, "none", "none", "features contain NaN or inf"))
            continue
        if np.ptp(replicates) == 0:
            rows.append((a, b, n, diff, np.nan, np.nan, np.nan, "none", "none", f"not estimable (n = {n})"))
            continue
        low, high = np.quantile(replicates, [ALPHA / 2.0, 1.0 - ALPHA / 2.0])
        # Inverts the percentile interval: p < ALPHA about when the 1 - ALPHA interval leaves out 0. (A swap
        # permutation test would cost an n x n SVD per swap and pair, against one per resample and model here.)
        other_side = np.count_nonzero(replicates <= 0 if diff > 0 else replicates >= 0)
        p = min(1.0, 2.0 * (1 + other_side) / (1 + n_boot))
        rows.append((a, b, n, diff, float(low), float(high), p, "bootstrap (percentile inversion)",
                     "paired bootstrap percentile over samples", ""))
    return rows


class _Gram:
    """FID or KID of resampled sets of one model's samples, from inner products alone.

    ``generated`` and ``reference``: (n, D) features of the same n samples. Called with (k, n) resample counts
    (how often each sample is drawn; each row sums to n), it returns the (k,) values of the k resampled sets,
    generated and reference rows resampled together. FID is exact: with centred feature rows X and Y, tr
    sqrt(cov X cov Y) is the nuclear norm of X Y^T / (n - 1), an n x n matrix instead of clean-fid's D x D
    ``sqrtm``; a sample drawn c times scales its row and column of that matrix by sqrt(c), which keeps its
    singular values. KID (times ``kid_scale``) is clean-fid's unbiased MMD^2 with the cubic kernel
    (x.y / D + 1)^3 over all n drawn samples, which is clean-fid's value when n <= 1000 (its subsets are then
    the whole set).
    """

    def __init__(self, generated: np.ndarray, reference: np.ndarray, metric: str, kid_scale: float):
        g, r = generated.astype(np.float64), reference.astype(np.float64)
        self.gg, self.gr, self.rr = g @ g.T, g @ r.T, r @ r.T
        if metric == "kid":  # kernel values replace the inner products
            self.gg, self.gr, self.rr = ((m / g.shape[1] + 1.0) ** 3 for m in (self.gg, self.gr, self.rr))
        self.metric, self.kid_scale = metric, kid_scale

    def __call__(self, counts: np.ndarray) -> np.ndarray:
        n = counts.shape[1]
        step = max(1, _BLOCK // (n * n))  # bounds the (k, n, n) matrices held at once
        return np.concatenate([self._values(counts[i:i + step].astype(np.float64))
                               for i in range(0, len(counts), step)])

    def _values(self, w: np.ndarray) -> np.ndarray:
        n = w.shape[1]
        total = {name: ((w @ m) * w).sum(axis=1) for name, m in (("gg", self.gg), ("gr", self.gr), ("rr", self.rr))}
        if self.metric == "kid":  # within-set means over ordered pairs of distinct draws
            gg = (total["gg"] - w @ np.diag(self.gg)) / (n * (n - 1))
            rr = (total["rr"] - w @ np.diag(self.rr)) / (n * (n - 1))
            return (gg + rr - 2 * total["gr"] / n**2) * self.kid_scale
        mean_gap = (total["gg"] - 2 * total["gr"] + total["rr"]) / n**2
        trace_gg = (w @ np.diag(self.gg) - total["gg"] / n) / (n - 1)
        trace_rr = (w @ np.diag(self.rr) - total["rr"] / n) / (n - 1)
        row, column = w @ self.gr.T / n, w @ self.gr / n  # (G R^T) w / n and w^T (G R^T) / n
        centred = self.gr[None] - row[:, :, None] - column[:, None, :] + (total["gr"] / n**2)[:, None, None]
        root = np.sqrt(w)
        nuclear = np.linalg.svd(root[:, :, None] * centred * root[:, None, :], compute_uv=False).sum(axis=1)
        return mean_gap + trace_gg + trace_rr - 2 * nuclear / (n - 1)


_BLOCK = 1 << 22  # entries of the (k, n, n) matrices evaluated at once (32 MiB each)


# --- rendering -----------------------------------------------------------------------------------------------
def render_pairs(pairs: pd.DataFrame, labels: Mapping[str, str], unavailable: str = "") -> list[str]:
    """The page's compact section: per metric the "significantly better than" ordering of the tested models,
    the number of samples, and the link to ``<task>_pairs.csv``; ``unavailable`` (one line) says why a set
    metric has no rows. Nothing when no pair was compared."""
    if pairs.empty and not unavailable:
        return []
    lines = ["## Which model is better (paired, same samples)", "",
             f"`A > B`: A is better on the samples both have, at Holm-adjusted p < {ALPHA:g} (sign-flip "
             f"permutation test; FID / KID: bootstrap) with the {1 - ALPHA:.0%} paired bootstrap CI of the "
             "difference excluding 0; models in one group are not separated. Random-init baselines left out.", ""]
    for metric, g in pairs.groupby("metric", sort=False):
        label = (labels.get(metric) or metric_label(metric)) + ARROWS.get(g.direction.iloc[0], "")
        n = f"{g.n.min()}" if g.n.min() == g.n.max() else f"{g.n.min()}-{g.n.max()}"
        lines.append(f"- {label} (n = {n}): {_ordering(g)}")
    if unavailable:
        lines.append(f"- {unavailable}")
    if not pairs.empty:
        name = pairs.task.iloc[0]
        lines += ["", f"Every pair with its difference, CI and p-values: [{name}_pairs.csv]({name}_pairs.csv)."]
    return lines + [""]


def _ordering(g: pd.DataFrame) -> str:
    """``full > ckpt-1125, ckpt-375 > cls-only`` from one metric's pairs: groups ordered so that every model of
    an earlier group is significantly better than every model of a later one; significant pairs inside a group
    are added after "also"."""
    wins = {(r.better, r.model_b if r.better == r.model_a else r.model_a) for r in g.itertuples() if r.better}
    if not wins:
        return "no pair differs significantly"
    sign = -1.0 if g.direction.iloc[0] == "lower" else 1.0
    score: dict[str, list[float]] = {}
    for r in g.itertuples():
        score.setdefault(r.model_a, []).append(sign * r.mean_diff)
        score.setdefault(r.model_b, []).append(-sign * r.mean_diff)
    models = sorted(score, key=lambda m: (-np.nanmean(score[m]) if np.isfinite(score[m]).any() else np.inf, m))
    groups = [[models[0]]]
    for m in models[1:]:
        if all((t, m) in wins for t in groups[-1]):
            groups.append([m])
        else:
            groups[-1].append(m)
    merged = True
    while merged:  # merge groups i..j when some model of group i is not better than some model of group j
        merged = False
        for i, j in itertools.combinations(range(len(groups)), 2):
            if any((x, y) not in wins for x in groups[i] for y in groups[j]):
                groups[i:j + 1] = [sum(groups[i:j + 1], [])]
                merged = True
                break
    inside = "; ".join(f"{x} > {y}" for grp in groups for x in grp for y in grp if (x, y) in wins)
    if len(groups) == 1:
        return f"no ordering of all models; significant pairs: {inside}"
    return " > ".join(", ".join(grp) for grp in groups) + (f"; also {inside}" if inside else "")
