"""``python -m benchmark perf``: capture overhead and accumulator memory, measured in one run.

Generation without capture, with capture of ULAM+TLAM+HLAM+LLAM, and with
SRAM as well, on the same model, batch and seeds; repeats are interleaved so
machine noise hits every mode alike, and the median is reported.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import torch

from benchmark.api.model import ModelSpec, SamplingSettings
from benchmark.api.sample import collate
from benchmark.config import resolve_path
from benchmark.generation import CaptureSettings, generate_with_capture

MODES = {
    "no capture": CaptureSettings(enabled=False),
    "ULAM+TLAM+HLAM+LLAM": CaptureSettings(levels=("ulam", "tlam", "hlam", "llam"), time_groups=5),
    "ULAM+TLAM+HLAM+LLAM+SRAM": CaptureSettings(levels=("ulam", "tlam", "hlam", "llam", "sram"), time_groups=5),
}


def _model(args) -> tuple[ModelSpec, str]:
    if args.model:
        return ModelSpec("perf", "reference_unet", str(resolve_path(args.model)),
                         {"vae": str(resolve_path(args.vae))} if args.vae else {}), args.model
    default = resolve_path("tasks/object_inpainting/models/full")
    if (default / "unet").is_dir():
        return ModelSpec("perf", "reference_unet", str(default),
                         {"vae": str(resolve_path("tasks/_shared/vae"))}), "mini model (object_inpainting/full)"
    from benchmark.models.mini import save_tiny_random_model

    folder = Path(tempfile.mkdtemp()) / "tiny"
    save_tiny_random_model(folder, [("masked_image", "image"), ("mask", "mask")])
    return ModelSpec("perf", "reference_unet", str(folder)), "tiny random model"


def measure(args) -> tuple[list[dict], str]:
    from benchmark.config import TaskConfig
    from benchmark.jobs import load_adapter, pick_device
    from benchmark.tasks import build_dataset

    spec, label = _model(args)
    device = pick_device("auto")
    adapter = load_adapter(spec, device)
    dataset = build_dataset(TaskConfig.load(resolve_path("tasks/object_inpainting")))
    batch = collate([dataset[i] for i in range(args.batch)])
    sampling = SamplingSettings(args.steps, 3.0)
    times: dict[str, list[float]] = {m: [] for m in MODES}
    state: dict[str, int] = {}
    generate_with_capture(adapter, batch, sampling, 0, MODES["no capture"])  # warm-up
    for _ in range(args.repeats):
        for mode, settings in MODES.items():
            if device.type == "cuda":
                torch.cuda.synchronize()
            t = time.perf_counter()
            _, acc = generate_with_capture(adapter, batch, sampling, 0, settings)
            if device.type == "cuda":
                torch.cuda.synchronize()
            times[mode].append(time.perf_counter() - t)
            state[mode] = acc.state_bytes() if acc is not None else 0
    base = statistics.median(times["no capture"])
    rows = []
    for mode in MODES:
        med = statistics.median(times[mode])
        rows.append({"mode": mode, "median_s": med, "overhead": med / base - 1, "state_kib": state[mode] / 1024})
    info = (f"{label}; device {device}; batch {args.batch}; {args.steps} DDIM steps, CFG 3; "
            f"{args.repeats} interleaved repeats; {torch.get_num_threads()} threads")
    return rows, info


def table(rows: list[dict], info: str) -> str:
    lines = [f"Capture overhead ({info})", "", "| mode | median time (s) | overhead vs no capture | accumulator state (KiB) |",
             "|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['mode']} | {r['median_s']:.3f} | {r['overhead'] * 100:+.1f}% | {r['state_kib']:.1f} |")
    return "\n".join(lines)


def main(args) -> int:
    rows, info = measure(args)
    out = table(rows, info)
    print(out)
    if args.out:
        Path(args.out).write_text(out + "\n")
    return 0
