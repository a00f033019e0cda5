"""A job: one (task, model, shard of samples). Pure function of its inputs; writes its results atomically.

What a job stores and how it is keyed: :mod:`benchmark.store` (``docs/store.md``). A job records what does not
depend on report-time settings: per sample the quality metrics, segmentation scores, mask areas and the two
IMACS terms at every threshold of the stored grid; ``report`` forms IMACS at any (lambda, threshold) from them.
"""

from __future__ import annotations

import datetime as dt
import gc
import json
import logging
import shutil
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from benchmark.api.sample import SampleError, collate
from benchmark.api.sources import ModelSourceError, resolve_model_source
from benchmark.api.spec import ModelSpec, SamplingSettings
from benchmark.config import REPO_ROOT, RunConfig, TaskConfig, resolve_path
from benchmark.defaults import DEFAULT_THRESHOLD, THRESHOLD_GRID
from benchmark.metrics.weights import Unavailable, resolve_metric_weights
from benchmark.registry import ADAPTERS, SAMPLE_METRICS
from benchmark.run.tasks import build_dataset
from benchmark.scoring.terms import mask_areas, sample_terms, segmentation_rows, side_map
from benchmark.store import (FAILED, RESULT, DamagedJob, DigestCache, JobRecord, check_job, file_manifest, quarantine,
                             read_record, shard_name, short_hash, write_atomic, write_record)

if TYPE_CHECKING:  # torch (and the capture modules, which import it) are imported where a job runs: a run with
    import torch  # nothing to do never loads them

log = logging.getLogger("benchmark")
# The one model this process (a worker) keeps loaded: (load key, adapter). A worker runs one model's jobs after
# another (the runner orders them by model), so it loads each model once and never holds two.
_RESIDENT: list = [None, None]

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
    generation_key: str  # includes the device type (:meth:`RunConfig.generation_key`)
    indices: tuple[int, ...]
    sample_ids: tuple[str, ...]
    samples_hash: str  # digest of the shard's sample ids and files
    sampling: dict = field(default_factory=dict)
    timesteps: tuple[int, ...] = ()  # one-pass jobs: the timesteps of the noised ground truth (else generation)
    digests: tuple[str, ...] = field(default=(), compare=False)  # per sample, behind samples_hash
    run_id: str = field(default="", compare=False)  # the run that executes it: recorded, never part of the key
    device_type: str = "cpu"  # cpu | cuda | mps: what the run planned it for (in ``generation_key``)

    @property
    def key(self) -> str:
        """Deterministic key: task version, model identity, generation key, the shard's samples (``docs/store.md``)."""
        return (f"{self.task_name}-v{self.task_version}/{self.model.name}-{self.model_hash}/"
                f"{self.generation_key}/{shard_name(self.indices, self.samples_hash)}")

    @property
    def protocol(self) -> str:
        return "one_pass" if self.timesteps else "generation"

    @property
    def dask_key(self) -> str:
        return "job-" + self.key.replace("/", "--")


def model_order(job: Job) -> tuple:
    """Sort key that puts one model's jobs together (the identity :func:`load_adapter` loads by), so that a process
    that keeps one model loaded loads each once."""
    m = job.model
    return m.adapter, m.path, json.dumps(m.options, sort_keys=True, default=str), job.model_hash


def model_files_hash(spec: ModelSpec, digests: DigestCache | None = None) -> str:
    """SHA-256 (16 hex) of the model's identity: adapter, options and the contents of its files (the model's
    folder, and option values that name a folder or a cached hub id, such as ``vae``). File digests are
    remembered by (path, size, mtime), so a re-plan only stats files. A model that cannot be found hashes by
    name (its job then fails with the reason, as a row of the leaderboard)."""
    digests = digests or DigestCache()
    parts = [spec.adapter, json.dumps(spec.options, sort_keys=True, default=str)]
    for i, p in enumerate([spec.path] + [v for _, v in sorted(spec.options.items()) if isinstance(v, str)]):
        try:
            parts.append(digests.tree(resolve_model_source(p, REPO_ROOT), skip=("train_summary.json",)))
        except ModelSourceError:
            if i == 0:
                parts.append(f"missing:{p}")
    digests.save()
    return short_hash(parts, 16)


