"""``python -m benchmark perf --scale real``: every adapter end to end at its published resolution.

For each adapter, in a process of its own (so that its peak memory is its own): a random-init model of the
published architecture (:mod:`benchmark.models.published`) saved in the adapter's folder format, a one-sample
dataset in the real layout at the published size, and one job through the run's code path (:func:`execute`:
dataset sample, generation with capture, store, scores). Then, on the loaded model, one generation without
capture and one with, timed per denoiser call (CUDA events on a GPU). Reported: seconds per step with and
without capture, generation wall time, peak memory (process RSS high-water mark on CPU; CUDA allocated on a GPU),
the accumulator state, bytes stored per sample by file, and (``--precision``) the bfloat16 run's maps and
IMACS_g against float32 on the same inputs.

``real_scale_run(adapter, folder, reduced=True)`` is the same path at reduced width: the real-resolution tests.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from benchmark.api.model import ModelSpec
from benchmark.api.sample import collate
from benchmark.config import REPO_ROOT, RunConfig, TaskConfig
from benchmark.errors import UserError
from benchmark.models.published import PUBLISHED, Published, build
from benchmark.perf.capture import _Clock, _HookTimer, _device, _peak_bytes, _release, _reset_peak
from benchmark.procedural import generate_cocoee, generate_viton_hd
from benchmark.registry import ADAPTERS
from benchmark.run.generation import CaptureSettings, generate_with_capture
from benchmark.run.jobs import job_dir, load_adapter
from benchmark.run.runner import execute, plan_jobs
from benchmark.run.tasks import build_dataset
from benchmark.scoring.imacs import imacs
from benchmark.scoring.maps import minmax
from benchmark.store import RESULT, read_record

ADAPTER_ORDER = tuple(PUBLISHED)


# --- one adapter through the run's code path ---------------------------------------------------------------------
def write_dataset(folder: Path, pub: Published) -> Path:
    """A real-layout dataset tree with the samples at the published size; returns the task YAML."""
    import yaml

    h, w = pub.size
    if pub.dataset == "viton_hd":  # two test samples: an unpaired pair needs another sample's garment
        root, base = generate_viton_hd(folder / "viton", n_train=0, n_test=2, size=(h, w)), "viton_hd/task.yaml"
    else:
        root, base = generate_cocoee(folder / "cocoee", n_train=0, n_test=1, size=h) / "test", \
            "object_inpainting/task.yaml"
    task = folder / f"{pub.adapter}_task.yaml"
    task.write_text(yaml.safe_dump({"base": str(REPO_ROOT / "tasks" / base), "name": f"{pub.dataset}_published",
                                    "dataset": {"root": str(root), "size": [h, w]},
                                    "metrics": [{"name": "psnr", "direction": "higher"},
                                                {"name": "ssim", "direction": "higher"}]}))
    return task


def run_config(folder: Path, adapter: str, model_path: str, options: dict, task: Path, device: str,
               steps: int, dtype: str | None = None):
    if dtype is not None:
        options = {**options, "dtype": dtype}
    return RunConfig.from_dict({
        "name": f"real-scale-{adapter}", "output_dir": str(folder / "run"), "label": "random-init published "
        "architecture", "device": device, "batch_size": 1, "shard_size": 1, "capture": {"time_groups": 2},
        "tasks": [{"task": str(task), "max_samples": 1, "sampling": {"num_inference_steps": steps},
                   "models": [{"name": adapter, "adapter": adapter, "path": model_path, "options": options}]}]})


def real_scale_run(adapter: str, folder: Path, reduced: bool = True, device: str = "cpu", steps: int = 2) -> dict:
    """Build ``adapter``'s published architecture (reduced or not) and run one sample through :func:`execute`;
    returns {record, cfg, spec, task, build_s, job_s, job_peak}."""
    folder = Path(folder)
    start = time.perf_counter()
    path, options = build(adapter, folder / "model", reduced)
    task = write_dataset(folder, PUBLISHED[adapter])
    build_s = time.perf_counter() - start
    cfg = run_config(folder, adapter, path, options, task, device, steps)
    dev = torch.device(device)
    _reset_peak(dev)
    start = time.perf_counter()
    summary = execute(cfg, scheduler="inline")
    job_s = time.perf_counter() - start
    if summary.failed:
        failed = [p for p in (cfg.out_dir / "store").rglob("failed.json")]
        raise RuntimeError(f"{adapter}: the job failed: "
                           + (json.loads(failed[0].read_text()).get("error", "?") if failed else "no failure record"))
    job = plan_jobs(cfg).jobs[0]
    return {"record": read_record(job_dir(cfg, job) / RESULT), "cfg": cfg, "job": job, "task": task,
            "build_s": build_s, "job_s": job_s, "job_peak": _peak_bytes(dev)}


def denoiser(adapter) -> torch.nn.Module:
    """The module each model step calls: the capture module, or for an ldm model (whose sampler calls
    ``model.diffusion_model`` directly) its ``diffusion_model``."""
    module = adapter.capture_module()
    return getattr(module, "diffusion_model", module)


def _timed_generation(adapter, batch, sampling, seed: int, capture, device: torch.device) -> dict:
    """One generation: wall seconds, the denoiser's calls (CUDA events on a GPU), the peak memory, the state."""
    clock = _Clock(device)
    calls = _HookTimer([denoiser(adapter)], clock)
    try:
        _release(device)
        _reset_peak(device)
        start = clock.now()
        images, acc = generate_with_capture(adapter, batch, sampling, seed, capture)
        if acc is not None:
            acc.flush()
        wall = clock.since(start)[0]
        peak = _peak_bytes(device)
        call_times = [c[0] for c in calls.take()]
    finally:
        calls.remove()
    return {"wall_s": wall, "denoiser_s": sum(call_times), "calls": len(call_times), "peak": peak,
            "state_bytes": acc.state_bytes() if acc is not None else 0, "images": images, "acc": acc}


