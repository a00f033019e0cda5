"""Plan jobs from a run config and execute them: in-process, or on Dask (local cluster, GPUs, or a scheduler)."""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from benchmark.config import RunConfig, TaskConfig, resolve_path
from benchmark.jobs import Job, is_done, model_files_hash, run_job

log = logging.getLogger("benchmark")


class RunError(RuntimeError):
    pass


@dataclass
class RunSummary:
    jobs: int
    skipped: int
    finished: int
    failed: list[dict] = field(default_factory=list)
    seconds: float = 0.0


def plan_jobs(cfg: RunConfig) -> list[Job]:
    """Every (task, model, shard) of the config, with deterministic keys."""
    from benchmark.tasks import build_dataset

    jobs = []
    for tr in cfg.tasks:
        task = TaskConfig.load(resolve_path(tr.task))
        n = len(build_dataset(task))
        if tr.max_samples is not None:
            n = min(n, tr.max_samples)
        sampling = {k: v for k, v in vars(tr.sampling).items() if v is not None}
        for model in tr.models:
            mhash = model_files_hash(model)
            for shard, start in enumerate(range(0, n, cfg.shard_size)):
                jobs.append(Job(tr.task, task.name, task.version, model, mhash, cfg.hash(), shard,
                                tuple(range(start, min(start + cfg.shard_size, n))), sampling))
    return jobs


def execute(cfg: RunConfig, jobs: list[Job] | None = None, scheduler: str | None = None,
            workers: int | None = None) -> RunSummary:
    """Run every unfinished job. ``scheduler``: None/"local" (LocalCluster), "inline" (this process),
    ``tcp://host:port`` or a scheduler-file path. Finished jobs are skipped (their result file exists)."""
    t0 = time.perf_counter()
    jobs = plan_jobs(cfg) if jobs is None else jobs
    pending = [j for j in jobs if not is_done(cfg, j)]
    summary = RunSummary(len(jobs), len(jobs) - len(pending), 0)
    log.info("%d jobs, %d already done, %d to run", len(jobs), summary.skipped, len(pending))
    if pending:
        scheduler = scheduler or cfg.cluster.scheduler or "local"
        if scheduler == "inline":
            _run_inline(cfg, pending, summary)
        else:
            from benchmark.distributed import run_on_dask

            run_on_dask(cfg, pending, summary, scheduler, workers or cfg.cluster.workers)
    summary.seconds = time.perf_counter() - t0
    return summary


def _run_inline(cfg: RunConfig, pending: list[Job], summary: RunSummary) -> None:
    total = sum(len(j.indices) for j in pending)
    with tqdm(total=total, desc="samples", unit="sample") as bar:
        for job in pending:
            bar.set_postfix_str(f"{job.task_name}/{job.model.name}/shard {job.shard}")
            try:
                run_job(cfg, job, progress=bar.update)
                summary.finished += 1
            except Exception as err:  # noqa: BLE001 - counted and reported, the run goes on
                log.error("job %s failed: %s", job.key, err)
                summary.failed.append({"job": job.key, "error": f"{type(err).__name__}: {err}"})


def write_run_metadata(cfg: RunConfig, summary: RunSummary) -> Path:
    out = cfg.out_dir
    out.mkdir(parents=True, exist_ok=True)
    path = out / "run_summary.json"
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(vars(summary), indent=2, default=str))
    os.replace(tmp, path)
    return path
