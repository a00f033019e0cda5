"""Tidy frames the leaderboards are rendered from; pure functions of the store view and the sample frame."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from benchmark.analysis.bootstrap import summarise_means
from benchmark.analysis.resampling import Resampling
from benchmark.config import TaskConfig
from benchmark.defaults import IMACS_SCORES
from benchmark.registry import SAMPLE_METRICS, SET_METRICS, quality_metric_order
from benchmark.report.store_view import StoreView
from benchmark.store import write_atomic

AGG_COLUMNS = ["task", "model", "metric", "mean", "ci_low", "ci_high", "n", "n_undefined", "note"]
SET_COLUMNS = ["model", "metric", "value", "n", "label", "note"]


def write_csv(frame: pd.DataFrame, path: Path) -> Path:
    """A frame as CSV (no index, 6 significant digits), atomically."""
    return write_atomic(path, frame.to_csv(index=False, float_format="%.6g"))


def aggregate(frame: pd.DataFrame, resampling: Resampling) -> pd.DataFrame:
    """Per (task, model, metric): mean [bootstrap CI] over samples, n defined, n undefined and why."""
    return summarise_means(frame, ["task", "model", "metric"], resampling)[AGG_COLUMNS]


def quality_metrics(task: TaskConfig, frame: pd.DataFrame) -> list[str]:
    """The task's per-sample quality metrics present in the frame, in registration order
    (:func:`~benchmark.registry.quality_metric_order`): the first is the task's primary quality metric."""
    present = set(frame.loc[frame.task == task.name, "metric"])
    declared = {m.name for m in task.metrics}
    return [m for m in quality_metric_order() if m in declared and m in present]


def set_metrics(view: StoreView, task: TaskConfig, kid_scale: float) -> pd.DataFrame:
    """FID / KID per model of ``task`` from the stored Inception features against the stored reference-set
    features (clean-fid, mode ``clean``): a value with its implementation and n, or NaN with the reason."""
    from benchmark.metrics import ReferenceStatsCache, SetInputs  # heavy: torch (benchmark.metrics.set_metrics)

    wanted = [m.name for m in task.metrics if m.name in SET_METRICS]
    lpips_wanted = any(m.name == "lpips" for m in task.metrics)
    rows = []
    if not wanted and not lpips_wanted:
        return pd.DataFrame(columns=SET_COLUMNS)
    cache = ReferenceStatsCache()
    for sm in view.of(task.name):
        gen, ref, ref_ids, order, notes, lpips_notes = [], [], [], [], set(), set()
        for job in sm.jobs:
            path = f"{job.dir}/set_inputs.npz"
            try:
                inputs = SetInputs.load(path)
            except OSError:
                notes.add(f"no stored features ({path})")
                continue
            ids = [s["sample_id"] for s in job.record.samples]
            keep = [i for i, sid in enumerate(ids) if sid in job.keep]
            if inputs.lpips is None and "lpips" in inputs.notes:
                lpips_notes.add(inputs.notes["lpips"])
            if inputs.inception_generated is None or inputs.inception_reference is None:
                notes.add(inputs.notes.get("fid", "no features"))
                continue
            gen.append(inputs.inception_generated[keep])
            ref.append(inputs.inception_reference[keep])
            ref_ids += [ids[i] for i in keep]
            order += [job.record.samples[i]["index"] for i in keep]
        if lpips_wanted and lpips_notes:  # LPIPS is per sample; a row here only says why it is missing
            rows.append((sm.model, "lpips", np.nan, 0, "", "; ".join(sorted(lpips_notes))))
        if notes or not gen or not wanted:
            rows += [(sm.model, m, np.nan, 0, "", "; ".join(sorted(notes)) or "no stored samples") for m in wanted]
            continue
        # Dataset order, whatever order the shards finished in: KID sums float32 kernel terms, so the order of
        # the features moves it by up to ~3e-5 relative on small sets (and clean-fid reads a folder sorted).
        perm = np.argsort(order, kind="stable")
        key = {"dataset": f"{task.dataset.format}:{task.dataset.root}", "split": task.dataset.split,
               "size": list(task.dataset.size or ["native"]), "sample_ids": [ref_ids[i] for i in perm]}
        feats, computed = (np.concatenate(gen)[perm], np.concatenate(ref)[perm]), {}
        for m in wanted:  # each registered function once: FID and KID share one
            fn = SET_METRICS.get(m)
            if fn not in computed:
                computed[fn] = fn(*feats, kid_scale=kid_scale, cache=cache, cache_key_parts=key)
            out = computed[fn]
            rows.append((sm.model, m, out[m], out["n_generated"], out["label"], out.get("note", "")))
    return pd.DataFrame(rows, columns=SET_COLUMNS)


def main_table(task: TaskConfig, agg: pd.DataFrame, sets: pd.DataFrame, failures: pd.DataFrame,
               view: StoreView, quality: list[str], deltas: dict) -> pd.DataFrame:
    """One row per model of the task, every metric as mean / CI / change columns, n and failure counts; models
    ordered by IMACS_g (best first), failed models (no samples) last."""
    ta = agg[agg.task == task.name]
    metrics = [m for m in IMACS_SCORES if m in set(ta.metric)] + quality
    metrics += [m for m in SAMPLE_METRICS.names() if m in set(ta.metric) and m not in metrics
                and SAMPLE_METRICS.info(m).get("kind") != "covariate"]
    rows = []
    for sm in view.of(task.name):
        f = failures[(failures.task == task.name) & (failures.model == sm.model)]
        row = {"model": sm.model, "baseline": sm.baseline, "n": len(sm.sample_ids),
               "failed_samples": int((f.kind == "sample").sum()),
               "failed_jobs": int((f.kind != "sample").sum())}
        for m in metrics:
            r = ta[(ta.model == sm.model) & (ta.metric == m)]
            for stat, col in (("mean", m), ("ci_low", f"{m}_ci_low"), ("ci_high", f"{m}_ci_high")):
                row[col] = r[stat].iloc[0] if len(r) else np.nan
            row[f"{m}_change"] = deltas.get((task.name, sm.model, m), np.nan)
        for m in sets.metric.unique() if not sets.empty else []:
            s = sets[(sets.model == sm.model) & (sets.metric == m)]
            row[m] = s["value"].iloc[0] if len(s) else np.nan
        rows.append(row)
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    key = table["imacs_g"].fillna(-np.inf) if "imacs_g" in table else pd.Series(0, index=table.index)
    return table.assign(_k=-key, _none=table["n"] == 0).sort_values(["_none", "_k", "model"]).drop(
        columns=["_k", "_none"]).reset_index(drop=True)
