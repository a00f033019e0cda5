"""``python -m benchmark doctor``: what a new machine needs before its first night, one line per check.

Each check ends ``ok``, ``missing`` (absent, with where to put it; optional ones, such as the FID/KID and
LPIPS weights, do not fail the doctor) or ``failed`` (with the fix). The capture check runs the shipped capture
on a tiny random UNet on the requested device and compares its maps with a float64 brute force of their
definition (docs/maps.md) that shares no code with :mod:`benchmark.capture`.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

from benchmark.config import check_device
from benchmark.metrics.weights import Unavailable, resolve_metric_weights
from benchmark.run.jobs import pick_device
from benchmark.run.tasks import check_run

OK, MISSING, FAILED = "ok", "missing", "failed"

# Largest deviation of a captured map from the float64 brute force, relative to the map's largest value: the
# capture runs in float32 (fused kernels on a GPU), so about 1e-6 is expected; a map of the wrong definition is
# off by order 1.
CAPTURE_RTOL = 1e-4
DASK_TIMEOUT_S = 60


@dataclass(frozen=True)
class Outcome:
    """One check's line: ``status`` is ok / missing / failed; ``optional`` missing checks do not fail the run."""

    name: str
    status: str
    detail: str
    seconds: float = 0.0
    optional: bool = False

    @property
    def fails(self) -> bool:
        return self.status == FAILED or (self.status == MISSING and not self.optional)

    def line(self) -> str:
        note = " (optional)" if self.status == MISSING and self.optional else ""
        return f"{self.status:<8}{self.name:<18}{self.detail}{note} [{self.seconds:.1f}s]"


class Missing(Exception):
    """Raised by a check when something is absent: the message says what and where to put it."""

    def __init__(self, detail: str, optional: bool = False):
        super().__init__(detail)
        self.optional = optional


def _one_line(err: BaseException) -> str:
    return f"{type(err).__name__}: {' '.join(str(err).split())}"


def run_check(name: str, check: Callable[[], str], fix: str) -> Outcome:
    """Run one check; a :class:`Missing` gives a ``missing`` line, any other exception a ``failed`` line + ``fix``."""
    start = time.perf_counter()
    try:
        status, detail, optional = OK, check(), False
    except Missing as err:
        status, detail, optional = MISSING, str(err), err.optional
    except Exception as err:  # a check's failure is a line of the report, never a traceback
        status, detail, optional = FAILED, f"{_one_line(err)}; fix: {fix}", False
    return Outcome(name, status, detail, time.perf_counter() - start, optional)


# --- the checks -----------------------------------------------------------------------------------------------
def resolve_device(requested: str):
    """The torch device of ``requested`` (``auto``: cuda when available, else cpu), after checking it exists."""
    check_device(requested)
    return pick_device(requested)


def check_devices(requested: str) -> str:
    """torch version, the CUDA devices, and whether ``requested`` is usable (a tensor made and read back)."""
    import torch

    if torch.cuda.is_available():
        names = ", ".join(f"cuda:{i} {torch.cuda.get_device_name(i)}" for i in range(torch.cuda.device_count()))
        cuda = f"CUDA {torch.version.cuda}, {torch.cuda.device_count()} GPU(s): {names}"
    else:
        cuda = "CUDA not available" + (f" (built for CUDA {torch.version.cuda})" if torch.version.cuda else "")
    device = resolve_device(requested)
    torch.ones(2, device=device).sum().item()
    return f"torch {torch.__version__}; {cuda}; device {requested} -> {device} usable"


def check_dtypes(requested: str) -> str:
    """A tiny matmul in float32, float16 and bfloat16 on the device gives finite values."""
    import torch

    device = resolve_device(requested)
    bad = []
    for dtype in (torch.float32, torch.float16, torch.bfloat16):
        a = torch.linspace(-1, 1, 64, device=device).view(8, 8).to(dtype)
        if not torch.isfinite(a @ a.T).all():
            bad.append(str(dtype).removeprefix("torch."))
    if bad:
        raise ArithmeticError(f"non-finite matmul in {', '.join(bad)} on {device}")
    return f"float32, float16, bfloat16: 8x8 matmul finite on {device}"


def check_weights(metric: str, label: str, weights_dir: str | None) -> str:
    """The metric's pretrained weights are found offline; else :class:`Missing` (optional) with the paths."""
    found = resolve_metric_weights(metric, weights_dir)
    if isinstance(found, Unavailable):
        raise Missing(f"{found.reason}; {label} left out until then", optional=True)
    return ", ".join(str(p) for p in found.values())


