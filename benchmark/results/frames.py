"""Tidy frames built from the job store only (one row per sample x metric)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from benchmark.config import RunConfig
from benchmark.jobs import Job, job_dir


def load_records(cfg: RunConfig, jobs: list[Job]) -> list[dict]:
    out = []
    for job in jobs:
        path = job_dir(cfg, job) / "result.json"
        if path.is_file():
            out.append(json.loads(path.read_text()))
    return out


def sample_frame(records: list[dict]) -> pd.DataFrame:
    """Columns: task, model, adapter, shard, sample_id, metric, value, note."""
    rows = [{"task": r["task"], "model": r["model"], "adapter": r["adapter"], "shard": r["shard"], **row}
            for r in records for row in r["rows"]]
    cols = ["task", "model", "adapter", "shard", "sample_id", "metric", "value", "note"]
    frame = pd.DataFrame(rows, columns=cols)
    frame["value"] = frame["value"].astype(float)
    return frame.sort_values(["task", "model", "sample_id", "metric"], kind="stable").reset_index(drop=True)


def failure_frame(records: list[dict]) -> pd.DataFrame:
    rows = [{"task": r["task"], "model": r["model"], **f} for r in records for f in r["failures"]]
    return pd.DataFrame(rows, columns=["task", "model", "sample_id", "file", "error"])


def sample_dirs(cfg: RunConfig, jobs: list[Job], task: str, model: str) -> list[Path]:
    """Stored sample folders of one (task, model), in sample order."""
    dirs = []
    for job in jobs:
        if job.task_name == task and job.model.name == model:
            root = job_dir(cfg, job) / "samples"
            if (job_dir(cfg, job) / "result.json").is_file() and root.is_dir():
                dirs += sorted(p for p in root.iterdir() if p.is_dir())
    return dirs


def write_csv(frame: pd.DataFrame, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    frame.to_csv(tmp, index=False, float_format="%.6g")
    tmp.replace(path)
    return path


def fmt(v: float, digits: int = 3) -> str:
    return "n/a" if v is None or (isinstance(v, float) and np.isnan(v)) else f"{v:.{digits}f}"