def measure_adapter(adapter: str, reduced: bool, device: str, steps: int, precision: bool) -> dict:
    """Everything of one adapter's row (run in its own process by :func:`main`)."""
    with tempfile.TemporaryDirectory(prefix=f"real-scale-{adapter}-") as tmp:
        run = real_scale_run(adapter, Path(tmp), reduced, device, steps)
        record, cfg, job = run["record"], run["cfg"], run["job"]
        dev = torch.device(device)
        model = load_adapter(job.model, dev, job.model_hash)
        batch = collate([build_dataset(TaskConfig.load(run["task"]))[job.indices[0]]])
        sampling = type(model.default_sampling())(**record.sampling)
        capture = CaptureSettings(tuple(cfg.capture.levels), cfg.capture.time_groups)
        plain = _timed_generation(model, batch, sampling, cfg.seed, CaptureSettings(enabled=False), dev)
        captured = _timed_generation(model, batch, sampling, cfg.seed, capture, dev)
        files: dict[str, int] = {}
        for name, (size, *_) in record.files.items():
            key = Path(name).name if "/samples/" in f"/{name}" else name
            files[key] = files.get(key, 0) + size
        row = {"adapter": adapter, "size": list(PUBLISHED[adapter].size), "device": str(dev),
               "parameters": sum(p.numel() for p in denoiser(model).parameters()),
               "steps": sampling.num_inference_steps, "calls_per_step": captured["calls"] / sampling.num_inference_steps,
               "build_s": run["build_s"], "job_s": run["job_s"], "job_peak": run["job_peak"],
               "job_timings": record.timings,
               "plain": {k: plain[k] for k in ("wall_s", "denoiser_s", "calls", "peak")},
               "capture": {k: captured[k] for k in ("wall_s", "denoiser_s", "calls", "peak", "state_bytes")},
               "files": files, "n_samples": record.n_samples,
               "finite_rows": all(r["value"] == r["value"] for r in record.rows if r["value"] is not None)}
        if precision:
            row["bfloat16"] = precision_error(adapter, model, batch, sampling, cfg, captured, dev)
        return row


