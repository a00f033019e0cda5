"""Plan jobs from a run config and execute them: in-process, or on Dask (local cluster, GPUs, or a scheduler).

Planning is where datasets are opened and model files hashed (``report`` does neither). A task entry whose
dataset cannot be opened, or a model whose files cannot be hashed, becomes a plan failure: a row of the
leaderboard with its reason; the other tasks and models still run.
"""

from __future__ import annotations

import ctypes
import datetime as dt
import json
import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from benchmark.config import RunConfig, TaskConfig, resolve_path
from benchmark.run.distributed import run_on_dask, workers_have_cuda
from benchmark.run.jobs import (Job, add_sample_metrics, check_stored, missing_sample_metrics, model_files_hash,
                                model_order, record_failure, refresh_set_inputs, run_job, set_inputs_stale)
from benchmark.run.tasks import build_dataset
from benchmark.store import (PLAN, PLAN_FAILURES, RESULT, RUN_DEVICE, DamagedJob, DigestCache, JobRecord, model_dir,
                             read_record, short_hash, write_atomic)

log = logging.getLogger("benchmark")


@dataclass
class RunSummary:
    run_id: str
    jobs: int
    skipped: int
    finished: int
    refreshed: int = 0  # finished jobs whose FID/KID/LPIPS inputs were recomputed (weights added since)
    # finished jobs whose per-sample quality metrics registered since they ran were computed from their stored images
    metrics_added: int = 0
    metrics_unavailable: list[dict] = field(default_factory=list)  # {job, metrics, error}: jobs that cannot (why)
    failed: list[dict] = field(default_factory=list)
    plan_failures: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    pending: int = 0  # jobs that had to run when planning ended

    @property
    def ok(self) -> bool:
        return not self.failed and not self.plan_failures


@dataclass
class Plan:
    jobs: list[Job]
    failures: list[dict]  # {task, model, where, error}: task entries or models that could not be planned
    # "<task>-v<version>/<model>-<model hash>/<generation key>" -> {max_samples ("all"): the sample ids planned}
    expected: dict = field(default_factory=dict)


def write_plan(cfg: RunConfig, expected: dict) -> None:
    """Merge ``expected`` into the run folder's ``plan.json``: ``report`` records a state in the history only
    once every sample planned for it is stored (an unreadable file is replaced)."""
    path = cfg.out_dir / PLAN
    try:
        merged = json.loads(path.read_text())
        if not isinstance(merged, dict):
            raise ValueError
    except (OSError, ValueError):
        merged = {}
    for state, by_limit in expected.items():
        merged.setdefault(state, {}).update(by_limit)
    write_atomic(path, json.dumps(merged, sort_keys=True))


def new_run_id() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def sample_digest(dataset, i: int, digests: DigestCache) -> str:
    """Digest of sample ``i``: its id and the contents of the files it reads (``dataset.files(i)``, a mapping of
    role to path). A missing file is part of the digest, not an error: the job reports it for that sample."""
    files = dataset.files(i)
    return short_hash([dataset.ids[i], {role: digests.digest(p) if Path(p).is_file() else "missing"
                                        for role, p in sorted(files.items())}], 16)


def device_type(cfg: RunConfig, scheduler: str | None = None) -> str:
    """The device type (cpu | cuda | mps) the run's jobs run on, part of their keys: the kind of ``device``; for
    ``auto``, cuda where the jobs run has a CUDA GPU, else cpu. Where they run: this machine (``inline``,
    ``local``), the workers of an existing cluster (``tcp://...`` or a scheduler file: asked), or the GPU
    workers a batch-scheduler cluster (``cluster.jobqueue``) starts. ``cluster.gpus: none`` is cpu."""
    kind = cfg.device.partition(":")[0]
    if kind != "auto":
        return kind
    if cfg.cluster.gpus == "none":
        return "cpu"
    where = scheduler or cfg.cluster.scheduler or "local"
    if where == "local" and cfg.cluster.jobqueue:
        return "cuda"
    if where in ("inline", "local"):
        return "cuda" if cuda_here() else "cpu"
    return "cuda" if workers_have_cuda(cfg, where) else "cpu"


