"""Dask execution: one job = one future with a deterministic key, retries and (where the workers offer it) the
GPU resource.

* default: a ``LocalCluster`` of worker processes (``cluster.workers``);
* GPUs on this machine: ``dask_cuda.LocalCUDACluster`` (one worker per GPU, each seeing only its own) when
  installed, else a LocalCluster of one worker per GPU named 0..N-1, each offering ``resources={"GPU": 1}``;
* ``--scheduler tcp://host:port`` or a scheduler file: an existing cluster.

Which GPU a worker uses follows from its name (:func:`worker_gpu_index`), which a worker Dask restarts keeps; each
job reads it and uses ``cuda:{index}`` in its own thread (:func:`benchmark.run.jobs.job_device`). Nothing is set on the
worker's event-loop thread, where PyTorch's current device would not reach the jobs.
Whether jobs ask for the ``GPU`` resource is decided by what the cluster's workers offer, never by this machine.
A worker keeps one model loaded (:func:`benchmark.run.jobs.load_adapter`); jobs are submitted model by model, with
decreasing priority, so that each worker runs one model's jobs before the next model's and loads each once.
Each job sets its own torch thread count (``benchmark.run.jobs.JOB_TORCH_THREADS``).
A run never waits silently: if no job finishes within ``cluster.job_timeout_s``
the run stops with the names and states of the jobs still waiting.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from concurrent.futures import CancelledError
from contextlib import contextmanager
from pathlib import Path

from typing import Callable

from tqdm.auto import tqdm

from benchmark.config import RunConfig
from benchmark.errors import UserError
from benchmark.run.jobqueue import jobqueue_client
from benchmark.run.jobs import Job, JobOutOfMemory, model_order, run_job

log = logging.getLogger("benchmark")


class RunError(RuntimeError):
    """The cluster cannot make progress (no worker offers what the jobs need, or nothing finishes in time)."""


def _gpu_count() -> int:
    try:
        import torch

        return torch.cuda.device_count()
    except Exception:  # noqa: BLE001
        return 0


def worker_gpu_index(name, by_name: bool) -> int:
    """The GPU of the worker called ``name``. ``by_name``: the cluster named its workers 0..N-1 and each sees every
    GPU (the local cluster without dask-cuda): worker ``i`` uses GPU ``i``; a worker Dask restarts keeps its name.
    Otherwise a worker uses the first GPU it sees, its own where ``CUDA_VISIBLE_DEVICES`` gives each worker one
    (dask-cuda, ``dask cuda worker``, a batch scheduler's GPU jobs). A plain ``dask worker`` on a multi-GPU machine
    therefore needs ``CUDA_VISIBLE_DEVICES`` of its own."""
    if by_name and str(name).isdigit():
        return int(name)
    return 0


@contextmanager
def _workers_ignore_sigint():
    """Worker processes started inside inherit an ignored SIGINT (Python keeps an inherited SIG_IGN), so a
    Ctrl-C in the terminal, which reaches the whole process group, interrupts only the driver: it shuts the
    cluster down itself, with no traceback from each worker and no leaked semaphores."""
    try:
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    except ValueError:  # not the main thread: nothing to inherit
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


# multiprocessing's resource tracker (a process of its own, started with the driver's -W options) warns at exit
# about the semaphores of worker processes that a SIGTERM'd driver shut down without waiting for them; it unlinks
# them itself, so the warning is noise on an interrupted run's stderr, which must be one line.
TRACKER_WARNING = "ignore::UserWarning:multiprocessing.resource_tracker"


def make_client(cfg: RunConfig, scheduler: str, workers: int):
    """(client of the cluster the jobs run on, whether its workers' names are their GPUs: :func:`worker_gpu_index`)."""
    if TRACKER_WARNING not in sys.warnoptions:  # read when the tracker starts, with the first worker process
        sys.warnoptions.append(TRACKER_WARNING)
    with _workers_ignore_sigint():
        return _make_client(cfg, scheduler, workers)


def memory_limit(cfg: RunConfig, gpus: bool):
    """Dask's per-worker host-memory limit: ``cluster.memory_limit``, else none on a GPU cluster (a model's weights
    pass through host RAM while it loads) and Dask's ``auto`` on a CPU one. 0 is Dask's "no limit"."""
    value = cfg.cluster.memory_limit
    if value is None:
        return 0 if gpus else "auto"
    return 0 if str(value).lower() in ("none", "0") else value


def _make_client(cfg: RunConfig, scheduler: str, workers: int):
    """(client, whether its workers are named by GPU index: :func:`worker_gpu_index`)."""
    # The run has its own progress bar and log; dask's INFO chatter (also in worker processes) is noise.
    os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "warning")
    logging.getLogger("distributed").setLevel(logging.WARNING)
    from dask.distributed import Client, LocalCluster

    if cfg.cluster.jobqueue and scheduler == "local":  # batch jobs, each worker seeing its own GPU
        return jobqueue_client(cfg, workers), False
    if scheduler.startswith(("tcp://", "tls://", "ucx://")):
        return Client(scheduler, timeout="30s"), False
    if scheduler != "local":
        if not Path(scheduler).is_file():
            raise UserError(f"scheduler file not found: {scheduler} (--scheduler or cluster.scheduler; expected "
                            "inline, local, tcp://host:port or a scheduler-file path)")
        return Client(scheduler_file=scheduler, timeout="30s"), False
    gpus = _gpu_count() if cfg.cluster.gpus != "none" else 0
    if gpus:
        try:
            from dask_cuda import LocalCUDACluster
        except ImportError:
            return Client(LocalCluster(n_workers=gpus, threads_per_worker=1, processes=True, resources={"GPU": 1},
                                       memory_limit=memory_limit(cfg, True), dashboard_address=None)), True
        return Client(LocalCUDACluster(n_workers=gpus, threads_per_worker=1, resources={"GPU": 1},
                                       memory_limit=memory_limit(cfg, True), dashboard_address=None)), False
    cluster = LocalCluster(n_workers=workers, threads_per_worker=cfg.cluster.threads_per_worker, processes=True,
                           memory_limit=memory_limit(cfg, False), dashboard_address=None)
    return Client(cluster), True


def _cuda_count() -> int:
    """CUDA GPUs this (worker) process sees."""
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def await_workers(cfg: RunConfig, client) -> dict:
    """The cluster's workers (address -> scheduler's info), once at least one has joined; RunError after
    ``cluster.job_timeout_s`` without any."""
    try:
        client.wait_for_workers(1, timeout=cfg.cluster.job_timeout_s)
    except TimeoutError:
        raise RunError(f"no worker joined the cluster within {cfg.cluster.job_timeout_s:.0f}s") from None
    return client.scheduler_info(n_workers=-1)["workers"]


def workers_have_cuda(cfg: RunConfig, scheduler: str) -> bool:
    """Whether the workers of the existing cluster at ``scheduler`` (an address or a scheduler file) see a CUDA
    GPU: what ``device: auto`` means for jobs that run there."""
    client, _ = _make_client(cfg, scheduler, 1)
    try:
        await_workers(cfg, client)
        return any(n > 0 for n in client.run(_cuda_count).values())
    finally:
        client.close()


def job_resources(cfg: RunConfig, workers: dict) -> dict | None:
    """``{"GPU": 1}`` when the cluster's workers (scheduler info) offer the GPU resource, else None: the jobs then
    run on whatever workers there are. ``cluster.gpus: none`` never asks for it; ``required`` makes a cluster
    without it a UserError, before anything is submitted."""
    offered = any("GPU" in (w.get("resources") or {}) for w in workers.values())
    if cfg.cluster.gpus == "required" and not offered:
        raise UserError(f"cluster.gpus is required, but none of the cluster's {len(workers)} worker(s) offers the GPU "
                        "resource (start GPU workers with --resources GPU=1, or set cluster.gpus: auto)")
    return {"GPU": 1} if offered and cfg.cluster.gpus != "none" else None


def run_job_on_worker(cfg: RunConfig, job: Job, gpu_by_name: bool) -> str | None:
    """:func:`benchmark.run.jobs.run_job` on a worker, on its GPU (:func:`worker_gpu_index`): None when stored, else
    why not (out of memory at both batch sizes, already retried on this worker: Dask's retries would only repeat
    it)."""
    from distributed import get_worker

    try:
        run_job(cfg, job, worker_gpu=worker_gpu_index(get_worker().name, gpu_by_name))
    except JobOutOfMemory as err:
        return f"{type(err).__name__}: {err}"
    return None


def run_on_dask(cfg: RunConfig, pending: list[Job], summary, scheduler: str, workers: int,
                on_failure: Callable[[Job, str], None]) -> None:
    """Submit every pending job; count finished ones in ``summary``; hand each failure to ``on_failure``."""
    from distributed import wait

    client, gpu_by_name = make_client(cfg, scheduler, workers)
    completed = False
    try:  # an interrupt (benchmark.cli.Interrupted) unwinds through the finally below: the cluster is closed
        resources = job_resources(cfg, await_workers(cfg, client))
        ordered = sorted(pending, key=model_order)
        # decreasing priority in model order: every worker runs one model's jobs before the next model's
        futures = {client.submit(run_job_on_worker, cfg, job, gpu_by_name, key=job.dask_key, pure=False,
                                 retries=cfg.cluster.retries, resources=resources, priority=len(ordered) - i): job
                   for i, job in enumerate(ordered)}
        remaining = set(futures)
        with tqdm(total=sum(len(j.indices) for j in pending), desc="samples", unit="sample") as bar:
            while remaining:
                try:
                    done, _ = wait(list(remaining), timeout=cfg.cluster.job_timeout_s, return_when="FIRST_COMPLETED")
                except TimeoutError:  # dask's wait raises on timeout rather than returning nothing done
                    _stalled(cfg, client, futures, remaining)
                except CancelledError:  # raised instead of returning cancelled futures; each becomes a failure
                    done = {f for f in remaining if f.status != "pending"}
                for fut in done:
                    remaining.discard(fut)
                    job = futures[fut]
                    bar.update(len(job.indices))
                    bar.set_postfix_str(f"{job.task_name}/{job.model.name}/{job.indices[0]}-{job.indices[-1]}")
                    if fut.status == "finished":
                        error = fut.result()
                        if error is None:
                            summary.finished += 1
                        else:
                            on_failure(job, error)
                    elif fut.status == "error":
                        err = fut.exception()
                        on_failure(job, f"{type(err).__name__}: {err} (after {cfg.cluster.retries} retries)")
                    else:  # cancelled (e.g. by the scheduler): not finished, and said so
                        on_failure(job, f"future {fut.status} on the cluster")
        completed = True
    finally:
        with _workers_ignore_sigint():
            if not completed:
                _quiet(client)
            _close(client)


def _close(client) -> None:
    cluster = getattr(client, "cluster", None)
    client.close()
    if cluster is not None:
        cluster.close()


def _set_distributed_log_level(level: int) -> None:
    logging.getLogger("distributed").setLevel(level)


def _quiet(client) -> None:
    """Before closing a cluster whose jobs were cut short: its cancellation chatter (in the workers and in this
    process) says nothing the interrupt message does not."""
    _set_distributed_log_level(logging.CRITICAL)
    try:
        client.run(_set_distributed_log_level, logging.CRITICAL, wait=True)
    except Exception:  # noqa: BLE001 - a worker that does not answer is closed all the same
        pass


def _scheduler_states(dask_scheduler, keys: list[str]) -> dict[str, str]:
    """Scheduler-side task states (``no-worker``, ``queued``, ``processing`` ...): a future only says pending."""
    return {k: dask_scheduler.tasks[k].state if k in dask_scheduler.tasks else "unknown" for k in keys}


def _stalled(cfg: RunConfig, client, futures: dict, remaining: set) -> None:
    try:
        states = client.run_on_scheduler(_scheduler_states, keys=[f.key for f in remaining])
    except Exception:  # noqa: BLE001 - the error below matters more than the detail
        states = {}
    waiting = sorted(f"{futures[f].key} ({states.get(f.key, f.status)})" for f in remaining)
    workers = client.scheduler_info(n_workers=-1).get("workers", {})
    offered = sorted({k for w in workers.values() for k in (w.get("resources") or {})})
    for f in remaining:
        f.cancel()
    raise RunError(
        f"no job finished within {cfg.cluster.job_timeout_s:.0f}s with {len(workers)} worker(s) "
        f"(resources offered: {', '.join(offered) or 'none'}); still waiting: "
        f"{', '.join(waiting[:5])}{' ...' if len(waiting) > 5 else ''}. "
        "Check that workers exist and offer the resources the jobs need (GPU).")
