"""A job: one (task, model, shard of samples). Pure function of its inputs; writes its results atomically.

Store layout (under the run's output dir)::

    store/<task>-v<version>/<model>-<weights hash>/<config hash>/shard-<k>-samples-<first>-<last>/
        result.json                 rows, failures, timings (written last: its presence = job done)
        samples/<id>/generated.png  the output
        samples/<id>/maps.npz       maps + masks + metadata (benchmark.results.sample_maps)
        samples/<id>/overlay.png    ULAM_r on the reference, ULAM_g on the output (eq. 9)
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import traceback
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from benchmark.api.model import ModelSpec, SamplingSettings
from benchmark.api.sample import SampleError, collate
from benchmark.config import RunConfig, TaskConfig, resolve_path
from benchmark.figures import sample_overlay, save_png, to_uint8
from benchmark.capture.joint_capture import OutputSpaceAccumulator
from benchmark.generation import CaptureSettings, generate_with_capture
from benchmark.results.sample_maps import split_accumulator
from benchmark.scoring import imacs_scores, segmentation_rows

_MODELS: dict = {}  # per-process (per-worker) model cache: models load once per worker

# Torch intra-op threads while a job runs. CPU kernels split their reductions by thread count, so a job's
# numbers depend on it; one fixed count makes inline runs and any number of workers store the same numbers.
# Throughput on CPU comes from more workers (``cluster.workers``), not from threads inside a job.
JOB_TORCH_THREADS = 1


@dataclass(frozen=True)
class Job:
    task_path: str
    task_name: str
    task_version: int
    model: ModelSpec
    model_hash: str
    config_hash: str
    shard: int
    indices: tuple[int, ...]
    sampling: dict = field(default_factory=dict)

    @property
    def key(self) -> str:
        """Deterministic key: task version, model identity (incl. weights hash), config hash, shard.

        The shard part names its sample range too: ``shard_size`` is not in the config hash, so the
        shard number alone would let a run with another shard size take a stored shard for its own."""
        span = f"{self.indices[0]}-{self.indices[-1]}" if self.indices else "none"
        return (f"{self.task_name}-v{self.task_version}/{self.model.name}-{self.model_hash}/"
                f"{self.config_hash}/shard-{self.shard:04d}-samples-{span}")

    @property
    def dask_key(self) -> str:
        return "job-" + self.key.replace("/", "--")


def model_files_hash(spec: ModelSpec) -> str:
    """SHA-256 (16 hex) of the model's files on disk (folder + option paths such as ``vae``); hub ids hash by name."""
    h = hashlib.sha256(spec.adapter.encode())
    paths = [resolve_path(spec.path)] + [resolve_path(v) for k, v in sorted(spec.options.items())
                                         if isinstance(v, str) and resolve_path(v).exists()]
    for root in paths:
        if not root.exists():
            h.update(str(spec.path).encode())
            continue
        files = sorted(p for p in (root.rglob("*") if root.is_dir() else [root]) if p.is_file())
        for p in files:
            if p.name == "train_summary.json":
                continue
            h.update(str(p.relative_to(root)).encode())
            size = p.stat().st_size
            with open(p, "rb") as f:
                h.update(f.read() if size < 256 << 20 else f.read(1 << 20) + str(size).encode())
    h.update(json.dumps(spec.options, sort_keys=True, default=str).encode())
    return h.hexdigest()[:16]


def pick_device(requested: str = "auto") -> torch.device:
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(requested)


def load_adapter(spec: ModelSpec, device: torch.device, files_hash: str = ""):
    """The adapter for ``spec`` on ``device``, loaded once per process.

    ``files_hash`` (:func:`model_files_hash`) is part of the cache key so that a long-lived worker
    reloads a model whose files changed at the same path instead of serving the old weights."""
    from benchmark import adapters  # noqa: F401
    from benchmark.registry import ADAPTERS

    key = (spec.adapter, spec.path, json.dumps(spec.options, sort_keys=True, default=str), str(device), files_hash)
    if key not in _MODELS:
        resolved = ModelSpec(spec.name, spec.adapter, str(resolve_path(spec.path)),
                             {k: (str(resolve_path(v)) if isinstance(v, str) and resolve_path(v).exists() else v)
                              for k, v in spec.options.items()})
        _MODELS[key] = ADAPTERS.get(spec.adapter)(resolved, device)
    return _MODELS[key]


def job_dir(cfg: RunConfig, job: Job) -> Path:
    return cfg.out_dir / "store" / job.key


def is_done(cfg: RunConfig, job: Job) -> bool:
    """Only ``result.json`` counts: it is written last and atomically, never a ``*.tmp`` or sample files."""
    return (job_dir(cfg, job) / "result.json").is_file()


