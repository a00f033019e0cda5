"""Each worker's GPU is chosen in the job's own thread, survives a worker restart, and a worker holds one model.

No GPU here: a test plugin makes the worker processes report two CUDA GPUs, records every ``torch.cuda.set_device``
with the thread that called it, and replaces the job's body by one that records the device it was given; the jobs
go through the same function the runner submits (``run_job_on_worker``).
"""

from __future__ import annotations

import dataclasses
import threading
import weakref

import pytest
import torch
from distributed import WorkerPlugin

import benchmark.run.distributed
import benchmark.run.jobs
from benchmark.api.spec import ModelSpec
from benchmark.run.distributed import make_client, memory_limit, run_job_on_worker
from benchmark.run.jobs import job_device, load_adapter
from benchmark.run.runner import execute, plan_jobs

from runner_helpers import smoke_config

SET_DEVICE_CALLS: list = []  # in a worker process: (device, thread id) of each torch.cuda.set_device
JOBS_RAN: list = []  # in a worker process: (device, whether set_device ran in the job's thread) of each job


class TwoFakeGpus(WorkerPlugin):
    """The worker process reports two CUDA GPUs; a job records its device instead of running a model."""

    name = "two-fake-gpus"

    def setup(self, worker):
        torch.cuda.is_available = lambda: True
        torch.cuda.device_count = lambda: 2
        torch.cuda.set_device = lambda d: SET_DEVICE_CALLS.append((str(d), threading.get_ident()))
        benchmark.run.jobs._run_job = record_device


def record_device(cfg, job, device, batch_size, progress):
    JOBS_RAN.append((str(device), SET_DEVICE_CALLS[-1] == (str(device), threading.get_ident())))


def _ran(dask_worker) -> tuple:
    import os

    return dask_worker.name, list(JOBS_RAN), os.getpid()


def jobs_on_every_worker(client, cfg, job, gpu_by_name) -> dict:
    """Worker name -> ([(device, set in the job thread)] of the jobs it ran, pid) after one job on each worker."""
    workers = client.scheduler_info(n_workers=-1)["workers"]
    client.gather([client.submit(run_job_on_worker, cfg, job, gpu_by_name, workers=[a], pure=False)
                   for a in workers])
    return {name: rest for name, *rest in client.run(_ran).values()}


def test_each_worker_uses_its_own_gpu_in_the_job_thread_also_after_a_restart(tiny_model, tmp_path, monkeypatch):
    # This machine "has two GPUs" and no dask-cuda: a local cluster of one worker per GPU, named 0 and 1.
    monkeypatch.setattr(benchmark.run.distributed, "_gpu_count", lambda: 2)
    cfg = smoke_config(tmp_path, tiny_model, device="cuda:1")  # its index does not send every worker to GPU 1
    [job, _] = plan_jobs(cfg, device="cuda").jobs
    client, gpu_by_name = make_client(cfg, "local", workers=5)
    try:
        client.wait_for_workers(2, timeout=600)
        workers = client.scheduler_info(n_workers=-1)["workers"].values()
        assert sorted(w["name"] for w in workers) == [0, 1]
        assert [w["resources"] for w in workers] == [{"GPU": 1}] * 2
        assert [w["memory_limit"] for w in workers] == [0, 0]  # no host-memory limit on a GPU cluster by default
        client.register_plugin(TwoFakeGpus())

        before = jobs_on_every_worker(client, cfg, job, gpu_by_name)
        assert {name: ran for name, (ran, _) in before.items()} == {0: [("cuda:0", True)], 1: [("cuda:1", True)]}

        [address] = [a for a, w in client.scheduler_info(n_workers=-1)["workers"].items() if w["name"] == 1]
        client.restart_workers([address])
        client.wait_for_workers(2, timeout=600)
        after = jobs_on_every_worker(client, cfg, job, gpu_by_name)
        assert after[1][1] != before[1][1] and after[0][1] == before[0][1]  # worker 1 is a new process
        assert {name: ran for name, (ran, _) in after.items()} == {0: [("cuda:0", True)] * 2, 1: [("cuda:1", True)]}
    finally:
        benchmark.run.distributed._close(client)


def test_worker_memory_limit_is_configurable(tiny_model, tmp_path):
    def limit(value, gpus):
        return memory_limit(smoke_config(tmp_path, tiny_model, cluster={"memory_limit": value}), gpus)

    assert (limit(None, True), limit(None, False)) == (0, "auto")  # 0: Dask's "no limit"
    assert (limit("24GiB", True), limit("none", False)) == ("24GiB", 0)


def test_a_job_planned_for_cuda_fails_on_a_machine_without_it():
    with pytest.raises(RuntimeError, match="planned this job for CUDA .* no CUDA GPU"):
        job_device("auto", "cuda")
    assert str(job_device("cuda:1", "cpu")) == "cpu"


class FakeAdapter:
    alive: weakref.WeakSet = weakref.WeakSet()
    alive_at_load: list = []

    def __init__(self, spec, device):
        self.spec, self.device = spec, torch.device(device)
        FakeAdapter.alive_at_load.append(len(FakeAdapter.alive))
        FakeAdapter.alive.add(self)


def test_a_model_change_releases_the_previous_model(monkeypatch):
    from benchmark.registry import ADAPTERS

    monkeypatch.setattr(benchmark.run.jobs, "_RESIDENT", [None, None])
    monkeypatch.setattr(ADAPTERS, "get", lambda name: FakeAdapter)
    emptied = []
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: emptied.append(1))
    gpu = torch.device("cuda", 0)
    a = load_adapter(ModelSpec("a", "fake", "/a"), gpu, "h1")
    assert load_adapter(ModelSpec("a", "fake", "/a"), gpu, "h1") is a  # loaded once
    first = weakref.ref(a)
    del a
    b = load_adapter(ModelSpec("b", "fake", "/b"), gpu, "h2")
    assert first() is None and emptied == [1]  # released, and the CUDA cache emptied ...
    assert FakeAdapter.alive_at_load == [0, 0]  # ... before the next model was built
    assert load_adapter(ModelSpec("a", "fake", "/a"), gpu, "h3") is not b  # changed files: loaded again
    assert emptied == [1, 1]


def test_inline_jobs_run_model_by_model(tiny_model, tmp_path, monkeypatch):
    # two models that differ by an option (the name alone does not make another model to load)
    models = [{"name": n, "adapter": "reference_unet", "path": str(tiny_model), "options": {"tag": n}} for n in "ab"]
    cfg = smoke_config(tmp_path, tiny_model, models=models)
    cfg = dataclasses.replace(cfg, tasks=cfg.tasks * 2)  # the task twice: its models come back
    plan = plan_jobs(cfg)
    assert [j.model.name for j in plan.jobs] == ["a", "a", "b", "b", "a", "a", "b", "b"]  # task by task
    ran = []
    monkeypatch.setattr("benchmark.run.runner.run_job", lambda cfg, job, progress=None: ran.append(job.model.name))
    execute(cfg, plan, scheduler="inline")
    assert ran == ["a"] * 4 + ["b"] * 4