def pick_device(requested: str = "auto") -> "torch.device":
    import torch

    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(requested)


def job_device(requested: str, device_type: str, worker_gpu: int | None = None) -> "torch.device":
    """The device a job runs on, chosen in the job's own thread: PyTorch keeps the current CUDA device per thread,
    so a device set elsewhere (the worker's event loop) does not reach it. ``device_type`` is what the run planned
    the job for (part of its key); ``requested`` is the config's ``device``, whose index (``cuda:N``) applies to
    runs in this process; on a Dask worker ``worker_gpu`` is the worker's own GPU
    (:func:`benchmark.run.distributed.worker_gpu_index`). A job planned for CUDA on a machine without CUDA fails here,
    saying so, rather than storing CPU outputs under a CUDA key."""
    import torch

    if device_type != "cuda":
        return torch.device(device_type)
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count == 0:
        raise RuntimeError(f"the run planned this job for CUDA (device: {requested}), but this machine has no CUDA "
                           "GPU; set device: cpu, or run it where the GPUs are")
    index = worker_gpu
    if index is None:
        index = (torch.device(requested).index or 0) if requested.startswith("cuda") else 0
    device = torch.device("cuda", index % count)
    torch.cuda.set_device(device)  # for code that allocates on "the current device" in this thread
    return device


def accelerator_name(device: "torch.device") -> str:
    """What a job's numbers depend on besides the software: ``cpu``, ``mps`` or ``cuda:<GPU name>``."""
    import torch

    if device.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(device)}"
    return device.type


def load_adapter(spec: ModelSpec, device: torch.device, files_hash: str = ""):
    """The adapter for ``spec`` on ``device``; the process keeps this one model loaded and releases the previous.

    ``files_hash`` (:func:`model_files_hash`) is part of the load key so that a long-lived worker
    reloads a model whose files changed at the same path instead of serving the old weights. Each adapter
    finds its files through :func:`benchmark.api.sources.resolve_model_source` (a local folder, else the local
    hub cache; never a download)."""
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    # Loading is done once per worker; per-file progress bars would drown the run's own.
    transformers_logging.disable_progress_bar()
    diffusers_logging.disable_progress_bar()
    key = (spec.adapter, spec.path, json.dumps(spec.options, sort_keys=True, default=str), str(device), files_hash)
    if _RESIDENT[0] != key:
        release_model()  # before loading: two models never share the GPU or the host memory
        adapter = ADAPTERS.get(spec.adapter)(spec, device)
        _RESIDENT[:] = [key, adapter]
    return _RESIDENT[1]


def release_model() -> None:
    """Drop the resident model and return its memory: the objects (``gc``, also for reference cycles) and the
    CUDA caching allocator's blocks (``torch.cuda.empty_cache``), so that the next model has the whole GPU."""
    device = getattr(_RESIDENT[1], "device", None)
    _RESIDENT[:] = [None, None]
    free_memory(device)


def free_memory(device) -> None:
    gc.collect()
    if device is not None and str(device).startswith("cuda"):
        import torch

        torch.cuda.empty_cache()


def job_dir(cfg: RunConfig, job: Job) -> Path:
    return cfg.out_dir / "store" / job.key


def is_done(cfg: RunConfig, job: Job) -> bool:
    """Only ``result.json`` counts: it is written last and atomically, never a ``*.tmp`` or sample files."""
    return (job_dir(cfg, job) / RESULT).is_file()


def check_stored(cfg: RunConfig, job: Job, digests: DigestCache | None = None) -> bool:
    """True when the job is stored intact. A damaged job (unreadable ``result.json``, a file that is missing or
    not what the job wrote) is moved under ``store/quarantine/`` and False is returned: it runs again."""
    out = job_dir(cfg, job)
    if not (out / RESULT).is_file():
        return False
    try:
        check_job(out, digests)
        return True
    except DamagedJob as err:
        dest = quarantine(cfg.out_dir / "store", out, err.problems)
        log.warning("job %s is damaged (%s): moved to %s; it runs again", job.key, "; ".join(err.problems), dest)
        return False