@contextmanager
def _torch_threads(n: int):
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _downstream(images: torch.Tensor, batch: dict, i: int) -> dict[str, float]:
    from benchmark.metrics import masked_psnr, masked_ssim, psnr, ssim

    if batch.get("target") is None:
        return {}
    pred, tgt = images[i : i + 1], batch["target"][i : i + 1]
    rows = {"psnr": float(psnr(pred, tgt)[0]), "ssim": float(ssim(pred, tgt)[0])}
    if batch.get("region_mask") is not None:
        mask = batch["region_mask"][i : i + 1]
        mp, ms = masked_psnr(pred, tgt, mask), masked_ssim(pred, tgt, mask)
        rows["masked_psnr"] = float(mp.values[0])
        rows["masked_ssim"] = float(ms.values[0])
    return rows


def run_job(cfg: RunConfig, job: Job, progress=None) -> dict:
    """Run a job unless its result exists; returns the result record.

    Runs with :data:`JOB_TORCH_THREADS` torch threads (restored afterwards) so that its numbers do not
    depend on where it runs."""
    done = job_dir(cfg, job) / "result.json"
    if done.is_file():
        return json.loads(done.read_text())
    with _torch_threads(JOB_TORCH_THREADS):
        return _run_job(cfg, job, progress)


def _run_job(cfg: RunConfig, job: Job, progress) -> dict:
    from benchmark.tasks import build_dataset

    out = job_dir(cfg, job)
    done = out / "result.json"
    timings = {"load": 0.0, "generate_capture": 0.0, "maps_store": 0.0, "metrics": 0.0}
    t = time.perf_counter()
    task = TaskConfig.load(resolve_path(job.task_path))
    dataset = build_dataset(task)
    device = pick_device(cfg.device)
    adapter = load_adapter(job.model, device, job.model_hash)
    defaults = adapter.default_sampling()
    sampling = SamplingSettings(job.sampling.get("num_inference_steps") or defaults.num_inference_steps,
                                job.sampling.get("guidance_scale") if job.sampling.get("guidance_scale") is not None
                                else defaults.guidance_scale, defaults.eta)
    capture = CaptureSettings(tuple(cfg.capture.levels), cfg.capture.time_groups)
    samples, failures, rows = [], [], []
    for idx in job.indices:
        try:
            samples.append(dataset[idx])
        except SampleError as err:
            failures.append({"sample_id": err.sample_id, "file": err.path, "error": err.reason})
    timings["load"] += time.perf_counter() - t
    sample_dir = out / "samples"
    for start in range(0, len(samples), cfg.batch_size):
        chunk = samples[start : start + cfg.batch_size]
        batch = collate(chunk)
        t = time.perf_counter()
        concept = OutputSpaceAccumulator(sampling.num_inference_steps) if adapter.capture_path == "joint" else None
        images, acc = generate_with_capture(adapter, batch, sampling, cfg.seed, capture, concept)
        timings["generate_capture"] += time.perf_counter() - t
        t = time.perf_counter()
        per_sample = split_accumulator(acc, batch, {"model": job.model.name, "task": job.task_name,
                                                    "image_size": list(images.shape[-2:])}, concept)
        for i, (sample, maps) in enumerate(zip(chunk, per_sample)):
            d = sample_dir / sample.sample_id
            d.mkdir(parents=True, exist_ok=True)
            save_png(to_uint8(images[i]), d / "generated.png")
            maps.save(d / "maps.npz")
            r_key = "rm/ulam" if "rm/ulam" in maps.arrays else "r/ulam"
            save_png(sample_overlay(images[i], sample.reference, maps.get("g/ulam"), maps.get(r_key),
                                    cfg.scoring.threshold), d / "overlay.png")
        timings["maps_store"] += time.perf_counter() - t
        t = time.perf_counter()
        for i, (sample, maps) in enumerate(zip(chunk, per_sample)):
            values: dict[str, float] = {}
            notes: dict[str, str] = {}
            for name, res in imacs_scores(maps, cfg.scoring.lam, cfg.scoring.threshold).items():
                values[name] = res.as_float()
                if res.undefined:
                    notes[name] = res.undefined
            values.update(segmentation_rows(maps))
            values.update(_downstream(images, batch, i))
            for metric, value in values.items():
                rows.append({"sample_id": sample.sample_id, "metric": metric, "value": value,
                             "note": notes.get(metric, "")})
        timings["metrics"] += time.perf_counter() - t
        if progress is not None:
            progress(len(chunk))
    record = {"key": job.key, "task": job.task_name, "task_version": job.task_version, "model": job.model.name,
              "adapter": job.model.adapter, "model_hash": job.model_hash, "config_hash": job.config_hash,
              "shard": job.shard, "n_samples": len(samples), "failures": failures, "rows": rows,
              "sampling": asdict(sampling), "device": str(device), "timings": timings}
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / f"result.json.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(record))
    os.replace(tmp, done)
    return record


def run_job_safely(cfg: RunConfig, job: Job) -> dict:
    """For the inline runner: a failing job becomes a record with its traceback instead of an exception."""
    try:
        return run_job(cfg, job)
    except Exception as err:  # noqa: BLE001 - reported per job, the run goes on
        return {"key": job.key, "error": f"{type(err).__name__}: {err}", "traceback": traceback.format_exc()}
