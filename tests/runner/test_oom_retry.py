"""A CUDA out-of-memory error reruns the job once with half the batch, and stores what a run without it stores (up
to the last bits of float32: CPU kernels for another batch shape sum in another order); a second one is a failure
that names the batch sizes tried. The error is injected (no GPU here)."""

from __future__ import annotations

import io
import json
import math
from types import SimpleNamespace

import numpy as np

import pytest
import torch

import benchmark.run.generation
from benchmark.run.distributed import run_job_on_worker
from benchmark.run.jobs import FAILED, is_done, job_dir
from benchmark.run.runner import execute, plan_jobs

from runner_helpers import smoke_config, stored_rows


def inject_oom(monkeypatch, times: int, error=torch.cuda.OutOfMemoryError):
    """The first ``times`` batches of more than one sample raise ``error``; returns the batch sizes generated."""
    real, sizes = benchmark.run.generation.generate_with_capture, []

    def generate(adapter, batch, *args, **kwargs):
        n = len(batch["sample_id"])
        sizes.append(n)
        if n > 1 and sizes.count(-1) < times:
            sizes.append(-1)
            raise error("CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 1.00 GiB free)")
        return real(adapter, batch, *args, **kwargs)

    monkeypatch.setattr(benchmark.run.generation, "generate_with_capture", generate)
    return sizes


def stored_images(cfg) -> dict:
    """Relative path -> (H, W, 3) uint8 of every generated image the jobs stored."""
    from PIL import Image

    out = {}
    for job in plan_jobs(cfg).jobs:
        root = job_dir(cfg, job)
        for p in sorted(root.rglob("generated.png")):
            out[f"{job.indices}/{p.relative_to(root)}"] = np.asarray(Image.open(io.BytesIO(p.read_bytes())), np.int16)
    return out


def test_out_of_memory_reruns_the_job_with_half_the_batch_and_stores_the_same(tiny_model, tmp_path, monkeypatch):
    reference = smoke_config(tmp_path / "plain", tiny_model)
    assert execute(reference, scheduler="inline").finished == 2
    sizes = inject_oom(monkeypatch, times=1)
    cfg = smoke_config(tmp_path / "oom", tiny_model)
    summary = execute(cfg, scheduler="inline")
    assert (summary.finished, summary.failed) == (2, [])
    assert sizes == [2, -1, 1, 1, 2]  # job 1: OOM at 2, then 1 + 1; job 2: 2
    records = [json.loads((job_dir(cfg, j) / "result.json").read_text()) for j in plan_jobs(cfg).jobs]
    assert [r["batch_size"] for r in records] == [1, 2]
    assert [(r["device"], r["accelerator"]) for r in records] == [("cpu", "cpu")] * 2
    rows, reference_rows = stored_rows(cfg), stored_rows(reference)
    assert [r[:3] for r in rows] == [r[:3] for r in reference_rows] and len(rows) > 40
    assert [r[:3] for r, ref in zip(rows, reference_rows) if not math.isclose(r[3], ref[3], rel_tol=1e-5,
                                                                               abs_tol=1e-5)] == []
    images, reference_images = stored_images(cfg), stored_images(reference)
    assert len(images) == 4 and images.keys() == reference_images.keys()
    assert max(np.abs(images[k] - reference_images[k]).max() for k in images) <= 1  # one 8-bit step at most


@pytest.mark.parametrize("error", [torch.cuda.OutOfMemoryError, RuntimeError])
def test_out_of_memory_twice_is_a_failure_naming_the_batch_sizes(tiny_model, tmp_path, monkeypatch, error):
    cfg = smoke_config(tmp_path, tiny_model, max_samples=2, batch_size=4)
    inject_oom(monkeypatch, times=2, error=error)
    summary = execute(cfg, scheduler="inline")
    [job] = plan_jobs(cfg).jobs
    [failure] = summary.failed
    assert failure["error"].startswith("JobOutOfMemory: out of memory at batch sizes 4 and 2: CUDA out of memory.")
    assert json.loads((job_dir(cfg, job) / FAILED).read_text())["error"] == failure["error"]
    assert not is_done(cfg, job)


def test_on_a_worker_out_of_memory_is_reported_not_retried_by_dask(tiny_model, tmp_path, monkeypatch):
    # Dask's retries would run the job again at the full batch size; the worker function returns why instead.
    cfg = smoke_config(tmp_path, tiny_model, max_samples=2, batch_size=1)
    monkeypatch.setattr(benchmark.run.generation, "generate_with_capture",
                        lambda *a, **k: (_ for _ in ()).throw(RuntimeError("CUDA out of memory. Tried 1 GiB")))
    monkeypatch.setattr("distributed.get_worker", lambda: SimpleNamespace(name=0))  # run here, as worker 0
    [job] = plan_jobs(cfg).jobs
    assert run_job_on_worker(cfg, job, True) == ("JobOutOfMemory: out of memory at batch size 1: "
                                                 "CUDA out of memory. Tried 1 GiB")
