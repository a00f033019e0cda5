"""Workers started through a site's batch scheduler with dask-jobqueue (README "A nightly on a SLURM cluster").

``cluster.jobqueue`` names the scheduler (slurm, pbs, sge, lsf; ``local`` runs the very same job scripts as local
processes, which is how this path is tested without a queue); the other ``cluster`` keys describe ONE batch job.
The scheduler runs in the driver; the cluster is adaptive: it submits one batch job per job waiting for a worker,
up to ``cluster.workers`` worker processes, and cancels idle ones but one.

A worker lost to the walltime is a retry, not a failure. Each worker leaves before its walltime on its own
(``dask worker --lifetime``, staggered so that they do not all leave at once): the scheduler takes back the job it
was running without holding it against the job (a graceful retirement), and the adaptive cluster submits a fresh
batch job for the jobs still waiting. A worker killed outright (a node failure, a walltime shorter than the
lifetime) sends its job back too; only a job that took down ``distributed.scheduler.allowed-failures`` + 1 workers
(3 + 1 by default) fails, with ``KilledWorker``. The job's result is written once, by the attempt that completes
(``benchmark.run.jobs.run_job`` reruns nothing that is stored).
"""

from __future__ import annotations

import sys

from benchmark.config import (CLUSTER_CLASSES, RunConfig, check_submit_command, cluster_class, resolve_path,
                              walltime_seconds)
from benchmark.errors import UserError

# Where the ``account`` key goes: SGE and LSF call it the project.
_ACCOUNT_OPTION = {"sge": "project", "lsf": "project"}

__all__ = ["CLUSTER_CLASSES", "check_submit_command", "cluster_class", "cluster_options", "jobqueue_client",
           "lifetime_args", "log_directory", "offers_gpu", "start_cluster"]


def offers_gpu(cfg: RunConfig) -> bool:
    """Whether the batch jobs' workers offer the ``GPU`` resource (one per worker process, so one job at a time):
    unless ``cluster.gpus`` is none or the device is cpu. The driver cannot see the batch nodes' hardware: like
    :func:`benchmark.run.runner.device_type`, ``device: auto`` on a batch-scheduler cluster means its GPUs."""
    return cfg.cluster.gpus != "none" and cfg.device != "cpu"


def lifetime_args(walltime_s: float) -> list[str]:
    """``dask worker`` options that make a worker leave before a walltime of ``walltime_s`` seconds: a margin of
    10% of it (at least 2 minutes, at most 15, and at most half the walltime) is kept, and each worker leaves at a
    time drawn uniformly within half a margin of the walltime minus the margin, so that workers started together
    leave one by one. E.g. 2 h: lifetime 108 min +/- 6 min."""
    margin = min(max(walltime_s / 10, 120.0), 900.0, walltime_s / 2)
    return ["--lifetime", f"{round(walltime_s - margin)}s", "--lifetime-stagger", f"{round(margin / 2)}s"]


def _memory_limit(cfg: RunConfig, gpu: bool) -> str | None:
    """The workers' ``--memory-limit`` when ``cluster.memory_limit`` asks for one, or none on GPU workers (weights
    pass through host RAM while they load); None keeps dask-jobqueue's (the job's memory / processes)."""
    limit = cfg.cluster.memory_limit
    if limit is None:
        return "0" if gpu else None
    return "0" if str(limit).lower() == "none" else str(limit)


def cluster_options(cfg: RunConfig) -> dict:
    """The keyword arguments of the cluster class for ``cfg.cluster`` (a validated config with ``jobqueue`` set)."""
    import dask

    c = cfg.cluster
    gpu = offers_gpu(cfg)
    extra = list(c.worker_extra_args)
    given = {a.split("=")[0] for a in extra}
    if gpu and "--resources" not in given:
        extra += ["--resources", "GPU=1"]
    walltime = c.walltime or dask.config.get(f"jobqueue.{c.jobqueue}.walltime", None)
    if walltime and "--lifetime" not in given:
        extra += lifetime_args(walltime_seconds(walltime, c.jobqueue))
    memory_limit = _memory_limit(cfg, gpu)
    if memory_limit is not None and "--memory-limit" not in given:
        extra += ["--memory-limit", memory_limit]
    options = {"cores": c.cores, "memory": c.memory, "processes": c.processes, "worker_extra_args": extra,
               "job_extra_directives": list(c.job_extra_directives), "job_name": f"bench-{cfg.name}",
               "scheduler_options": {"dashboard_address": None}}
    if c.jobqueue == "local":
        # LocalJob waits for the worker's "Registered to:" log line, at INFO, while this harness runs dask at
        # WARNING (benchmark.run.distributed), which the worker would inherit; LocalJob splits the job script on
        # whitespace, so `env` in front of the interpreter sets the level for the worker alone. (LocalJob reads
        # no more of the worker's output after that line: a class for tests and short runs.)
        options["python"] = f"env DASK_LOGGING__DISTRIBUTED=info {sys.executable}"
        return options
    options["walltime"] = c.walltime
    options["log_directory"] = str(log_directory(cfg))
    options["job_script_prologue"] = list(c.job_script_prologue)
    for key in ("queue", "interface"):
        if getattr(c, key) is not None:
            options[key] = getattr(c, key)
    if c.account is not None:
        options[_ACCOUNT_OPTION.get(c.jobqueue, "account")] = c.account
    return {k: v for k, v in options.items() if v is not None}


def log_directory(cfg: RunConfig):
    """Where the batch jobs write their stdout and stderr: ``cluster.log_directory``, else
    ``<output dir>/jobqueue-logs`` (on the file system the batch nodes share with the driver)."""
    return resolve_path(cfg.cluster.log_directory) if cfg.cluster.log_directory else cfg.out_dir / "jobqueue-logs"


def start_cluster(cfg: RunConfig, workers: int):
    """An adaptive dask-jobqueue cluster of 1 to ``workers`` worker processes (one from the start: the run asks the
    first worker which resources the workers offer before it submits anything)."""
    cls = cluster_class(cfg.cluster.jobqueue)
    try:
        cluster = cls(**cluster_options(cfg))
    except (ValueError, TypeError) as err:  # what dask-jobqueue makes of a setting it cannot use
        raise UserError(f"cluster.jobqueue {cfg.cluster.jobqueue}: {err}".replace("\n", " ")) from err
    # A target duration far below a job's means one worker per job waiting (adaptive asks for
    # occupancy / target_duration workers, at most the number of tasks ready and at most ``maximum``).
    cluster.adapt(minimum=1, maximum=workers, target_duration="1ms")
    return cluster


def jobqueue_client(cfg: RunConfig, workers: int):
    """A client of an adaptive batch-job cluster for ``cfg`` (:func:`start_cluster`)."""
    from dask.distributed import Client

    cluster = start_cluster(cfg, workers)
    try:
        return Client(cluster)
    except BaseException:
        cluster.close()
        raise
