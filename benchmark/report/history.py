"""Leaderboard history: one row set per stored state, and changes computed only like with like.

A state is (task, task version, model identity, model hash, generation key, scoring key, samples key). The first
``run`` or ``report`` that finds a state complete (:attr:`StoredModel.complete`) appends its rows; a state already
in the history is never added again. History therefore depends on what the store holds, not on which invocation
produced it: an interrupted and resumed nightly has the rows of an uninterrupted one.

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
CI_COLUMNS = ["ci_low", "ci_high"]  # the model mean's bootstrap 95% CI; rows written before them read as NaN
MATCH = ["task", "task_version", "model", "identity", "generation_key", "scoring_key", "samples_key", "metric"]
STATE = ["task", "task_version", "identity", "model_hash", "generation_key", "scoring_key", "samples_key"]
PRECISION = 3  # digits shown in the tables


def read(path: Path) -> pd.DataFrame:
    """The history at ``path``; empty when absent. An unreadable file is set aside as ``<name>.damaged-<time>``
    (never deleted) and the history starts again from the store."""
    if not path.is_file():
        return pd.DataFrame(columns=COLUMNS + CI_COLUMNS)
    try:
        frame = pd.read_csv(path, dtype={"run_id": str, "git": str, "identity": str, "model_hash": str,
                                         "generation_key": str, "scoring_key": str, "samples_key": str})
        frame = frame.astype({"task_version": int})
    except (ValueError, pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        import datetime as dt
        import logging

        aside = path.with_name(f"{path.name}.damaged-{dt.datetime.now():%Y%m%dT%H%M%S}")
        path.replace(aside)
        logging.getLogger("benchmark").warning("%s is unreadable (%s): moved to %s", path, err, aside)
        return pd.DataFrame(columns=COLUMNS + CI_COLUMNS)
    if not set(COLUMNS) <= set(frame.columns):  # an older format
        return pd.DataFrame(columns=COLUMNS + CI_COLUMNS)
    return frame.assign(**{c: np.nan for c in CI_COLUMNS if c not in frame.columns})


def current_rows(view: StoreView, agg: pd.DataFrame, git: str, complete_only: bool = False) -> pd.DataFrame:
    """The history rows of the stored state: per (task, model), its model means with their CIs.
    ``complete_only``: only the states that hold every planned sample and no failed job."""
    rows = []
    for sm in view.models:
        if not sm.records or (complete_only and not sm.complete):
            continue
        a = agg[(agg.task == sm.task) & (agg.model == sm.model)]
        rows += [{"run_id": sm.run_id, "git": git, "task": sm.task, "task_version": sm.task_version,
                  "model": sm.model, "identity": sm.identity, "model_hash": sm.model_hash,
                  "generation_key": sm.generation_key, "scoring_key": view.cfg.scoring_key(),
                  "samples_key": sm.samples_key, "n": int(r.n), "metric": r.metric, "value": r.mean,
                  "ci_low": r.ci_low, "ci_high": r.ci_high}
                 for r in a.itertuples()]
    return pd.DataFrame(rows, columns=COLUMNS + CI_COLUMNS)


def with_unrecorded(history: pd.DataFrame, current: pd.DataFrame) -> pd.DataFrame:
    """The history as it reads once ``current`` (:func:`current_rows`) is recorded: its rows plus those of the
    states it does not hold yet (a state already in the history is never added again)."""
    if history.empty:
        return current
    known = set(map(tuple, history[STATE].astype(str).values))
    new = current[[tuple(r) not in known for r in current[STATE].astype(str).values]]
    return pd.concat([history, new], ignore_index=True) if not new.empty else history


def record(path: Path, rows: pd.DataFrame, history: pd.DataFrame | None = None) -> int:
    """Append the rows of every state not yet in the history (``history``: the file as already read); returns the
    number of states added."""
    old = read(path) if history is None else history
    merged = with_unrecorded(old, rows)
    added = merged.iloc[len(old):]
    if added.empty:
        return 0
    write_csv(merged, path)
    return len(added.drop_duplicates(STATE))


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
