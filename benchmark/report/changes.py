"""Changes since the last comparable run, and the regressions among them (README "Regression alerts").

A nightly compares each model under test with its own previous state (:func:`store_view.previous_state`: other
weights under the same name, adapter, task version and generation key, holding the same samples) on the same
samples and seeds, so every test is paired per sample: d_i = new_i - old_i, a paired bootstrap CI of mean(d) at
confidence 1 - ``scoring.regression.alpha`` and a sign-flip permutation p
(:func:`benchmark.analysis.paired.paired_test`). A change is flagged ``regression`` when its CI excludes 0 on the
metric's worse side and |mean(d)| >= ``scoring.regression.min_effect[metric]``, ``improvement`` likewise on the
better side; anything else is a change, not an alert. Random-init baselines are not compared.

Frames: ``results/changes.csv`` (:data:`COLUMNS`, every comparison; ``direction`` is the metric's better direction)
and ``results/regressions.json`` (the flagged regressions, ``[]`` when none).
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pandas as pd

from benchmark.analysis.paired import PairedResult, paired_test
from benchmark.analysis.resampling import Resampling
from benchmark.registry import metric_direction
from benchmark.report.store_view import StoreView, previous_state, sample_frame
from benchmark.report.tables import quality_metrics, write_csv
from benchmark.store import write_atomic

COLUMNS = ["task", "model", "metric", "direction", "n", "delta", "ci_low", "ci_high", "p_value", "flagged",
           "old_model_hash", "new_model_hash", "old_run", "new_run", "note"]
CHANGES, REGRESSIONS = "changes.csv", "regressions.json"


def compare(view: StoreView, frame: pd.DataFrame, scores: tuple[str, ...], resampling: Resampling) -> pd.DataFrame:
    """One row per (task, model, metric) of every model under test that has a previous state: the paired change
    of ``scores`` and the task's quality metrics, resampled as ``resampling`` says at confidence
    1 - ``scoring.regression.alpha``. ``frame``: :func:`store_view.sample_frame` of ``view``."""
    reg = view.cfg.scoring.regression
    resampling = replace(resampling, confidence=1 - reg.alpha)
    rows = []
    for sm in view.models:
        if sm.baseline or not sm.records:
            continue
        old = previous_state(sm)
        if old is None:
            continue
        new_values = _by_sample(frame[(frame.task == sm.task) & (frame.model == sm.model)])
        old_values = _by_sample(sample_frame(view, [old]))
        for metric in [*scores, *quality_metrics(view.tasks[sm.task], frame)]:
            if metric not in new_values or metric not in old_values:
                continue
            pairs = pd.concat([new_values[metric], old_values[metric]], axis=1, join="inner")
            result = paired_test(pairs.iloc[:, 0].to_numpy(), pairs.iloc[:, 1].to_numpy(), resampling=resampling)
            if result.n == 0:  # no sample defined in both states (e.g. IMACS_r of a single reference token)
                continue
            direction = metric_direction(metric)
            rows.append({"task": sm.task, "model": sm.model, "metric": metric, "direction": direction,
                         "n": result.n, "delta": result.mean, "ci_low": result.ci_low, "ci_high": result.ci_high,
                         "p_value": result.p_value, "flagged": _flag(result, direction, reg.min_effect[metric]),
                         "old_model_hash": old.model_hash, "new_model_hash": sm.model_hash, "old_run": old.run_id,
                         "new_run": sm.run_id, "note": result.note})
    return pd.DataFrame(rows, columns=COLUMNS)


def _by_sample(frame: pd.DataFrame) -> pd.DataFrame:
    """Sample id x metric values of one model's rows of a sample frame."""
    return frame.pivot(index="sample_id", columns="metric", values="value")


def _flag(result: PairedResult, direction: str, min_effect: float) -> str:
    """``regression`` / ``improvement`` when the CI excludes 0 on that side and the change is large enough."""
    if not abs(result.mean) >= min_effect:  # NaN: not flagged
        return ""
    better = 1.0 if direction == "higher" else -1.0
    low, high = sorted((better * result.ci_low, better * result.ci_high))
    if low > 0:
        return "improvement"
    if high < 0:
        return "regression"
    return ""


def write(changes: pd.DataFrame, results_dir: Path) -> None:
    """``changes.csv`` and ``regressions.json`` under ``results_dir``."""
    write_csv(changes, Path(results_dir) / CHANGES)
    found = [{"task": r.task, "model": r.model, "metric": r.metric, "delta": r.delta, "ci": [r.ci_low, r.ci_high],
              "p_value": r.p_value, "n": int(r.n), "old_run": r.old_run, "new_run": r.new_run,
              "old_model_hash": r.old_model_hash, "new_model_hash": r.new_model_hash}
             for r in changes[changes.flagged == "regression"].itertuples()]
    write_atomic(Path(results_dir) / REGRESSIONS, json.dumps(found, indent=1) + "\n")


def read_regressions(results_dir: Path) -> list[dict] | None:
    """The flagged regressions a report wrote under ``results_dir``; None when the file is missing or unreadable."""
    try:
        return json.loads((Path(results_dir) / REGRESSIONS).read_text())
    except (OSError, ValueError):
        return None
