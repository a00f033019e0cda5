"""Synthetic stores for benchmarking ``report``: valid job records with random values, no model and no dataset.

:func:`write_store` writes a run folder (``config.yaml`` and ``store/``) holding N models x the given tasks x
``n_samples`` samples, in shards of ``shard_size``, exactly as finished jobs leave them (``benchmark/run/jobs.py``):
a ``result.json`` (a :class:`~benchmark.store.JobRecord`) with the manifest of its files, per
sample a ``maps.npz`` (every level on a small grid, float16 storage as a run's default) and, for the first
``images_first`` samples of each job, the three PNGs; a ``set_inputs.npz`` with LPIPS per sample and, with
``feature_dim`` > 0, random Inception-like features (else FID / KID read as unavailable, as on a machine without
their weights). The last model of every task is a random-init baseline. ``report`` finds the jobs through the
config, checks every file against its record and builds every page from them.

:func:`write_history` writes a ``history.csv`` of a given number of nightly runs of the same config (new weights
every night, so every night is a new state), as ``report`` would have recorded it.

Values are random but shaped like real ones: IMACS terms non-increasing over the threshold grid, scores in
their ranges, each model shifted by its own offset (so pairs and correlations have something to find).
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from benchmark.config import RunConfig, TaskConfig, resolve_path
from benchmark.defaults import MAP_LEVELS, THRESHOLD_GRID
from benchmark.store import JobRecord, file_manifest, shard_name, short_hash, write_atomic, write_record

TASKS = ("tasks/viton_hd", "tasks/object_inpainting", "tasks/super_resolution")
ADAPTER = "reference_unet"
QUALITY = {"psnr": (20.0, 3.0), "ssim": (0.6, 0.1), "masked_psnr": (15.0, 3.0), "masked_ssim": (0.35, 0.1)}
SEGMENTATION = ("miou", "pixel_acc", "ap")
FIRST_NIGHT = dt.datetime(2026, 1, 1, 3, 0, tzinfo=dt.timezone.utc)


@dataclass(frozen=True)
class Grid:
    """The map shapes of the synthetic captures: latent (h, w), reference tokens (h_I, w_I), layers, heads, time
    groups and the image size of the masks and PNGs (H, W)."""

    latent: tuple[int, int] = (8, 6)
    tokens: tuple[int, int] = (4, 4)
    layers: int = 2
    heads: int = 2
    time_groups: int = 2
    image: tuple[int, int] = (32, 24)


def model_names(n_models: int) -> list[str]:
    """``model-00`` .. and, last, the random-init baseline ``model-00-random-init`` (a copy of ``model-00``)."""
    return [f"model-{i:02d}" for i in range(n_models - 1)] + ["model-00-random-init"]


def config_dict(out_dir: Path, n_models: int, tasks: tuple[str, ...] = TASKS, grid: Grid = Grid(),
                images_first: int = 1, workers: int = 2) -> dict:
    """The run config of a synthetic store under ``out_dir`` (leaderboards under ``out_dir/leaderboards``)."""
    models = []
    for name in model_names(n_models):
        spec = {"name": name, "adapter": ADAPTER, "path": f"synthetic/{name.removesuffix('-random-init')}"}
        if name.endswith("-random-init"):
            spec["options"] = {"random_init": 0}
        models.append(spec)
    return {"name": "synthetic", "seed": 0, "output_dir": str(out_dir),
            "leaderboard_dir": str(Path(out_dir) / "leaderboards"),
            "capture": {"levels": list(MAP_LEVELS), "time_groups": grid.time_groups},
            "store": {"maps_dtype": "float16", "images": {"first": images_first}},
            "cluster": {"workers": workers},
            "label": "synthetic store (random values)",
            "tasks": [{"task": t, "models": [dict(m) for m in models]} for t in tasks]}


def write_store(out_dir: Path, n_models: int, n_samples: int, tasks: tuple[str, ...] = TASKS,
                shard_size: int = 64, grid: Grid = Grid(), images_first: int = 1, feature_dim: int = 0,
                seed: int = 0, run_id: str | None = None, workers: int = 1) -> Path:
    """Write a synthetic run folder under ``out_dir``: ``n_models`` models (the last a random-init baseline) x
    ``tasks`` x ``n_samples`` samples in shards of ``shard_size``. Returns the path of its ``config.yaml``.
    Each (task, model) draws from its own seeded stream, so ``workers`` (processes) does not change the store."""
    out_dir = Path(out_dir).resolve()
    if n_models < 2:
        raise ValueError(f"n_models must be >= 2 (one model and its random-init baseline), got {n_models}")
    config = out_dir / "config.yaml"
    write_atomic(config, yaml.safe_dump(config_dict(out_dir, n_models, tasks, grid, images_first)))
    cfg = RunConfig.load(config)
    run_id = run_id or FIRST_NIGHT.isoformat(timespec="microseconds").replace("+00:00", "Z")
    units = [(config, t, m, n_samples, shard_size, grid, images_first, feature_dim, seed, run_id)
             for t, tr in enumerate(cfg.tasks) for m in range(len(tr.models))]
    if workers > 1:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            list(pool.map(_write_model, *zip(*units)))
    else:
        for unit in units:
            _write_model(*unit)
    return config


def _write_model(config: Path, t: int, m: int, n_samples: int, shard_size: int, grid: Grid, images_first: int,
                 feature_dim: int, seed: int, run_id: str) -> None:
    """Every shard of model ``m`` of task entry ``t`` of the synthetic ``config``."""
    cfg = RunConfig.load(config)
    tr = cfg.tasks[t]
    task, spec = TaskConfig.load(resolve_path(tr.task)), tr.models[m]
    gen_key, rng = cfg.generation_key(tr), np.random.default_rng([seed, t, m])
    offset = 0.1 * (len(tr.models) - m) / len(tr.models)  # earlier models score higher
    ids = [f"{i:06d}" for i in range(n_samples)]
    for start in range(0, n_samples, shard_size):
        indices = tuple(range(start, min(start + shard_size, n_samples)))
        _write_job(cfg, task, spec, gen_key, indices, [ids[i] for i in indices], grid, images_first, feature_dim,
                   offset, run_id, rng)


def _write_job(cfg: RunConfig, task: TaskConfig, spec, gen_key: str, indices: tuple[int, ...],
               sample_ids: list[str], grid: Grid, images_first: int, feature_dim: int, offset: float, run_id: str,
               rng: np.random.Generator) -> None:
    samples_hash = short_hash(sample_ids)
    model_hash = short_hash([spec.name, run_id], 16)
    key = f"{task.name}-v{task.version}/{spec.name}-{model_hash}/{gen_key}/{shard_name(indices, samples_hash)}"
    out = cfg.out_dir / "store" / key
    written, rows, terms = [], [], {}
    wanted = {m.name for m in task.metrics}
    for position, sid in enumerate(sample_ids):
        d = out / "samples" / sid
        path, areas = _sample_maps(grid, rng, {"model": spec.name, "task": task.name, "sample_id": sid},
                                   d / "maps.npz")
        written.append(path)
        if position < images_first:
            written += _pngs(d, grid, rng)
        values = {f"{s}_{side}": float(np.clip(rng.normal(0.55 + offset, 0.15), 0, 1))
                  for side in ("g", "r") for s in SEGMENTATION}
        values |= areas
        values |= {m: float(rng.normal(mu + offset * sd * 5, sd)) for m, (mu, sd) in QUALITY.items() if m in wanted}
        rows += [{"sample_id": sid, "metric": k, "value": v, "note": ""} for k, v in values.items()]
        terms[sid] = {side: _terms(rng, offset) for side in ("g", "r")}
    written.append(_set_inputs(out, len(sample_ids), feature_dim, offset, rng))
    digests = dict(zip(sample_ids, (short_hash([task.name, sid]) for sid in sample_ids)))
    record = JobRecord(
        key=key, task=task.name, task_version=task.version, model=spec.name, adapter=spec.adapter,
        model_hash=model_hash, generation_key=gen_key, loaded_weights=model_hash, run_id=run_id,
        finished_at=run_id[:19] + "+00:00",
        samples=[{"sample_id": sid, "index": i} for sid, i in zip(sample_ids, indices)], sample_ids=sample_ids,
        indices=list(indices), samples_hash=samples_hash, sample_digests=digests, n_samples=len(sample_ids),
        failures=[], rows=rows,
        imacs_terms={"thresholds": list(THRESHOLD_GRID), "samples": terms}, protocol="generation", timesteps=[],
        model_evaluations_per_sample=40, sampling={"num_inference_steps": 20, "guidance_scale": 3.0, "eta": 0.0},
        device="cpu", accelerator="cpu",
        timings={"load": 0.0, "generate_capture": 0.0, "maps_store": 0.0, "metrics": 0.0},
        store={"maps_dtype": cfg.store.maps_dtype, "images": cfg.store.images}, files=file_manifest(out, written),
        sample_metrics=sorted(QUALITY))
    write_record(out, record)


def _terms(rng: np.random.Generator, offset: float) -> dict:
    """IMACS terms ``a`` (inside the mask) and ``b`` (outside) on the threshold grid: in [0, 1], non-increasing
    as the threshold rises, ``a`` mostly above ``b``."""
    t = np.asarray(THRESHOLD_GRID)
    a = np.clip(rng.uniform(0.3, 0.6) + offset, 0, 1) * (1 - t) ** rng.uniform(1, 3)
    b = rng.uniform(0.05, 0.2) * (1 - t) ** rng.uniform(4, 12)
    return {"a": a.tolist(), "b": b.tolist()}


def _sample_maps(grid: Grid, rng: np.random.Generator, meta: dict, path: Path) -> tuple[Path, dict]:
    """Write random maps at every level and both sides (``rm/`` as eq. 17), SRAM and the two masks to ``path``, in
    the stored float16 form (:meth:`SampleMaps.save`: each normalisable map as float16 in [0, 1] beside its float32
    (min, span), the ULAMs float32) that :meth:`SampleMaps.load` reads back. Drawn in that form and written without
    compression (:func:`_npz`): a 100k-sample store is written in minutes, where ``SampleMaps.save`` took an hour.
    Returns ``path`` and the masks' areas (``area_g``, ``area_r``) as a job records them."""
    from benchmark.results.sample_maps import RANGE_PREFIX, normalisable  # heavy: torch

    arrays = {}
    for side, shape in (("g", grid.latent), ("r", grid.tokens), ("rm", grid.tokens)):
        for level, lead in (("layer_heads", (grid.layers, grid.heads)), ("llam", (grid.layers,)),
                            ("hlam", (grid.heads,)), ("tlam", (grid.time_groups,)), ("ulam", ())):
            arrays[f"{side}/{level}"] = rng.random((*lead, *shape), dtype=np.float32)
    for key in [k for k, a in arrays.items() if normalisable(k, a)]:
        arrays[key] = arrays[key].astype(np.float16)
        lo = rng.random((*arrays[key].shape[:-2], 1), dtype=np.float32) * 0.01
        arrays[f"{RANGE_PREFIX}{key}"] = np.concatenate([lo, lo + 0.01], -1)
    n_latent, n_tokens = grid.latent[0] * grid.latent[1], grid.tokens[0] * grid.tokens[1]
    volume = rng.random((n_latent, n_tokens), dtype=np.float32)
    arrays["sr/volume"] = (volume / volume.sum(1, keepdims=True)).astype(np.float16)
    for name in ("mask/region", "mask/reference"):
        arrays[name] = _box(grid.image, rng)
    meta = {**meta, "image_size": list(grid.image), "layers": [f"layer{i}" for i in range(grid.layers)],
            "latent_grid": list(grid.latent), "token_grid": list(grid.tokens), "dropped_tokens": [], "steps": 20,
            "time_groups": grid.time_groups, "levels": list(MAP_LEVELS),
            "heads": [grid.heads] * grid.layers, "reference_side": True, "maps_dtype": "float16"}
    arrays["__meta__"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    areas = {f"area_{side}": float(arrays[key].mean()) for side, key in (("g", "mask/region"), ("r", "mask/reference"))}
    return write_atomic(path, _npz(arrays)), areas


def _npz(arrays: dict[str, np.ndarray]) -> bytes:
    """The bytes of ``np.savez(..., **arrays)`` (an uncompressed zip of ``.npy`` members, read by ``np.load``),
    formed directly: ``np.savez`` spends ~0.3 ms a member in its writer, the bulk of writing a large store."""
    import io
    import struct
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        for name, a in arrays.items():
            a = np.asarray(a) if np.asarray(a).flags.c_contiguous else np.asarray(a).copy()
            header = f"{{'descr': '{a.dtype.str}', 'fortran_order': False, 'shape': {a.shape}, }}".encode()
            header += b" " * (-(10 + len(header) + 1) % 64) + b"\n"  # npy 1.0: data aligned to 64 bytes
            member = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))  # same store, same bytes
            z.writestr(member, b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header + a.tobytes())
    return buf.getvalue()


