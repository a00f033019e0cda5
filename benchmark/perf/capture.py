"""``python -m benchmark perf``: capture overhead, accumulator state and peak memory, measured in one run.

Two scales (``--scale``):

* ``mini``: whole generations of the shipped object-inpainting ``full`` mini
  model (batch 8, DDIM, CFG 3), without capture, with ULAM+TLAM+HLAM+LLAM and
  with SRAM as well; every UNet call inside them is timed too.
* ``sd15``: a UNet with Stable Diffusion 1.5's architecture and random
  weights, built here (no download): 320/640/1280/1280 channels, 16
  cross-attention layers with 8 heads, a 768-wide context of 257 reference
  tokens (CLS + 16x16 patches, CLS dropped), a 64x48 latent (512x384 images),
  batch 2 (one CFG pair). Single UNet calls per mode, since a call takes
  seconds on a CPU.

Repeats are interleaved (one run of every mode per round) so that load from
other processes hits every mode alike; the tables give medians, the spread
(min..max) and the overhead as the ratio of medians, the spread of the
per-round ratios and the ratio of the fastest runs. Forward hooks also time
the cross-attention layers themselves (with the capture work they defer), so
that the capture's own cost per UNet call is reported apart from the noise of
the rest of the model. On a CPU the process CPU time is reported beside the wall
time (it is less disturbed by other processes), and torch's thread count is
used as set (``OMP_NUM_THREADS=1`` keeps OpenMP threads from waiting on each
other on a machine shared with other jobs). On CUDA the layers are timed with
CUDA events (no synchronisation inside the UNet call: the device is waited for
once, at the end of each timed unit of work), and peak memory is
``torch.cuda.max_memory_allocated``. Every mode is run once before the rounds
(warm-up), and before each measured unit no capture state of another mode is
alive and the peak is reset. ``--device`` (cpu, cuda, cuda:N; default auto)
picks the device.
"""

from __future__ import annotations

import gc
import resource
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from benchmark.api.model import ModelSpec, SamplingSettings
from benchmark.api.sample import collate
from benchmark.capture import I2AMAccumulator, TokenLayout, capture_diffusers, cross_attention_layers
from benchmark.capture.session import CaptureSession
from benchmark.config import TaskConfig, check_device, resolve_path
from benchmark.perf.report import main as report_main
from benchmark.run.generation import CaptureSettings, generate_with_capture
from benchmark.run.jobs import load_adapter, pick_device
from benchmark.run.tasks import build_dataset

SCALES = ("mini", "sd15", "real", "report")
MODES = {
    "no capture": CaptureSettings(enabled=False),
    "ULAM+TLAM+HLAM+LLAM": CaptureSettings(levels=("ulam", "tlam", "hlam", "llam"), time_groups=5),
    "ULAM+TLAM+HLAM+LLAM+SRAM": CaptureSettings(levels=("ulam", "tlam", "hlam", "llam", "sram"), time_groups=5),
}
BASE = "no capture"


# --- clocks and memory ------------------------------------------------------------------------------
class _Clock:
    """Wall and process-CPU time; waits for the device first on CUDA so that queued work is counted."""

    def __init__(self, device: torch.device):
        self.device, self.cuda = device, device.type == "cuda"

    def now(self) -> tuple[float, float]:
        if self.cuda:
            torch.cuda.synchronize(self.device)
        return time.perf_counter(), time.process_time()

    def since(self, start: tuple[float, float]) -> tuple[float, float]:
        """(wall, CPU) seconds since ``start``, a reading of :meth:`now`."""
        (w0, c0), (w1, c1) = start, self.now()
        return w1 - w0, c1 - c0


def _reset_peak(device: torch.device) -> None:
    """Reset the peak to what is allocated now (call with no capture state alive: it would count)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        return
    try:  # Linux: "5" resets the peak resident set size (VmHWM) of this process
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def _peak_bytes(device: torch.device) -> int:
    """Peak since the last ``_reset_peak``: CUDA memory allocated, or this process's peak RSS."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device)
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # never reset: whole-process peak


