"""Shared pieces of the runner tests: a smoke config on a tiny random model, and what a run stored."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import yaml

from benchmark.config import REPO_ROOT, RunConfig
from benchmark.run.jobs import job_dir
from benchmark.run.runner import plan_jobs

CONDITIONS = [("masked_image", "image"), ("mask", "mask"), ("pose", "image")]


def make_model(folder: Path) -> Path:
    """A tiny random reference_unet model with 2 sampling steps."""
    from benchmark.models.mini import save_tiny_random_model

    save_tiny_random_model(folder, CONDITIONS, num_inference_steps=2)
    return folder


def make_broken_model(good: Path, folder: Path) -> Path:
    """A copy of ``good`` without ``unet/``: loading it raises FileNotFoundError, every time."""
    shutil.copytree(good, folder, ignore=shutil.ignore_patterns("unet"))
    return folder


def smoke_dict(root: Path, model: Path, *, models: list[dict] | None = None, **overrides) -> dict:
    """The smoke config (viton_hd, 4 samples, shards of 2), writing under ``root``."""
    data = {
        "name": "smoke",
        "output_dir": str(root / "run"),
        "leaderboard_dir": str(root / "leaderboards"),
        "label": "tiny random model",
        "batch_size": 2,
        "shard_size": 2,
        "capture": {"time_groups": 2},
        "tasks": [{"task": "tasks/viton_hd", "max_samples": 4,
                   "models": models or [{"name": "rand", "adapter": "reference_unet", "path": str(model)}]}],
    }
    task_keys = {k: overrides.pop(k) for k in ("max_samples", "sampling") if k in overrides}
    data["tasks"][0].update(task_keys)
    data.update(overrides)
    return data


def smoke_config(root: Path, model: Path, **kw) -> RunConfig:
    return RunConfig.from_dict(smoke_dict(root, model, **kw))


def write_config(data: dict, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def stored_rows(cfg: RunConfig) -> list[tuple]:
    """Every stored (model, sample_id, metric, value, note), sorted; values exactly as result.json has them."""
    rows = []
    for job in plan_jobs(cfg).jobs:
        path = job_dir(cfg, job) / "result.json"
        if path.is_file():
            rec = json.loads(path.read_text())
            rows += [(rec["model"], r["sample_id"], r["metric"], r["value"], r["note"]) for r in rec["rows"]]
    return sorted(rows, key=lambda r: r[:3])


def result_stats(cfg: RunConfig) -> dict[str, tuple[int, int]]:
    """job key -> (inode, mtime_ns) of its result.json, for the jobs that have one."""
    out = {}
    for job in plan_jobs(cfg).jobs:
        path = job_dir(cfg, job) / "result.json"
        if path.is_file():
            st = path.stat()
            out[job.key] = (st.st_ino, st.st_mtime_ns)
    return out


def report_tables(cfg: RunConfig) -> dict[str, str]:
    """Render the report from the store; the per-sample frame and the per-task leaderboard CSV as text."""
    from benchmark.report import build_report

    paths = build_report(cfg)
    lb = Path(paths["index"]).parent
    return {"samples.csv": (Path(paths["results"]) / "samples.csv").read_text(),
            "viton_hd.csv": (lb / "viton_hd.csv").read_text()}


def cli_env() -> dict:
    """Environment for ``python -m benchmark`` subprocesses: the repo importable, the default data cache."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.setdefault("HF_HUB_OFFLINE", "1")
    return env