def precision_error(adapter: str, model, batch, sampling, cfg, reference: dict, device: torch.device) -> dict:
    """The bfloat16 model on the same inputs and seeds against the float32 run ``reference``: max abs error of
    the min-max normalised maps per level and side, and the IMACS_g difference."""
    spec = model.spec
    half = ADAPTERS.get(adapter)(ModelSpec(spec.name, spec.adapter, spec.path, {**spec.options, "dtype": "bfloat16"}),
                                 device)
    run = _timed_generation(half, batch, sampling, cfg.seed,
                            CaptureSettings(tuple(cfg.capture.levels), cfg.capture.time_groups), device)
    full_acc, half_acc = reference["acc"], run["acc"]
    errors = {}
    for side, maps in (("g", lambda a: a.generated_maps()), ("r", lambda a: a.reference_maps())):
        if side == "r" and full_acc.tokens.grid == (1, 1):
            continue  # one reference token: no reference-side map
        a, b = maps(full_acc), maps(half_acc)
        for level in a:
            errors[f"{side}/{level}"] = (minmax(b[level]) - minmax(a[level])).abs().max().item()
    mask = batch["region_mask"][0]
    value = {k: imacs(acc.generated_maps()["ulam"][0], mask).value for k, acc in (("f32", full_acc), ("bf16", half_acc))}
    return {"map_errors": errors, "imacs_g_diff": abs(value["f32"] - value["bf16"]),
            "finite": bool(torch.isfinite(run["images"]).all())}


# --- the table -----------------------------------------------------------------------------------------------------
def _mib(n: float) -> str:
    return f"{n / 2**20:,.0f}"