class _HookTimer:
    """Times every forward call of some modules with forward hooks: (wall, process-CPU) seconds per call.

    On CUDA a call is timed by a pair of CUDA events recorded on the device's current stream, so the hooks never
    wait for the device; :meth:`take`, called after the timed unit (which ends with a synchronisation), reads
    them, as (wall, wall). On a CPU each hook reads the clock."""

    def __init__(self, modules: list[torch.nn.Module], clock: _Clock):
        self.clock, self.calls, self._t0 = clock, [], None
        self._hooks = [h for m in modules for h in (m.register_forward_pre_hook(self._pre),
                                                    m.register_forward_hook(self._post))]

    def _event(self) -> "torch.cuda.Event":
        event = torch.cuda.Event(enable_timing=True)
        event.record(torch.cuda.current_stream(self.clock.device))
        return event

    def _pre(self, *_):
        self._t0 = self._event() if self.clock.cuda else self.clock.now()

    def _post(self, *_):
        self.calls.append((self._t0, self._event()) if self.clock.cuda else self.clock.since(self._t0))

    def take(self) -> list[tuple[float, float]]:
        calls, self.calls = self.calls, []
        if self.clock.cuda and calls:
            torch.cuda.synchronize(self.clock.device)  # already done at the end of the unit: returns at once
            calls = [(start.elapsed_time(end) / 1e3,) * 2 for start, end in calls]
        return calls

    def remove(self) -> None:
        for h in self._hooks:
            h.remove()


# --- results ----------------------------------------------------------------------------------------
@dataclass
class ModeTimes:
    """Per-round measurements of one mode (seconds; bytes)."""

    wall: list[float] = field(default_factory=list)  # one unit of work per round (a generation or a UNet call)
    cpu: list[float] = field(default_factory=list)
    call: list[float] = field(default_factory=list)  # median UNet call of the round (mini: inside the generation)
    call_cpu: list[float] = field(default_factory=list)  # the same in process-CPU time (wall on CUDA)
    attn: list[float] = field(default_factory=list)  # cross-attention layers (and deferred capture) per UNet call
    state_bytes: int = 0
    peak_bytes: int = 0


@dataclass
class PerfReport:
    title: str
    info: str
    unit: str  # what one round's wall time measures
    times: dict[str, ModeTimes]
    cpu_device: bool
    notes: list[str] = field(default_factory=list)


def _overhead(mode: list[float], base: list[float]) -> str:
    """Overhead in % as 'ratio of medians; median (min..max) of the per-round ratios; ratio of minimums'."""
    rounds = [m / b - 1 for m, b in zip(mode, base)]
    med = statistics.median(mode) / statistics.median(base) - 1
    return (f"{_pct(med)}; {_pct(statistics.median(rounds))} ({_pct(min(rounds))}..{_pct(max(rounds))}); "
            f"{_pct(min(mode) / min(base) - 1)}")


def _pct(x: float) -> str:
    return f"{x * 100:+.1f}%"


def _spread(values: list[float], scale: float = 1.0, digits: int = 3) -> str:
    med, low, high = (f"{v * scale:.{digits}f}" for v in (statistics.median(values), min(values), max(values)))
    return f"{med} ({low}..{high})"


def render(report: PerfReport) -> str:
    """The Markdown table of a :class:`PerfReport`."""
    base = report.times[BASE]

    def cost(t: ModeTimes) -> str:  # cross-attention time over the baseline's, against its median UNet call
        extra = statistics.median(t.attn) - statistics.median(base.attn)
        return f"{extra * 1e3:+.2f} ms = {_pct(extra / statistics.median(base.call_cpu))}"

    # (header, whether the baseline row says "baseline" instead, cell of a mode)
    columns = [(f"{report.unit}, median (min..max) s", False, lambda t: _spread(t.wall)),
               ("overhead: ratio of medians; per-round ratios, median (min..max); ratio of minimums", True,
                lambda t: _overhead(t.wall, base.wall))]
    if report.cpu_device:
        columns.append(("CPU-time overhead, same", True, lambda t: _overhead(t.cpu, base.cpu)))
    if report.unit != "UNet call":
        columns += [("UNet call, median (min..max) ms", False, lambda t: _spread(t.call, 1e3, 1)),
                    ("UNet-call overhead, same", True, lambda t: _overhead(t.call, base.call))]
    columns += [(f"cross-attention layers per UNet call, {'CPU' if report.cpu_device else 'wall'} ms", False,
                 lambda t: _spread(t.attn, 1e3, 2)),
                ("capture cost per UNet call", True, cost),
                ("accumulator state (MiB)", False, lambda t: f"{t.state_bytes / 2**20:.2f}"),
                ("peak memory (MiB)", False, lambda t: f"{t.peak_bytes / 2**20:.0f}")]
    rows = [[mode] + ["baseline" if relative and mode == BASE else cell(t) for _, relative, cell in columns]
            for mode, t in report.times.items()]
    lines = [f"### {report.title}", "", report.info, "", "| " + " | ".join(["mode"] + [c[0] for c in columns]) + " |",
             "|" + "---|" * (1 + len(columns))] + ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines + ([""] + report.notes if report.notes else []))