def _box(size: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """(H, W) uint8 mask of a random box covering between a tenth and about half of the image."""
    h, w = size
    bh, bw = rng.integers(h // 3, 3 * h // 4 + 1), rng.integers(w // 3, 3 * w // 4 + 1)
    top, left = rng.integers(0, h - bh + 1), rng.integers(0, w - bw + 1)
    mask = np.zeros(size, np.uint8)
    mask[top:top + bh, left:left + bw] = 1
    return mask


def _pngs(d: Path, grid: Grid, rng: np.random.Generator) -> list[Path]:
    """generated.png, reference.png and overlay.png of random pixels at the grid's image size."""
    from PIL import Image

    paths = []
    for name in ("generated.png", "reference.png", "overlay.png"):
        pixels = rng.integers(0, 256, (*grid.image, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(d / name)
        paths.append(d / name)
    return paths


def _set_inputs(out: Path, n: int, feature_dim: int, offset: float, rng: np.random.Generator) -> Path:
    """``set_inputs.npz``: LPIPS per sample; Inception-like features of ``feature_dim`` (0: unavailable)."""
    from benchmark.metrics import SetInputs  # heavy: torch (benchmark.metrics.set_metrics)

    lpips = np.clip(rng.normal(0.3 - offset, 0.08, n), 0, 1)
    if feature_dim:
        ref = rng.random((n, feature_dim), dtype=np.float32)
        gen = ref + rng.normal(0.0, 0.3 - offset, (n, feature_dim)).astype(np.float32)
        return SetInputs(gen, ref, lpips).save(out / "set_inputs.npz")
    why = "unavailable: synthetic store without Inception features"
    return SetInputs(None, None, lpips, {"fid": f"fid {why}", "kid": f"kid {why}"}).save(out / "set_inputs.npz")


def write_history(path: Path, config: Path, n_nights: int, n_samples: int, seed: int = 0) -> Path:
    """A ``history.csv`` of ``n_nights`` nightly runs of the synthetic ``config`` (one night apart, new weights
    each night): per night, task and model, the model means and CIs of the metrics a report records."""
    import pandas as pd

    from benchmark.report import history  # heavy: pandas
    from benchmark.report.tables import write_csv  # heavy: pandas

    columns = history.COLUMNS + history.CI_COLUMNS
    accelerator = getattr(history, "ACCELERATOR", None)  # a column of history files that record the accelerator

    cfg = RunConfig.load(config)
    rng = np.random.default_rng(seed)
    scoring_key, git = cfg.scoring_key(), "synthetic"
    samples_key = short_hash(sorted(f"{i:06d}" for i in range(n_samples)))
    blocks = []
    for tr in cfg.tasks:
        task = TaskConfig.load(resolve_path(tr.task))
        metrics = ["imacs_g", "imacs_r", "area_g", "area_r", "lpips"]
        metrics += [f"{s}_{side}" for side in ("g", "r") for s in SEGMENTATION]
        metrics += [m.name for m in task.metrics if m.name in QUALITY]
        for spec in tr.models:
            identity = short_hash([spec.name, spec.adapter, spec.path, spec.options])
            gen_key = cfg.generation_key(tr)
            for night in range(n_nights):
                run_id = (FIRST_NIGHT + dt.timedelta(days=night)).isoformat(timespec="microseconds")
                run_id = run_id.replace("+00:00", "Z")
                mean = rng.random(len(metrics))
                blocks.append(pd.DataFrame({
                    "run_id": run_id, "git": git, "task": task.name, "task_version": task.version, "model": spec.name,
                    "identity": identity, "model_hash": short_hash([spec.name, run_id], 16),
                    "generation_key": gen_key, "scoring_key": scoring_key, "samples_key": samples_key,
                    "n": n_samples, "metric": metrics, "value": mean, "ci_low": mean - 0.02, "ci_high": mean + 0.02}))
    frame = pd.concat(blocks, ignore_index=True).sort_values(["run_id", "task", "model", "metric"], kind="stable")
    if accelerator:
        frame[accelerator], columns = "cpu", columns + [accelerator]
    return write_csv(frame[columns].reset_index(drop=True), Path(path))