def record_failure(cfg: RunConfig, job: Job, error: BaseException | str) -> None:
    """Keep a failed job's reason in the store (``failed.json``), so the report shows it as a row."""
    text = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
    write_atomic(job_dir(cfg, job) / FAILED, json.dumps({
        "key": job.key, "task": job.task_name, "task_version": job.task_version, "model": job.model.name,
        "model_hash": job.model_hash, "n_samples": len(job.indices), "error": text, "run_id": job.run_id}))


@contextmanager
def _torch_threads(n: int):
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class NonFiniteOutput(RuntimeError):
    """A batch's images or maps hold NaN or inf (e.g. a float16 overflow); the job fails instead of storing them."""


MAX_NON_FINITE_SHOWN = 8  # outputs named in a NonFiniteOutput message; the rest are counted


def non_finite_outputs(images: torch.Tensor, per_sample: list, chunk: list, image_name: str) -> list[str]:
    """One line per output of the batch that holds NaN or inf: ``images`` (B, 3, H, W) and each float array of
    each sample's :class:`~benchmark.results.sample_maps.SampleMaps`; empty when everything is finite."""
    import torch

    bad = []
    for i, (sample, maps) in enumerate(zip(chunk, per_sample)):
        n = int((~torch.isfinite(images[i])).sum())
        if n:
            bad.append(f"{image_name} of sample {sample.sample_id} has {n} non-finite values")
        for key, a in maps.arrays.items():
            n = int(a.size - np.isfinite(a).sum()) if a.dtype.kind == "f" else 0
            if n:
                bad.append(f"map {key} of sample {sample.sample_id} has {n} non-finite values")
    return bad


def quality_metrics() -> list[str]:
    """The registered per-sample quality metrics a generation job computes (those with a function; LPIPS comes
    with the set-metric inputs)."""
    return [e.name for e in SAMPLE_METRICS.entries() if e.info.get("kind") == "quality" and e.target is not None]


def quality_values(images: torch.Tensor, batch: dict, i: int, names: list[str] | None = None) -> dict[str, float]:
    """The quality metrics ``names`` (default :func:`quality_metrics`) of sample ``i`` of ``batch`` whose needs (a
    target, a region mask) it meets. ``images`` (B, 3, H, W) in [0, 1]."""
    out = {}
    for name in quality_metrics() if names is None else names:
        if any(batch.get(n) is None for n in SAMPLE_METRICS.info(name)["needs"]):
            continue
        mask = batch["region_mask"][i : i + 1] if batch.get("region_mask") is not None else None
        out[name] = SAMPLE_METRICS.get(name)(images[i : i + 1], batch["target"][i : i + 1], mask)
    return out


class JobOutOfMemory(RuntimeError):
    """A job ran out of accelerator memory at its batch size and at half of it; the message names both."""


def is_out_of_memory(err: BaseException) -> bool:
    """A CUDA out-of-memory error (``torch.cuda.OutOfMemoryError``, or the RuntimeError older code paths raise)."""
    import torch

    return isinstance(err, torch.cuda.OutOfMemoryError) or (isinstance(err, RuntimeError)
                                                           and "CUDA out of memory" in str(err))