_HOW_TO_READ = ("Overhead against `no capture`: the ratio of the medians; the median and range of the ratios "
                "within each round (the rounds interleave the modes, so a round compares runs under the same load); "
                "and the ratio of the fastest runs, the least disturbed by other processes. Capture cost: the time "
                "spent inside the cross-attention layers per UNet call (with the capture work they defer), its "
                "median minus that of `no capture`, and that difference as a share of the median uncaptured UNet "
                "call; it leaves out the rest of the model, whose run-to-run noise dominates the whole-call "
                "figures on a shared machine.")


def _environment(device: torch.device, repeats: int) -> str:
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu, {torch.get_num_threads()} threads"
    return f"device {where}; torch {torch.__version__}; {repeats} interleaved rounds"


def _memory_note(device: torch.device) -> str:
    if device.type == "cuda":
        return ("Peak memory: `torch.cuda.max_memory_allocated` over the round's unit of work, per mode "
                "(max over rounds).")
    return ("Peak memory: the process's peak resident set size (VmHWM, reset before each unit of work; "
            "includes the model and the interpreter), per mode (max over rounds).")


def _timed(clock: _Clock, work) -> tuple[tuple[float, float], tuple[float, float], object]:
    """Runs ``work()``, which returns an accumulator or None, and completes the accumulator's deferred calls (they
    belong to the unit of work): (wall, CPU) seconds of it all, (wall, CPU) seconds of the flush, the accumulator."""
    start = clock.now()
    acc = work()
    flush = (0.0, 0.0)
    if acc is not None:
        flush_start = clock.now()
        acc.flush()
        flush = clock.since(flush_start)
    return clock.since(start), flush, acc


