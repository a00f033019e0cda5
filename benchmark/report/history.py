"""Leaderboard history: one row set per run that executed jobs, and changes computed only like with like.

A (task, model) value is compared with the latest EARLIER run that has the same task version, model identity
(name, adapter, path, options), generation key, scoring key and the same sample ids; otherwise no change is
shown. A change below the display precision is not shown either.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from benchmark.report.store_view import StoreView
from benchmark.report.tables import write_csv

COLUMNS = ["run_id", "git", "task", "task_version", "model", "identity", "model_hash", "generation_key",
           "scoring_key", "samples_key", "n", "metric", "value"]
MATCH = ["task", "task_version", "model", "identity", "generation_key", "scoring_key", "samples_key", "metric"]
PRECISION = 3  # digits shown in the tables


def read(path: Path) -> pd.DataFrame:
    if not path.is_file():
        return pd.DataFrame(columns=COLUMNS)
    frame = pd.read_csv(path, dtype={"run_id": str, "git": str, "identity": str, "model_hash": str,
                                     "generation_key": str, "scoring_key": str, "samples_key": str})
    return frame if set(COLUMNS) <= set(frame.columns) else pd.DataFrame(columns=COLUMNS)  # an older format


def current_rows(view: StoreView, agg: pd.DataFrame, git: str, run_id: str | None = None) -> pd.DataFrame:
    """The history rows of the stored state: per (task, model), its model means. With ``run_id``, only the
    (task, model) pairs that run produced records for."""
    rows = []
    for sm in view.models:
        if not sm.records or (run_id is not None and sm.run_id != run_id):
            continue
        a = agg[(agg.task == sm.task) & (agg.model == sm.model)]
        rows += [{"run_id": sm.run_id, "git": git, "task": sm.task, "task_version": sm.task_version,
                  "model": sm.model, "identity": sm.identity, "model_hash": sm.model_hash,
                  "generation_key": sm.generation_key, "scoring_key": view.cfg.scoring_key(),
                  "samples_key": sm.samples_key, "n": int(r.n), "metric": r.metric, "value": r.mean}
                 for r in a.itertuples()]
    return pd.DataFrame(rows, columns=COLUMNS)


def record(path: Path, rows: pd.DataFrame) -> None:
    """Append a run's rows (a run that executed jobs; ``report`` alone never records)."""
    if rows.empty:
        return
    old = read(path)
    write_csv(rows if old.empty else pd.concat([old, rows], ignore_index=True), path)


def deltas(history: pd.DataFrame, current: pd.DataFrame) -> dict[tuple[str, str, str], float]:
    """(task, model, metric) -> change since the latest earlier matching run; only changes that show at
    :data:`PRECISION` digits."""
    out = {}
    if history.empty or current.empty:
        return out
    hist = history.astype({"task_version": int})
    for r in current.itertuples(index=False):
        prev = hist[hist.run_id < r.run_id]
        for col in MATCH:
            prev = prev[prev[col] == getattr(r, col)]
        if prev.empty or not np.isfinite(r.value):
            continue
        delta = float(r.value) - float(prev.sort_values("run_id").iloc[-1]["value"])
        if np.isfinite(delta) and round(abs(delta), PRECISION) >= 10 ** -PRECISION:
            out[(r.task, r.model, r.metric)] = delta
    return out