def cuda_here() -> bool:
    """Whether this machine has a CUDA GPU PyTorch can use, asked of the CUDA driver (``libcuda``, which honours
    ``CUDA_VISIBLE_DEVICES``) without importing torch: a run with nothing to do loads no model library. A torch
    already imported is asked directly."""
    if "torch" in sys.modules:
        return sys.modules["torch"].cuda.is_available()
    try:
        driver = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return False
    count = ctypes.c_int(0)
    return driver.cuInit(0) == 0 and driver.cuDeviceGetCount(ctypes.byref(count)) == 0 and count.value > 0


def plan_jobs(cfg: RunConfig, run_id: str = "", device: str | None = None) -> Plan:
    """Every (task, model, shard) of the config, with deterministic keys; what could not be planned, with why.
    ``device``: the device type the jobs run on (:func:`device_type`; default: as on this machine)."""
    device = device or device_type(cfg, "local")
    jobs, failures, expected, digests = [], [], {}, DigestCache()
    for tr in cfg.tasks:
        task = TaskConfig.load(resolve_path(tr.task))
        try:
            dataset = build_dataset(task)
            n = len(dataset) if tr.max_samples is None else min(len(dataset), tr.max_samples)
            if n == 0:
                raise FileNotFoundError(f"no samples in dataset {task.dataset.format!r} at {task.dataset.root}")
            ids = dataset.ids[:n]
            sample_digests = [sample_digest(dataset, i, digests) for i in range(n)]
        except Exception as err:  # noqa: BLE001 - one task's data problem never stops the others
            failures += [{"task": task.name, "task_version": task.version, "model": m.name, "where": tr.task,
                          "error": f"{type(err).__name__}: {err}"} for m in tr.models]
            log.error("task %s (%s): %s", task.name, tr.task, err)
            continue
        sampling = {k: v for k, v in vars(tr.sampling).items() if v is not None}
        one_pass = cfg.one_pass_of(tr)
        for model in tr.models:
            mhash = model_files_hash(model, digests)
            protocols = [("generation", ())]
            if one_pass is not None and one_pass.covers(model):
                protocols.append(("one_pass", tuple(one_pass.timesteps)))
            for protocol, timesteps in protocols:
                gen_key = cfg.generation_key(tr, protocol, device)
                state = f"{task.name}-v{task.version}/{model.name}-{mhash}/{gen_key}"
                expected.setdefault(state, {})[str(tr.max_samples or "all")] = list(ids)
                for start in range(0, n, cfg.shard_size):
                    idx = tuple(range(start, min(start + cfg.shard_size, n)))
                    jobs.append(Job(tr.task, task.name, task.version, model, mhash, gen_key, idx,
                                    tuple(ids[i] for i in idx), short_hash([[ids[i], sample_digests[i]] for i in idx], 12),
                                    sampling, timesteps, tuple(sample_digests[i] for i in idx), run_id, device))
    digests.save()
    return Plan(jobs, failures, expected)


def covered(cfg: RunConfig, job: Job) -> bool:
    """True when a stored shard of the same model and generation key holds every sample of ``job`` with the
    same digests (e.g. ``--limit 10`` after a run of 64): its results are reused, nothing is generated."""
    gen_dir = model_dir(cfg.out_dir / "store", job.task_name, job.task_version, job.model.name, job.model_hash) / job.generation_key
    if not gen_dir.is_dir():
        return False
    for shard in gen_dir.glob(f"shard-*/{RESULT}"):
        try:
            first, last = (int(x) for x in shard.parent.name.split("-")[1:3])
        except ValueError:
            continue
        if first <= job.indices[0] and last >= job.indices[-1]:
            try:
                rec = read_record(shard)
            except DamagedJob:  # its own job sets it aside; this one runs
                continue
            if rec.sample_ids[job.indices[0] - first : job.indices[-1] - first + 1] == list(job.sample_ids) \
                    and _digest_of(rec, job) == job.samples_hash:
                return True
    return False


def _digest_of(record: JobRecord, job: Job) -> str | None:
    """The samples hash the stored shard would have had for exactly ``job``'s samples (None if unknown)."""
    digests = record.sample_digests
    if not digests:
        return None
    return short_hash([[sid, digests.get(sid)] for sid in job.sample_ids], 12)


