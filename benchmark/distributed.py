"""Dask execution: one job = one future with a deterministic key, retries and (where relevant) GPU resources.

* default: a ``LocalCluster`` of worker processes (``cluster.workers``);
* GPUs present: ``dask_cuda.LocalCUDACluster`` (one worker per GPU) when installed,
  else a LocalCluster with ``resources={"GPU": 1}`` and each worker pinned to one
  device through ``CUDA_VISIBLE_DEVICES``;
* ``--scheduler tcp://host:port`` or a scheduler file: an existing cluster.

Models load once per worker (a per-process cache in :mod:`benchmark.jobs`); each
job sets its own torch thread count (``benchmark.jobs.JOB_TORCH_THREADS``).
A run never waits silently: if no job finishes within ``cluster.job_timeout_s``
the run stops with the names and states of the jobs still waiting.
"""

from __future__ import annotations

import logging
import os
import signal
from concurrent.futures import CancelledError
from contextlib import contextmanager
from pathlib import Path

from typing import Callable

from tqdm.auto import tqdm

from benchmark.config import RunConfig
from benchmark.errors import UserError
from benchmark.jobs import Job, run_job

log = logging.getLogger("benchmark")


class RunError(RuntimeError):
    """The cluster cannot make progress (no worker offers what the jobs need, or nothing finishes in time)."""


def _gpu_count() -> int:
    try:
        import torch

        return torch.cuda.device_count()
    except Exception:  # noqa: BLE001
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


def make_client(cfg: RunConfig, scheduler: str, workers: int):
    """(client, uses_gpu_resources)."""
    with _workers_ignore_sigint():
        return _make_client(cfg, scheduler, workers)


def _make_client(cfg: RunConfig, scheduler: str, workers: int):
    # The run has its own progress bar and log; dask's INFO chatter (also in worker processes) is noise.
    os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "warning")
    logging.getLogger("distributed").setLevel(logging.WARNING)
    from dask.distributed import Client, LocalCluster

    if scheduler.startswith(("tcp://", "tls://", "ucx://")):
        return Client(scheduler, timeout="30s"), cfg.cluster.gpus != "none" and _gpu_count() > 0
    if scheduler != "local":
        if not Path(scheduler).is_file():
            raise UserError(f"scheduler file not found: {scheduler} (--scheduler or cluster.scheduler; expected "
                            "inline, local, tcp://host:port or a scheduler-file path)")
        return Client(scheduler_file=scheduler, timeout="30s"), cfg.cluster.gpus != "none" and _gpu_count() > 0
    gpus = _gpu_count() if cfg.cluster.gpus != "none" else 0
    if gpus:
        try:
            from dask_cuda import LocalCUDACluster

            return Client(LocalCUDACluster(n_workers=gpus, threads_per_worker=1, resources={"GPU": 1})), True
        except ImportError:
            client = Client(LocalCluster(n_workers=gpus, threads_per_worker=1, processes=True,
                                         resources={"GPU": 1}, dashboard_address=None))
            for index, address in enumerate(sorted(client.scheduler_info()["workers"])):
                client.run(_pin_device, index, workers=[address])
            return client, True
    cluster = LocalCluster(n_workers=workers, threads_per_worker=cfg.cluster.threads_per_worker, processes=True,
                           dashboard_address=None)
    return Client(cluster), False


def _pin_device(index: int) -> int:
    """Pin this worker process to one GPU (jobs then use ``cuda`` = that device)."""
    import torch

    torch.cuda.set_device(index % torch.cuda.device_count())
    return index


def run_on_dask(cfg: RunConfig, pending: list[Job], summary, scheduler: str, workers: int,
                on_failure: Callable[[Job, str], None]) -> None:
    """Submit every pending job; count finished ones in ``summary``; hand each failure to ``on_failure``."""
    from distributed import wait

    client, gpu = make_client(cfg, scheduler, workers)
    completed = False
    try:  # an interrupt (benchmark.cli.Interrupted) unwinds through the finally below: the cluster is closed
        futures = {client.submit(run_job, cfg, job, key=job.dask_key, retries=cfg.cluster.retries, pure=False,
                                 resources={"GPU": 1} if gpu else None): job for job in pending}
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
                        summary.finished += 1
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
    workers = client.scheduler_info().get("workers", {})
    offered = sorted({k for w in workers.values() for k in (w.get("resources") or {})})
    for f in remaining:
        f.cancel()
    raise RunError(
        f"no job finished within {cfg.cluster.job_timeout_s:.0f}s with {len(workers)} worker(s) "
        f"(resources offered: {', '.join(offered) or 'none'}); still waiting: "
        f"{', '.join(waiting[:5])}{' ...' if len(waiting) > 5 else ''}. "
        "Check that workers exist and offer the resources the jobs need (GPU).")