def _release(device: torch.device) -> None:
    """Free what the last unit of work left (its accumulator, once its caller dropped it), so that the next mode's
    peak starts from the model and inputs alone."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()


def _rounds(run, repeats: int, device: torch.device, clock: _Clock, unet: torch.nn.Module,
            attention_modules: list[torch.nn.Module]) -> dict[str, ModeTimes]:
    """A warm-up run of every mode, then ``repeats`` interleaved rounds of every mode; ``run(mode, round)`` does
    one unit of work (:func:`_timed`) and builds its own capture state, which is dropped before the next unit.
    Per round and mode: the unit's wall and CPU time, its median UNet call, and per UNet call the time inside the
    cross-attention layers plus the deferred capture work (CPU time; wall on CUDA); the peak memory of the unit,
    reset before it with no capture state alive."""
    calls, attention = _HookTimer([unet], clock), _HookTimer(attention_modules, clock)
    times = {m: ModeTimes() for m in MODES}
    which = 0 if clock.cuda else 1  # CPU time where there is one to take
    try:
        for mode in MODES:  # warm-up: kernels, allocator and the capture's first-call work of every mode
            run(mode, 0)
            _release(device)
        for r in range(repeats):
            for mode, t in times.items():
                calls.take(), attention.take()
                _release(device)
                _reset_peak(device)
                (wall, cpu), flush, acc = run(mode, r)
                t.peak_bytes = max(t.peak_bytes, _peak_bytes(device))
                unet_calls, attention_calls = calls.take(), attention.take()
                t.wall.append(wall)
                t.cpu.append(cpu)
                t.call.append(statistics.median(c[0] for c in unet_calls))
                t.call_cpu.append(statistics.median(c[which] for c in unet_calls))
                t.attn.append((sum(c[which] for c in attention_calls) + flush[which]) / len(unet_calls))
                t.state_bytes = acc.state_bytes() if acc is not None else 0
                del acc  # no capture state alive when the next mode's peak is reset
    finally:
        calls.remove()
        attention.remove()
    return times


def _device(args) -> torch.device:
    """The ``--device`` of the perf command (cpu, cuda, cuda:N; default auto), checked to exist on this machine."""
    requested = getattr(args, "device", None) or "auto"
    check_device(requested)
    return pick_device(requested)


# --- mini scale -------------------------------------------------------------------------------------
def _mini_model(args):
    if getattr(args, "model", None):
        return ModelSpec("perf", "reference_unet", str(resolve_path(args.model)),
                         {"vae": str(resolve_path(args.vae))} if args.vae else {}), args.model
    default = resolve_path("tasks/object_inpainting/models/full")
    if (default / "unet").is_dir():
        return ModelSpec("perf", "reference_unet", str(default),
                         {"vae": str(resolve_path("tasks/_shared/vae"))}), "mini model (object_inpainting/full)"
    from benchmark.models.mini import save_tiny_random_model  # heavy: diffusers, transformers

    folder = Path(tempfile.mkdtemp()) / "tiny"
    save_tiny_random_model(folder, [("masked_image", "image"), ("mask", "mask")])
    return ModelSpec("perf", "reference_unet", str(folder)), "tiny random model"


def measure_mini(args) -> PerfReport:
    """Whole generations per mode, interleaved; UNet calls timed inside them."""
    device = _device(args)
    spec, label = _mini_model(args)
    adapter = load_adapter(spec, device)
    dataset = build_dataset(TaskConfig.load(resolve_path("tasks/object_inpainting")))
    batch = collate([dataset[i] for i in range(args.batch)])
    sampling = SamplingSettings(args.steps, 3.0)
    clock = _Clock(device)
    unet = adapter.capture_module()

    def run(mode: str, _round: int):
        return _timed(clock, lambda: generate_with_capture(adapter, batch, sampling, 0, MODES[mode])[1])

    times = _rounds(run, args.repeats, device, clock, unet, adapter.captured_modules())
    info = (f"{label}; batch {args.batch}; {args.steps} DDIM steps, CFG 3 (each UNet call runs 2 x {args.batch} "
            f"rows, the conditional half captured); 5 time groups; eq. (17) region masks; "
            f"{_environment(device, args.repeats)}.")
    notes = [_HOW_TO_READ + " A generation includes the reference encoding and the VAE decode, which capture "
             "does not touch.",
             _memory_note(device)]
    return PerfReport("Capture overhead, mini scale", info, "generation", times, device.type == "cpu", notes)


# --- SD-1.5 scale -----------------------------------------------------------------------------------
SD15_LATENT = (64, 48)  # 512 x 384 images at f = 8
SD15_TOKENS = (16, 16)  # CLIP ViT-L/14 at 224 px: 16 x 16 patches, plus CLS (dropped after the softmax)


def sd15_unet(device: torch.device, dtype: torch.dtype = torch.float32):
    """A randomly initialised UNet with Stable Diffusion 1.5's architecture (nothing is downloaded)."""
    from diffusers import UNet2DConditionModel

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=64, in_channels=4, out_channels=4, layers_per_block=2, block_out_channels=(320, 640, 1280, 1280),
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=768, attention_head_dim=8)
    # built in float32; half precision only where it is the norm (CUDA)
    return unet.to(device, dtype).eval().requires_grad_(False)