def execute(cfg: RunConfig, plan: Plan | None = None, scheduler: str | None = None,
            workers: int | None = None, summary: RunSummary | None = None, phase=None) -> RunSummary:
    """Run every unfinished job. ``scheduler``: None/"local" (LocalCluster), "inline" (this process),
    ``tcp://host:port`` or a scheduler-file path. Jobs stored intact are skipped; a damaged one is set aside under
    ``store/quarantine/`` and runs again. Finished jobs then get what was added since they ran, from their stored
    outputs: FID/KID/LPIPS inputs whose weights appeared, per-sample quality metrics registered since. ``summary``
    is filled in place (an interrupted run can still say what it kept); ``phase(name)`` is told when planning and
    generation start."""
    t0 = time.perf_counter()
    summary = summary or RunSummary(new_run_id(), 0, 0, 0)
    if phase:
        phase("planning")
    plan = plan_jobs(cfg, summary.run_id, device_type(cfg, scheduler)) if plan is None else plan
    jobs = plan.jobs
    digests = DigestCache()
    pending = [j for j in jobs if not check_stored(cfg, j, digests) and not covered(cfg, j)]
    digests.save()
    summary.jobs, summary.skipped, summary.plan_failures = len(jobs), len(jobs) - len(pending), plan.failures
    summary.pending = len(pending)
    write_atomic(cfg.out_dir / PLAN_FAILURES, json.dumps(plan.failures, indent=1))
    write_plan(cfg, plan.expected)
    if jobs:  # the report reads the states of the device type the jobs were keyed for
        write_atomic(cfg.out_dir / RUN_DEVICE, json.dumps({"device_type": jobs[0].device_type}))
    log.info("%d jobs, %d already done, %d to run", len(jobs), summary.skipped, len(pending))
    if pending and phase:
        phase("generation")
    if pending:
        scheduler = scheduler or cfg.cluster.scheduler or "local"
        if scheduler == "inline":
            _run_inline(cfg, pending, summary)
        else:
            run_on_dask(cfg, pending, summary, scheduler, workers or cfg.cluster.workers,
                        lambda job, err: job_failed(cfg, job, err, summary))
    for job in jobs:
        if job not in pending:
            _complete_stored(cfg, job, summary)
    summary.seconds = time.perf_counter() - t0
    return summary


def _complete_stored(cfg: RunConfig, job: Job, summary: RunSummary) -> None:
    """Add to a finished job, from its stored outputs, what appeared since it ran: FID/KID/LPIPS inputs whose
    weights are there now, per-sample quality metrics registered since (``JobRecord.sample_metrics``)."""
    if set_inputs_stale(cfg, job):
        try:
            refresh_set_inputs(cfg, job)
            summary.refreshed += 1
        except Exception as err:  # noqa: BLE001 - counted and reported, the run goes on
            job_failed(cfg, job, f"set-metric inputs: {type(err).__name__}: {err}", summary)
    names = missing_sample_metrics(cfg, job)
    if not names:
        return
    try:
        add_sample_metrics(cfg, job, names)
        summary.metrics_added += 1
    except FileNotFoundError as err:  # its images were not kept: its other scores stand, the run goes on
        log.warning("job %s: %s", job.key, err)
        summary.metrics_unavailable.append({"job": job.key, "metrics": names, "error": str(err)})
    except Exception as err:  # noqa: BLE001 - counted and reported, the run goes on
        job_failed(cfg, job, f"per-sample metrics {', '.join(names)}: {type(err).__name__}: {err}", summary)


def job_failed(cfg: RunConfig, job: Job, err: BaseException | str, summary: RunSummary) -> None:
    """Count a failed job in the summary and keep its reason in the store for the report."""
    text = err if isinstance(err, str) else f"{type(err).__name__}: {err}"
    log.error("job %s failed: %s", job.key, text)
    summary.failed.append({"job": job.key, "task": job.task_name, "model": job.model.name, "error": text})
    record_failure(cfg, job, text)


def _run_inline(cfg: RunConfig, pending: list[Job], summary: RunSummary) -> None:
    total = sum(len(j.indices) for j in pending)
    with tqdm(total=total, desc="samples", unit="sample") as bar:
        for job in sorted(pending, key=model_order):  # one model loaded at a time: each model loads once
            bar.set_postfix_str(f"{job.task_name}/{job.model.name}/{job.indices[0]}-{job.indices[-1]}")
            try:
                run_job(cfg, job, progress=bar.update)
                summary.finished += 1
            except Exception as err:  # noqa: BLE001 - counted and reported, the run goes on
                job_failed(cfg, job, err, summary)


def write_run_metadata(cfg: RunConfig, summary: RunSummary) -> Path:
    return write_atomic(cfg.out_dir / "run_summary.json", json.dumps(vars(summary), indent=2, default=str))