def check_config_inputs(cfg) -> str:
    """Every model of ``cfg`` resolves (folder or hub cache) and every dataset root holds samples."""
    problems = check_run(cfg)
    if problems:
        raise Missing("; ".join(problems))
    n_models = sum(len(t.models) for t in cfg.tasks)
    return f"{cfg.name}: {len(cfg.tasks)} dataset root(s) and {n_models} model(s) found"


def _tiny_unet():
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(16, 32),
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=16, attention_head_dim=2, norm_num_groups=8).eval()


def brute_force_ulam(calls, latent: tuple[int, int], kept: list[int]):
    """Unified I2AM maps, literally and in float64, from explicit logits.

    calls: [(layer, S)] with S (B, N, Q, K) the conditional rows' logits of one call (every step). Generated side:
    per call the softmax over the query axis, mean over kept tokens, summed over calls; each (layer, head) map
    resized bicubically to ``latent`` and clamped at 0, then the mean over heads and layers -> (B, h, w).
    Reference side: the key-axis softmax, each kept token's map resized on its own and averaged over ``latent``,
    summed over calls, mean over heads and layers -> (B, K_kept).
    """
    import torch
    import torch.nn.functional as F

    def grid(n: int) -> tuple[int, int]:
        h, w = latent
        while h * w > n:
            h, w = -(-h // 2), -(-w // 2)
        return h, w

    def resize(x):  # (..., h_l, w_l) -> (..., *latent), float64, no clamp
        lead = x.shape[:-2]
        return F.interpolate(x.reshape(-1, 1, *x.shape[-2:]), size=latent, mode="bicubic",
                             align_corners=False).reshape(*lead, *latent)

    g: dict = {}
    r: dict = {}
    for layer, s in calls:
        s = s.double().cpu()
        lg = grid(s.shape[2])
        g[layer] = g.get(layer, 0) + s.softmax(2)[..., kept].mean(-1)  # (B, N, Q)
        p = s.softmax(-1)[..., kept].transpose(2, 3)  # (B, N, K_kept, Q)
        r[layer] = r.get(layer, 0) + resize(p.reshape(*p.shape[:3], *lg)).mean((-2, -1))  # (B, N, K_kept)
    gen = torch.stack([resize(x.reshape(*x.shape[:2], *grid(x.shape[2]))).clamp_min(0).mean(1) for x in g.values()])
    return gen.mean(0), torch.stack([x.mean(1) for x in r.values()]).mean(0)


def check_capture(requested: str) -> str:
    """The capture on the device equals :func:`brute_force_ulam` on the same inputs, within :data:`CAPTURE_RTOL`."""
    import torch
    import torch.nn.functional as F

    from benchmark.capture import I2AMAccumulator, TokenLayout, capture_diffusers  # heavy: torch
    from benchmark.capture.session import CaptureSession  # heavy: torch

    device = resolve_device(requested)
    latent, tokens, steps, b = (8, 6), TokenLayout(grid=(3, 2), drop=(0,)), 2, 2
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        unet = _tiny_unet().to(device)
        ctx = torch.randn(b, 7, 16) * 3
        xs = [torch.randn(b, 4, *latent) for _ in range(steps)]
    acc = I2AMAccumulator(latent, tokens, num_steps=steps, levels=("ulam",))
    session = CaptureSession(acc, b)
    calls = []

    def project(linear, x):
        return F.linear(x, linear.weight.double(), None if linear.bias is None else linear.bias.double())

    def logits(name):
        def hook(module, args, kwargs):  # the conditional rows' logits, recomputed in float64
            x = (args[0] if args else kwargs["hidden_states"])[b:].double()
            c = kwargs["encoder_hidden_states"][b:].double()
            q, k = project(module.to_q, x), project(module.to_k, c)
            q = q.view(b, q.shape[1], module.heads, -1).transpose(1, 2)
            k = k.view(b, k.shape[1], module.heads, -1).transpose(1, 2)
            calls.append((name, q @ k.transpose(-1, -2) * module.scale))
        return hook

    hooks = [m.register_forward_pre_hook(logits(n), with_kwargs=True)
             for n, m in unet.named_modules() if getattr(m, "is_cross_attention", False)]
    try:
        with capture_diffusers(unet, session), torch.no_grad():
            for step, x in enumerate(xs):
                session.step = step
                e = torch.cat([torch.zeros_like(ctx), ctx]).to(device)
                unet(torch.cat([x, x]).to(device), 999 - 10 * step, encoder_hidden_states=e)
    finally:
        for h in hooks:
            h.remove()
    want_g, want_r = brute_force_ulam(calls, latent, list(range(1, 7)))
    worst = 0.0
    for got, want in ((acc.generated_maps()["ulam"], want_g), (acc.reference_maps()["ulam"].flatten(1), want_r)):
        worst = max(worst, ((got.double().cpu() - want).abs().max() / want.abs().max()).item())
    if not worst <= CAPTURE_RTOL:
        raise ArithmeticError(f"captured maps on {device} deviate {worst:.2g} (of the map's max) from the float64 "
                              f"brute force; tolerance {CAPTURE_RTOL:g}")
    return (f"{len(calls)} calls on {device}: max deviation {worst:.1e} of the map's max from the float64 brute "
            f"force (tolerance {CAPTURE_RTOL:g})")


def check_decode(requested: str) -> str:
    """A tiny random AutoencoderKL decodes to finite values in half precision (float16 on a GPU, bfloat16 on the
    CPU) on the device, and in float32 too when its config upcasts the decode (``force_upcast``)."""
    import torch
    from diffusers import AutoencoderKL

    device = resolve_device(requested)
    half = torch.bfloat16 if device.type == "cpu" else torch.float16
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        vae = AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2,
                            up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(8, 16), latent_channels=4,
                            norm_num_groups=8, layers_per_block=1, sample_size=16).eval()
        z = torch.randn(1, 4, 8, 8) * 3
    dtypes = [half] + ([torch.float32] if vae.config.force_upcast else [])
    # nn.Module's casts: diffusers' ``ModelMixin.to`` warns on every dtype cast of a model built in code.
    cast = {torch.float16: "half", torch.bfloat16: "bfloat16", torch.float32: "float"}
    for dtype in dtypes:
        with torch.no_grad():
            out = getattr(vae, cast[dtype])().to(device).decode(z.to(device, dtype)).sample
        if not torch.isfinite(out).all():
            raise ArithmeticError(f"decode in {dtype} on {device} gave non-finite values")
    names = " and ".join(str(d).removeprefix("torch.") for d in dtypes)
    return f"decode finite in {names} on {device}" + (" (force_upcast)" if vae.config.force_upcast else "")