def render(rows: list[dict], reduced: bool, command: str, failures: dict[str, str]) -> str:
    dev = rows[0]["device"] if rows else "?"
    width = "reduced widths, the real-resolution tests' models" if reduced else "published widths"
    out = [f"### Every adapter end to end at its published resolution ({width})", "",
           f"Random-init weights; one sample, batch 1, {rows[0]['steps'] if rows else '?'} steps; device {dev}; "
           f"torch {torch.__version__}, {torch.get_num_threads()} threads for the timed generations (the job itself "
           "runs with one thread, as every job does).", "",
           "| adapter | architecture | output | denoiser parameters | s / step, no capture | s / step, capture | "
           "capture overhead | generation s, no capture / capture | job s (run path) | peak MiB, job / no capture / "
           "capture | accumulator MiB |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        pub, steps = PUBLISHED[r["adapter"]], r["steps"]
        p, c = r["plain"], r["capture"]
        overhead = c["denoiser_s"] / p["denoiser_s"] - 1 if p["denoiser_s"] else float("nan")
        out.append(f"| {r['adapter']} | {pub.architecture} | {r['size'][0]}x{r['size'][1]} | "
                   f"{r['parameters'] / 1e6:,.0f} M | {p['denoiser_s'] / steps:.2f} | {c['denoiser_s'] / steps:.2f} | "
                   f"{overhead:+.1%} | {p['wall_s']:.1f} / {c['wall_s']:.1f} | {r['job_s']:.1f} | "
                   f"{_mib(r['job_peak'])} / {_mib(p['peak'])} / {_mib(c['peak'])} | {c['state_bytes'] / 2**20:.2f} |")
    for adapter, why in failures.items():
        out.append(f"| {adapter} | failed: {why} | | | | | | | | | |")
    out += ["", "Bytes stored per sample, by file (one-sample job; `set_inputs.npz` holds the set metrics' inputs):", "",
            "| adapter | " + " | ".join(FILES) + " | total |", "|---|" + "---|" * (len(FILES) + 1)]
    for r in rows:
        sizes = [r["files"].get(f, 0) for f in FILES]
        out.append(f"| {r['adapter']} | " + " | ".join(f"{s:,}" if s else "-" for s in sizes) + f" | {sum(sizes):,} |")
    half = [r for r in rows if "bfloat16" in r]
    if half:
        out += ["", "bfloat16 against float32 on the same inputs and seed (max abs error of min-max normalised maps; "
                "g: generated side, r: reference side):", "",
                "| adapter | worst map (error) | every map | IMACS_g difference | bf16 output finite |",
                "|---|---|---|---|---|"]
        for r in half:
            e = r["bfloat16"]["map_errors"]
            worst = max(e, key=e.get)
            out.append(f"| {r['adapter']} | {worst} ({e[worst]:.3f}) | "
                       + ", ".join(f"{k} {v:.3f}" for k, v in e.items())
                       + f" | {r['bfloat16']['imacs_g_diff']:.4f} | {r['bfloat16']['finite']} |")
    out += ["", "s / step: the denoiser's calls per step (CFG batches of 2 rows for the UNets; FLUX: one conditional "
            "row), with and without the capture's layers installed; generation: reference encoding, every step and "
            "the VAE decode. Job: the whole run path for the sample (load, generation with capture, maps, store, "
            "scores). Peak memory: the process's resident set high-water mark, reset before each (model weights "
            "included) on CPU; CUDA memory allocated on a GPU.", f"Measured with `{command}`."]
    return "\n".join(out)


FILES = ("maps.npz", "generated.png", "reference.png", "overlay.png", "set_inputs.npz")


def _child(argv: list[str]) -> int:
    """``python -m benchmark.perf.real ADAPTER REDUCED DEVICE STEPS PRECISION``: one row as JSON on stdout."""
    adapter, reduced, device, steps, precision = argv
    row = measure_adapter(adapter, reduced == "1", device, int(steps), precision == "1")
    print("ROW " + json.dumps(row))
    return 0


def main(args) -> int:
    device = str(_device(args))
    steps = getattr(args, "steps", None) or 2
    reduced = bool(getattr(args, "reduced", False))
    precision = bool(getattr(args, "precision", False))
    adapters = getattr(args, "adapter", None) or list(ADAPTER_ORDER)
    unknown = [a for a in adapters if a not in PUBLISHED]
    if unknown:
        raise UserError(f"perf --scale real: unknown adapter {unknown[0]!r}; choose from {', '.join(ADAPTER_ORDER)}")
    rows, failures = [], {}
    for adapter in adapters:
        start = time.perf_counter()
        print(f"perf real: {adapter} at {PUBLISHED[adapter].size[0]}x{PUBLISHED[adapter].size[1]} ...",
              file=sys.stderr, flush=True)
        proc = subprocess.run([sys.executable, "-m", "benchmark.perf.real", adapter, "1" if reduced else "0", device,
                               str(steps), "1" if precision else "0"], capture_output=True, text=True,
                              env={**os.environ, "PYTHONWARNINGS": "ignore"})
        line = [ln for ln in proc.stdout.splitlines() if ln.startswith("ROW ")]
        if proc.returncode or not line:
            failures[adapter] = (proc.stderr.strip().splitlines() or ["no output"])[-1][:200]
            print(f"perf real: {adapter} failed: {failures[adapter]}", file=sys.stderr)
            continue
        rows.append(json.loads(line[0][4:]))
        print(f"perf real: {adapter} done in {time.perf_counter() - start:.0f}s", file=sys.stderr, flush=True)
    flags = (f" --steps {steps}" + (" --reduced" if reduced else "") + (" --precision" if precision else "")
             + (f" --device {args.device}" if getattr(args, "device", None) else "")
             + "".join(f" --adapter {a}" for a in (getattr(args, "adapter", None) or [])))
    out = render(rows, reduced, f"OMP_NUM_THREADS={torch.get_num_threads()} python -m benchmark perf --scale real{flags}",
                 failures)
    print(out)
    if getattr(args, "out", None):
        Path(args.out).write_text(out + "\n")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(_child(sys.argv[1:]))