def measure_sd15(args) -> PerfReport:
    """Single UNet calls of the SD-1.5-shaped UNet per mode, interleaved, at the step indices of one generation."""
    device = _device(args)
    dtype = torch.float16 if device.type == "cuda" else torch.float32
    unet = sd15_unet(device, dtype)
    n_layers = len(cross_attention_layers(unet))
    g = torch.Generator().manual_seed(0)
    latents = torch.randn(1, 4, *SD15_LATENT, generator=g).repeat(2, 1, 1, 1)
    context = torch.randn(1, 1 + SD15_TOKENS[0] * SD15_TOKENS[1], 768, generator=g)
    context = torch.cat([torch.zeros_like(context), context])  # [unconditional; conditional]
    latents, context = latents.to(device, dtype), context.to(device, dtype)
    region = torch.zeros(1, 1, *SD15_LATENT, device=device)
    region[..., SD15_LATENT[0] // 4: 3 * SD15_LATENT[0] // 4, SD15_LATENT[1] // 4: 3 * SD15_LATENT[1] // 4] = 1
    steps = args.steps
    clock = _Clock(device)

    def session_of(mode: str) -> CaptureSession | None:
        """A fresh accumulator of a ``steps``-step generation for ``mode`` (None: no capture)."""
        settings = MODES[mode]
        if not settings.enabled:
            return None
        acc = I2AMAccumulator(SD15_LATENT, TokenLayout(SD15_TOKENS, drop=(0,)), steps,
                              min(settings.time_groups, steps), settings.levels, region)
        return CaptureSession(acc, n_samples=1)

    def call(step: int, acc=None):
        with torch.no_grad():
            unet(latents, 999 - step * (1000 // steps), encoder_hidden_states=context)
        return acc

    def run(mode: str, r: int):
        session = session_of(mode)
        if session is None:
            return _timed(clock, lambda: call(r % steps))
        with capture_diffusers(unet, session):
            session.step = r % steps
            return _timed(clock, lambda: call(r % steps, session.accumulator))

    times = _rounds(run, args.repeats, device, clock, unet,
                    [unet.get_submodule(k.removesuffix(".processor")) for k in cross_attention_layers(unet)])
    info = (f"UNet2DConditionModel with SD-1.5's architecture and random weights (320/640/1280/1280 channels, "
            f"{n_layers} cross-attention layers, 8 heads, context width 768), {str(dtype).removeprefix('torch.')}; "
            f"latent {SD15_LATENT[0]}x{SD15_LATENT[1]} (512x384 images); {1 + SD15_TOKENS[0] * SD15_TOKENS[1]} "
            f"reference tokens, CLS dropped; batch 2 = one CFG pair, the conditional row captured; accumulators "
            f"of a {steps}-step generation with 5 time groups and an eq. (17) region (a centred box); "
            f"{_environment(device, args.repeats)}.")
    base = statistics.median(times[BASE].wall)
    worst = max(statistics.median(t.wall) / base - 1 for m, t in times.items() if m != BASE)
    notes = [_HOW_TO_READ,
             f"Per generation: a {steps}-step generation is {steps} such calls (the state above is its whole "
             f"accumulator), plus the reference encoding and VAE decode that capture does not touch, so its "
             f"overhead is at most the per-call figure ({_pct(worst)} for the costliest mode, ratio of medians).",
             _memory_note(device)]
    return PerfReport("Capture overhead, Stable Diffusion 1.5 scale", info, "UNet call", times,
                      device.type == "cpu", notes)


def _command(args, scale: str) -> str:
    batch = f" --batch {args.batch}" if scale == "mini" else ""
    device = f" --device {args.device}" if getattr(args, "device", None) else ""
    return (f"Measured with `OMP_NUM_THREADS={torch.get_num_threads()} python -m benchmark perf --scale {scale} "
            f"--repeats {args.repeats} --steps {args.steps}{batch}{device}`.")


def main(args) -> int:
    scale = getattr(args, "scale", "mini")
    if scale not in SCALES:
        raise ValueError(f"unknown perf scale {scale!r}; choose from {SCALES}")
    if scale in ("mini", "sd15") and getattr(args, "steps", None) is None:
        args.steps = 20
    if scale == "real":
        from benchmark.perf.real import main as real_main  # cycle: perf.real imports perf.capture
        return real_main(args)
    if scale == "report":
        return report_main(args)
    report = measure_mini(args) if scale == "mini" else measure_sd15(args)
    report.notes.append(_command(args, scale))
    out = render(report)
    print(out)
    if getattr(args, "out", None):
        Path(args.out).write_text(out + "\n")
    return 0