def check_dask() -> str:
    """A LocalCluster with one worker process runs a trivial function within :data:`DASK_TIMEOUT_S` and closes."""
    os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "warning")
    logging.getLogger("distributed").setLevel(logging.WARNING)
    from dask.distributed import Client, LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None,
                      timeout=DASK_TIMEOUT_S) as cluster, Client(cluster, timeout=DASK_TIMEOUT_S) as client:
        pid = client.submit(os.getpid, pure=False).result(timeout=DASK_TIMEOUT_S)
    if pid == os.getpid():
        raise RuntimeError("the function ran in this process, not in a worker process")
    return f"1 worker process (pid {pid}) ran a function and shut down"


# --- the report -----------------------------------------------------------------------------------------------
def run_doctor(device: str | None = None, cfg=None, out: Callable[[str], None] = print) -> list[Outcome]:
    """Run every check on ``device`` (default: the config's, else ``auto``), printing each line as it ends."""
    requested = device or (cfg.device if cfg is not None else "auto")
    weights_dir = cfg.metrics.weights_dir if cfg is not None else None
    on_device = {"dtypes", "capture", "half decode"}  # not run when the device itself is not usable
    plan = [
        ("devices", lambda: check_devices(requested),
         "install a torch build for this machine's CUDA driver, or pass --device cpu"),
        ("dtypes", lambda: check_dtypes(requested), "run models in float32 on this device (model option dtype)"),
        ("fid/kid weights", lambda: check_weights("fid", "FID/KID", weights_dir), "see the paths named"),
        ("lpips weights", lambda: check_weights("lpips", "LPIPS", weights_dir), "see the paths named"),
    ]
    if cfg is not None:
        plan.append(("config inputs", lambda: check_config_inputs(cfg), "python -m benchmark validate --config C"))
    plan += [
        ("capture", lambda: check_capture(requested),
         "compare with --device cpu: a deviation on this device alone is a capture bug to report"),
        ("half decode", lambda: check_decode(requested), "decode in float32 on this device (model option dtype)"),
        ("dask worker", check_dask, "worker processes must start: check ulimit -u, a writable TMPDIR, or run "
                                    "with --scheduler inline"),
    ]
    outcomes: dict[str, Outcome] = {}
    for name, check, fix in plan:
        if name in on_device and outcomes["devices"].status != OK:
            outcomes[name] = Outcome(name, FAILED, f"not run: device {requested} is not usable (see devices)")
        else:
            outcomes[name] = run_check(name, check, fix)
        out(outcomes[name].line())
    return list(outcomes.values())
