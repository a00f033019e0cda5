"""Leaderboard history: one row set per stored state, and changes computed only like with like.

A state is (task, task version, model identity, model hash, generation key, scoring key, samples key,
accelerator). The first
``run`` or ``report`` that finds a state complete (:attr:`StoredModel.complete`) appends its rows; a state already
in the history is never added again. History therefore depends on what the store holds, not on which invocation
produced it: an interrupted and resumed nightly has the rows of an uninterrupted one.

A (task, model) value is compared with the latest EARLIER run that has the same task version, model identity
(name, adapter, path, options), generation key (which holds the device type), scoring key, the same sample ids and
the same accelerator (``cuda:<GPU name>``: another GPU model computes other last bits); otherwise no change is
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
ACCELERATOR = "accelerator"  # the records' accelerators (``cpu``, ``cuda:<GPU name>``); "" in older files
MATCH = ["task", "task_version", "model", "identity", "generation_key", "scoring_key", "samples_key", ACCELERATOR,
         "metric"]
STATE = ["task", "task_version", "identity", "model_hash", "generation_key", "scoring_key", "samples_key", ACCELERATOR]
PRECISION = 3  # digits shown in the tables


def read(path: Path) -> pd.DataFrame:
    """The history at ``path``; empty when absent. An unreadable file is set aside as ``<name>.damaged-<time>``
    (never deleted) and the history starts again from the store."""
    if not path.is_file():
        return pd.DataFrame(columns=COLUMNS + CI_COLUMNS + [ACCELERATOR])
    try:
        frame = pd.read_csv(path, dtype={"run_id": str, "git": str, "identity": str, "model_hash": str,
                                         "generation_key": str, "scoring_key": str, "samples_key": str,
                                         ACCELERATOR: str})
        frame = frame.astype({"task_version": int})
    except (ValueError, pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        import datetime as dt
        import logging

        aside = path.with_name(f"{path.name}.damaged-{dt.datetime.now():%Y%m%dT%H%M%S}")
        path.replace(aside)
        logging.getLogger("benchmark").warning("%s is unreadable (%s): moved to %s", path, err, aside)
        return pd.DataFrame(columns=COLUMNS + CI_COLUMNS + [ACCELERATOR])
    if not set(COLUMNS) <= set(frame.columns):  # an older format
        return pd.DataFrame(columns=COLUMNS + CI_COLUMNS + [ACCELERATOR])
    return _with_accelerator(frame.assign(**{c: np.nan for c in CI_COLUMNS if c not in frame.columns}))


def _with_accelerator(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with the accelerator column; rows written before it read as ""."""
    if ACCELERATOR not in frame.columns:
        return frame.assign(**{ACCELERATOR: ""})
    return frame.assign(**{ACCELERATOR: frame[ACCELERATOR].fillna("").astype(str)})


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
                  "ci_low": r.ci_low, "ci_high": r.ci_high, ACCELERATOR: sm.accelerator}
                 for r in a.itertuples()]
    return pd.DataFrame(rows, columns=COLUMNS + CI_COLUMNS + [ACCELERATOR])


def with_unrecorded(history: pd.DataFrame, current: pd.DataFrame) -> pd.DataFrame:
    """The history as it reads once ``current`` (:func:`current_rows`) is recorded: its rows plus those of the
    states it does not hold yet (a state already in the history is never added again)."""
    if history.empty:
        return current
    history, current = _with_accelerator(history), _with_accelerator(current)
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
    hist, current = _with_accelerator(history.astype({"task_version": int})), _with_accelerator(current)
    # One join of the current rows with the history on MATCH, not a scan of the history per current row (that grew
    # as rows x nights: a minute for a year of nightly runs).
    text = {c: str for c in MATCH if c != "task_version"}
    pairs = current.astype({"task_version": int, **text}).reset_index(drop=True)[MATCH + ["run_id"]].reset_index()
    pairs = pairs.merge(hist.astype(text)[MATCH + ["run_id", "value"]], on=MATCH, suffixes=("", "_prev"))
    pairs = pairs[pairs.run_id_prev < pairs.run_id]
    latest = pairs.sort_values(["index", "run_id_prev"], kind="stable").drop_duplicates("index", keep="last")
    previous = dict(zip(latest["index"], latest["value"]))  # current row -> value of the latest earlier match
    for i, r in enumerate(current.itertuples(index=False)):
        if i not in previous or not np.isfinite(r.value):
            continue
        delta = float(r.value) - float(previous[i])
        if np.isfinite(delta) and round(abs(delta), PRECISION) >= 10 ** -PRECISION:
            out[(r.task, r.model, r.metric)] = delta
    return out
