"""Whether jobs ask for the GPU resource is decided by what the cluster's workers offer, not by this machine."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import benchmark.run.distributed
from benchmark.config import REPO_ROOT
from benchmark.errors import UserError
from benchmark.run.jobs import is_done
from benchmark.run.runner import execute, plan_jobs

from runner_helpers import smoke_config


def _executed(dask_worker) -> int:
    return dask_worker.state.executed_count


def test_jobs_go_to_the_worker_that_offers_a_gpu(tiny_model, tmp_path):
    """A scheduler with a plain worker and a real ``dask worker --resources GPU=1`` process (a label here: the
    jobs run on its CPU); this machine has no GPU, yet every job asks for one and runs on that worker."""
    from distributed import Client, LocalCluster

    assert not torch.cuda.is_available()
    local = LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None)
    client = Client(local)
    worker = subprocess.Popen([str(Path(sys.executable).parent / "dask"), "worker", local.scheduler_address,
                               "--resources", "GPU=1", "--nthreads", "1", "--name", "gpu-worker", "--no-dashboard"],
                              cwd=REPO_ROOT, env={**os.environ, "DASK_LOGGING__DISTRIBUTED": "warning",
                                                  "PYTHONPATH": str(Path(__file__).parent)})  # for _executed
    try:
        client.wait_for_workers(2, timeout=600)
        cfg = smoke_config(tmp_path, tiny_model, cluster={"job_timeout_s": 600, "retries": 0})
        summary = execute(cfg, scheduler=local.scheduler_address)
        assert (summary.jobs, summary.finished, summary.failed) == (2, 2, [])
        names = {a: w["name"] for a, w in client.scheduler_info(n_workers=-1)["workers"].items()}
        executed = {names[a]: n for a, n in client.run(_executed).items()}
        assert executed == {0: 0, "gpu-worker": 2}
    finally:
        worker.terminate()
        worker.wait(timeout=120)
        client.close()
        local.close()


def test_a_driver_with_gpus_runs_its_jobs_on_workers_that_offer_none(cluster, tiny_model, tmp_path, monkeypatch):
    # This machine "has two GPUs"; the cluster's workers offer no GPU resource and have no CUDA.
    local, _ = cluster
    monkeypatch.setattr(benchmark.run.distributed, "_gpu_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    cfg = smoke_config(tmp_path, tiny_model, cluster={"job_timeout_s": 600, "retries": 0})
    summary = execute(cfg, scheduler=local.scheduler_address)
    assert (summary.jobs, summary.finished, summary.failed) == (2, 2, [])
    jobs = plan_jobs(cfg, device="cpu").jobs  # keyed for the workers' CPUs, not this machine's GPUs
    assert all(is_done(cfg, j) for j in jobs)
    assert {j.key for j in jobs}.isdisjoint({j.key for j in plan_jobs(cfg).jobs})  # the keys this machine would use


def test_gpus_required_on_a_cluster_without_them_fails_before_submitting(cluster, tiny_model, tmp_path):
    local, client = cluster
    before = client.run(_executed)
    cfg = smoke_config(tmp_path, tiny_model, cluster={"gpus": "required"})
    with pytest.raises(UserError) as err:
        execute(cfg, scheduler=local.scheduler_address)
    message = str(err.value)
    assert "\n" not in message and "cluster.gpus is required" in message and "2 worker(s)" in message
    assert client.run(_executed) == before  # nothing ran
    assert not any(is_done(cfg, j) for j in plan_jobs(cfg).jobs)