def run_job(cfg: RunConfig, job: Job, progress=None, worker_gpu: int | None = None) -> JobRecord:
    """Run a job unless its result exists; returns its record.

    Runs with :data:`JOB_TORCH_THREADS` torch threads (restored afterwards) so that its numbers do not
    depend on where it runs. ``worker_gpu``: see :func:`job_device`. A CUDA out-of-memory error runs the job
    once more, here, with half the batch; a second one raises :class:`JobOutOfMemory`. Each sample's noise comes
    from its own seed, so a smaller batch makes the same samples; kernels chosen for another batch shape can
    change the last bits of float32 results (the record keeps the batch size)."""
    if check_stored(cfg, job):
        return read_record(job_dir(cfg, job) / RESULT)
    counter = _SampleCounter(progress)
    with _torch_threads(JOB_TORCH_THREADS):
        device = job_device(cfg.device, job.device_type, worker_gpu)
        tried = []
        for batch_size in dict.fromkeys((cfg.batch_size, max(1, cfg.batch_size // 2))):
            tried.append(batch_size)
            counter.restart()
            try:
                return _run_job(cfg, job, device, batch_size, counter)
            except Exception as err:  # noqa: BLE001 - only out-of-memory is retried; the rest is re-raised
                if not is_out_of_memory(err):
                    raise
                reason = str(err).splitlines()[0] if str(err) else type(err).__name__
            # outside the handler: the traceback's frames, and the tensors they hold, are gone
            free_memory(device)
            log.warning("job %s: out of memory at batch size %d", job.key, batch_size)
        sizes = " and ".join(map(str, tried))
        raise JobOutOfMemory(f"out of memory at batch size{'s' if len(tried) > 1 else ''} {sizes}: {reason}")


class _SampleCounter:
    """Tells ``progress`` each sample once, however many attempts a job makes."""

    def __init__(self, progress):
        self.progress, self.shown, self.done = progress, 0, 0

    def restart(self) -> None:
        self.done = 0

    def __call__(self, n: int) -> None:
        self.done += n
        if self.progress is not None and self.done > self.shown:
            self.progress(self.done - self.shown)
            self.shown = self.done


class JobProtocol:
    """How a job makes its maps, behind the one frame of :func:`_run_job`: how a batch is run under capture,
    which image is stored per sample, which quality metrics and set-metric inputs it has. Chosen once per job
    (:data:`PROTOCOLS`, by :attr:`Job.protocol`)."""

    image_name = ""  # the image stored per sample (``samples/<id>/<image_name>``)
    image_label = ""  # how a non-finite-output message names it

    def __init__(self, cfg: RunConfig, job: Job, adapter):
        from benchmark.run.generation import CaptureSettings

        self.cfg, self.job, self.adapter = cfg, job, adapter
        defaults = adapter.default_sampling()
        guidance = job.sampling.get("guidance_scale")
        self.sampling = SamplingSettings(job.sampling.get("num_inference_steps") or defaults.num_inference_steps,
                                         guidance if guidance is not None else defaults.guidance_scale, defaults.eta)
        self.capture = CaptureSettings(tuple(cfg.capture.levels), cfg.capture.time_groups)
        self.evaluations = self.sampling.num_inference_steps * (2 if self.sampling.guidance_scale > 1 else 1)
        # what the set metrics (FID/KID, LPIPS) are computed on: empty for a protocol without them
        self.set_images: dict[str, list] = {"generated": [], "target": [], "reference_set": []}

    def run_batch(self, batch: dict) -> tuple[torch.Tensor, object, object]:
        """``(images, accumulator, concept accumulator or None)`` of a collated batch: ``images`` (B, 3, H, W) in
        [0, 1] are what is stored per sample and drawn under the maps."""
        raise NotImplementedError

    def quality(self, images: torch.Tensor, batch: dict, i: int) -> dict[str, float]:
        """The quality metrics of sample ``i`` (none unless the protocol makes an image of its own)."""
        return {}

    def keep_for_set(self, images: torch.Tensor, chunk: list) -> None:
        """Keep what the set-metric inputs of the job are computed from."""

    @property
    def sample_metrics(self) -> list[str]:
        """The quality metrics the job evaluates for every sample (its record's ``sample_metrics``)."""
        return []


class GenerationProtocol(JobProtocol):
    """Generate from the conditions with capture; the generated image is scored against the target."""

    image_name, image_label = "generated.png", "generated image"

    def run_batch(self, batch):
        from benchmark.run.generation import generate_with_capture

        concept = self.adapter.concept_accumulator(self.sampling.num_inference_steps)
        images, acc = generate_with_capture(self.adapter, batch, self.sampling, self.cfg.seed, self.capture, concept)
        return images, acc, concept

    def quality(self, images, batch, i):
        return quality_values(images, batch, i)

    def keep_for_set(self, images, chunk):
        self.set_images["generated"].append(images)
        self.set_images["target"] += [s.target for s in chunk]
        self.set_images["reference_set"] += [s.meta.get("photo", s.target) for s in chunk]

    @property
    def sample_metrics(self):
        return quality_metrics()


class OnePassProtocol(JobProtocol):
    """One pass on the noised ground truth at the job's timesteps (``docs/one_pass.md``): maps only, drawn over
    the target; no quality metric."""

    image_name, image_label = "target.png", "target image"

    def run_batch(self, batch):
        from benchmark.run.one_pass import OnePassSettings, one_pass_with_capture

        concept = self.adapter.concept_accumulator(len(self.job.timesteps))
        acc, calls = one_pass_with_capture(self.adapter, batch, OnePassSettings(tuple(self.job.timesteps)),
                                           self.cfg.seed, self.capture, concept)
        self.evaluations = calls  # each call evaluates every sample of the batch once
        return batch["target"], acc, concept


PROTOCOLS: dict[str, type[JobProtocol]] = {"generation": GenerationProtocol, "one_pass": OnePassProtocol}


class _Timings(dict):
    """Seconds spent per stage of a job (the record's ``timings``); ``with timings(stage):`` adds to a stage."""

    def __init__(self):
        super().__init__(load=0.0, generate_capture=0.0, maps_store=0.0, metrics=0.0)

    @contextmanager
    def __call__(self, stage: str):
        t = time.perf_counter()
        try:
            yield
        finally:
            self[stage] += time.perf_counter() - t


def _run_job(cfg: RunConfig, job: Job, device: torch.device, batch_size: int, progress) -> JobRecord:
    """The steps of a job: load its samples and the model; per batch, run the protocol under capture, split the
    maps per sample, score them (from the float32 maps in memory) and store them; store the set-metric inputs;
    write the record last."""
    from benchmark.results.sample_maps import split_accumulator

    out = job_dir(cfg, job)
    shutil.rmtree(out / "samples", ignore_errors=True)  # what an interrupted attempt left is never mixed in
    (out / "set_inputs.npz").unlink(missing_ok=True)
    timings = _Timings()
    with timings("load"):
        dataset = build_dataset(TaskConfig.load(resolve_path(job.task_path)))
        adapter = load_adapter(job.model, device, job.model_hash)
        protocol = PROTOCOLS[job.protocol](cfg, job, adapter)
        samples, index_of, failures = _load_samples(dataset, job.indices)
    written: list[Path] = []  # every file this job writes: the record holds their sizes and checksums
    rows, terms = [], {}
    meta = {"model": job.model.name, "task": job.task_name}
    for start in range(0, len(samples), batch_size):
        chunk = samples[start : start + batch_size]
        batch = collate(chunk)
        with timings("generate_capture"):
            images, acc, concept = protocol.run_batch(batch)
        with timings("maps_store"):
            per_sample = split_accumulator(acc, batch, {**meta, "image_size": list(images.shape[-2:])}, concept)
            bad = non_finite_outputs(images, per_sample, chunk, protocol.image_label)
            if bad:  # nothing of this batch is written: NaN survives clamp(0, 1) and would be stored as a black PNG
                more = len(bad) - MAX_NON_FINITE_SHOWN
                raise NonFiniteOutput("; ".join(bad[:MAX_NON_FINITE_SHOWN])
                                      + (f"; and {more} more" if more > 0 else ""))
        with timings("metrics"):
            for i, (sample, maps) in enumerate(zip(chunk, per_sample)):
                values = {**segmentation_rows(maps), **mask_areas(maps), **protocol.quality(images, batch, i)}
                rows += [{"sample_id": sample.sample_id, "metric": k, "value": v, "note": ""}
                         for k, v in values.items()]
                terms[sample.sample_id] = sample_terms(maps)
            protocol.keep_for_set(images, chunk)
        with timings("maps_store"):
            for i, (sample, maps) in enumerate(zip(chunk, per_sample)):
                written += _store_sample(cfg, out / "samples" / sample.sample_id, maps, images[i], sample.reference,
                                         protocol.image_name, start + i)
        progress(len(chunk))
    with timings("metrics"):
        written += _store_set_inputs(cfg, out, protocol.set_images, device)
    record = JobRecord(
        key=job.key, task=job.task_name, task_version=job.task_version, model=job.model.name,
        adapter=job.model.adapter, model_hash=job.model_hash, generation_key=job.generation_key,
        loaded_weights=adapter.identity()["weights"], run_id=job.run_id,
        finished_at=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        samples=[{"sample_id": s.sample_id, "index": index_of[s.sample_id]} for s in samples],
        sample_ids=list(job.sample_ids), indices=list(job.indices), samples_hash=job.samples_hash,
        sample_digests=dict(zip(job.sample_ids, job.digests)), n_samples=len(samples), failures=failures,
        rows=rows, imacs_terms={"thresholds": list(THRESHOLD_GRID), "samples": terms}, protocol=job.protocol,
        timesteps=list(job.timesteps), model_evaluations_per_sample=protocol.evaluations,
        sampling=asdict(protocol.sampling), device=str(device), accelerator=accelerator_name(device),
        batch_size=batch_size, timings=dict(timings),
        store={"maps_dtype": cfg.store.maps_dtype, "images": cfg.store.images}, files=file_manifest(out, written),
        sample_metrics=protocol.sample_metrics)
    write_record(out, record)
    (out / FAILED).unlink(missing_ok=True)
    return record


def _load_samples(dataset, indices: tuple[int, ...]) -> tuple[list, dict[str, int], list[dict]]:
    """The samples of ``indices`` that load, their dataset index by id, and one failure row per sample that does
    not (``{sample_id, file, error}``)."""
    samples, index_of, failures = [], {}, []
    for idx in indices:
        try:
            sample = dataset[idx]
        except SampleError as err:
            failures.append({"sample_id": err.sample_id, "file": err.path, "error": err.reason})
            continue
        samples.append(sample)
        index_of[sample.sample_id] = idx
    return samples, index_of, failures


def _store_sample(cfg: RunConfig, d: Path, maps, image: torch.Tensor, reference: torch.Tensor, image_name: str,
                  position: int) -> list[Path]:
    """Store one sample under ``d``: ``maps.npz`` at ``store.maps_dtype``, and ``image_name`` (the generated or,
    for one pass, the target image, (3, H, W) in [0, 1]), ``reference.png`` and ``overlay.png`` unless
    ``store.images`` keeps no PNGs for the sample at ``position`` in its job. Returns the files written."""
    from benchmark.scoring.figures import sample_overlay, save_png, to_uint8

    d.mkdir(parents=True, exist_ok=True)
    written = [maps.save(d / "maps.npz", cfg.store.maps_dtype)]
    first = cfg.store.images_first
    if first is not None and position >= first:
        return written
    save_png(to_uint8(image), d / image_name)
    save_png(to_uint8(reference), d / "reference.png")
    # The stored overlay is drawn at the default threshold, from the float32 maps; the report draws its figures
    # at the run's.
    save_png(sample_overlay(image, reference, maps.get("g/ulam"), side_map(maps, "r"), DEFAULT_THRESHOLD),
             d / "overlay.png")
    return written + [d / image_name, d / "reference.png", d / "overlay.png"]


def _store_set_inputs(cfg: RunConfig, out: Path, images: dict, device: torch.device) -> list[Path]:
    """Inception features (FID/KID) and LPIPS per sample of this job, next to its result (``set_inputs.npz``);
    returns the files written."""
    if not images["generated"]:
        return []
    import torch

    from benchmark.metrics import extract_set_inputs  # imports torch

    def stack(values):
        return None if not values or any(v is None for v in values) else torch.stack(values)

    generated = torch.cat(images["generated"])
    inputs = extract_set_inputs(generated, stack(images["target"]), stack(images["reference_set"]),
                                cfg.metrics.weights_dir, device)
    return [inputs.save(out / "set_inputs.npz")]


def set_inputs_stale(cfg: RunConfig, job: Job) -> bool:
    """True for a finished generation job whose set-metric inputs lack FID/KID or LPIPS only because their weights
    were missing when it ran, and the weights are there now (or whose ``set_inputs.npz`` is missing)."""
    if job.protocol != "generation" or not is_done(cfg, job):
        return False
    path = job_dir(cfg, job) / "set_inputs.npz"
    if not path.is_file():
        return True
    with np.load(path, allow_pickle=False) as data:  # the notes alone: no torch for a run with nothing to do
        notes = json.loads(str(data["__meta__"])).get("notes", {})
    return any(notes.get(m, "").startswith(f"{m} unavailable:")
               and not isinstance(resolve_metric_weights(m, cfg.metrics.weights_dir), Unavailable)
               for m in ("fid", "lpips"))


def refresh_set_inputs(cfg: RunConfig, job: Job) -> None:
    """Recompute a finished job's ``set_inputs.npz`` from its stored outputs (the PNGs the features are defined
    on) and the task's ground truth, without generating again."""
    import torch

    out = job_dir(cfg, job)
    record = read_record(out / RESULT)
    generated, samples = _stored_outputs(cfg, job, record, "FID/KID and LPIPS inputs cannot be recomputed")
    images = {"generated": [torch.stack(generated)] if generated else [], "target": [s.target for s in samples],
              "reference_set": [s.meta.get("photo", s.target) for s in samples]}
    with _torch_threads(JOB_TORCH_THREADS):
        written = _store_set_inputs(cfg, out, images, job_device(cfg.device, job.device_type))
    record.files.update(file_manifest(out, written))  # the record names the new file's size and checksum
    write_record(out, record)


def missing_sample_metrics(cfg: RunConfig, job: Job) -> list[str]:
    """The registered quality metrics (:func:`quality_metrics`) a finished generation job has not evaluated
    because they were registered after it ran; :func:`add_sample_metrics` computes them without generating."""
    if job.protocol != "generation" or not is_done(cfg, job):
        return []
    try:
        held = set(read_record(job_dir(cfg, job) / RESULT).sample_metrics)
    except DamagedJob:  # set aside and regenerated by its own run
        return []
    return [m for m in quality_metrics() if m not in held]


def add_sample_metrics(cfg: RunConfig, job: Job, names: list[str]) -> JobRecord:
    """Compute the quality metrics ``names`` of a finished generation job from its stored outputs: each sample's
    ``generated.png`` (the 8-bit image as stored) against the task's target and region mask, for the samples that
    meet each metric's needs. Their rows are appended and the names added to ``sample_metrics``; the record is
    rewritten atomically, its files (and manifest) unchanged. Nothing is generated and the job keeps its key.
    :class:`FileNotFoundError` saying why for a job stored with ``store.images`` other than ``all``."""
    import torch

    out = job_dir(cfg, job)
    record = read_record(out / RESULT)
    generated, samples = _stored_outputs(cfg, job, record,
                                         f"per-sample metric(s) {', '.join(names)} cannot be computed")
    with _torch_threads(JOB_TORCH_THREADS):
        for image, sample in zip(generated, samples):
            values = quality_values(torch.stack([image]), collate([sample]), 0, names)
            record.rows += [{"sample_id": sample.sample_id, "metric": k, "value": v, "note": ""}
                            for k, v in values.items()]
    record.sample_metrics += [n for n in names if n not in record.sample_metrics]
    write_record(out, record)
    return record


def _stored_outputs(cfg: RunConfig, job: Job, record: JobRecord, what: str) -> tuple[list, list]:
    """The stored ``generated.png`` of every sample of a finished job, each (3, H, W) float32 in [0, 1], and the
    task's samples in the same order. :class:`FileNotFoundError` (starting with ``what``) for a job stored with
    ``store.images`` other than ``all``: not every image was kept."""
    import torch

    kept = record.store.get("images", "all")
    if kept != "all":
        raise FileNotFoundError(f"{what}: the job was stored with store.images {kept!r}, so not every generated.png "
                                "is kept; rerun the job with store.images: all")
    dataset = build_dataset(TaskConfig.load(resolve_path(job.task_path)))
    generated, samples = [], []
    for s in record.samples:
        with Image.open(job_dir(cfg, job) / "samples" / s["sample_id"] / "generated.png") as img:
            generated.append(torch.from_numpy(np.asarray(img.convert("RGB"), np.float32) / 255).permute(2, 0, 1))
        samples.append(dataset[s["index"]])
    return generated, samples
