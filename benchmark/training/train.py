"""Train the embedded-default mini models: one shared VAE, then per task a
patch-token model (with two earlier checkpoints kept as a quality ladder) and a
CLS-only model. Seeded, resumable from checkpoints, with progress bars.

    python -m benchmark train                 # everything (resumes where it stopped)
    python -m benchmark train --task viton_hd --steps 400
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, DDPMScheduler
from tqdm.auto import tqdm

from benchmark.api.sample import I2ISample
from benchmark.datasets import CocoeeDataset, Cufed5Dataset, VitonHDDataset
from benchmark.store import write_atomic
from benchmark.models.mini import I2IModelSpec, build_dit, build_image_encoder, build_unet, build_vae
from benchmark.pipelines.reference_dit import (DEFAULT_REFERENCE_SIZE, dit_inputs, encode_reference_latent,
                                               reference_size, unpack)
from benchmark.pipelines.reference_i2i import encode_conditions, encode_image, encode_reference
from benchmark.training.embedded import EMBEDDED_TASKS, EmbeddedTask, VAERecipe, cache_dir

REFERENCE_DROP = 0.1  # classifier-free guidance: fraction of steps trained without the reference


@dataclass(frozen=True)
class TrainPlan:
    vae_steps: int | None = None  # override every VAE recipe's steps (tests, smoke runs)
    steps: int | None = None  # override every task's patch-token run length (EmbeddedTask.steps)
    cls_steps: int = 1500
    dit_steps: int = 3000
    dit_tasks: tuple[str, ...] = ("object_inpainting",)
    ladder: tuple[int, ...] = (375, 1125)  # steps of the patch-token run exported as earlier checkpoints
    batch_size: int = 32
    lr: float = 5e-4
    seed: int = 0
    checkpoint_every: int = 250


def load_split(task: EmbeddedTask, split: str, levels: tuple[int, ...] | None = None) -> list[I2ISample]:
    """All samples of a split of the task's procedural data, in memory (CUFED5 train: ``levels`` or the task's)."""
    levels = task.train_levels if levels is None else levels
    root = task.data_root
    if task.generator == "viton_hd":
        datasets = [VitonHDDataset(root, split, "paired", size=None)]
    elif task.generator == "cocoee":
        datasets = [CocoeeDataset(root / split, size=None)]
    else:
        datasets = [Cufed5Dataset(root / split, level=lv) for lv in (levels if split == "train" else (1,))]
    return [ds[i] for ds in datasets for i in range(len(ds))]


def _atomic_save(obj, path: Path) -> None:
    buf = io.BytesIO()
    torch.save(obj, buf)
    write_atomic(path, buf.getvalue())


def _state_path(what: str, *fingerprint) -> Path:
    """Checkpoint path keyed by everything that shapes the run, so a resume never mixes two different runs."""
    import hashlib

    key = hashlib.sha256(repr(fingerprint).encode()).hexdigest()[:10]
    return cache_dir() / "train" / f"{what}-{key}" / "state.pt"


def _lr_at(step: int, total: int, base: float, warmup: int = 100) -> float:
    if step < warmup:
        return base * (step + 1) / warmup
    return base * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(total - warmup, 1))))


# --- VAE --------------------------------------------------------------------------------------
def train_vae(plan: TrainPlan, recipe: VAERecipe, out_dir: Path | None = None,
              tasks: list[EmbeddedTask] | None = None) -> AutoencoderKL:
    """Train a VAE (``recipe``) on every image of the train splits of ``tasks`` (default: the recipe's data)."""
    out_dir = recipe.folder if out_dir is None else out_dir
    if (out_dir / "config.json").is_file():
        return AutoencoderKL.from_pretrained(out_dir, torch_dtype=torch.float32)
    tasks = list(recipe.data) if tasks is None else tasks
    steps = plan.vae_steps or recipe.steps
    pools = []
    for task in tasks:
        samples = load_split(task, "train")
        imgs = [s.target for s in samples] + [s.reference for s in samples]
        imgs += [v for s in samples for k, v in s.conditions.items() if v.shape[0] == 3]
        pools.append(torch.stack(imgs))
    torch.manual_seed(plan.seed)
    vae = build_vae(recipe.latent_channels, recipe.downsample)
    opt = torch.optim.AdamW(vae.parameters(), lr=recipe.lr)
    data_key = [(t.generator, t.n_train, t.seed) + ((t.generator_options,) if t.generator_options else ())
                for t in tasks]
    state_path = _state_path("vae", plan, recipe, steps, data_key)
    start = 0
    if state_path.is_file():
        state = torch.load(state_path, weights_only=False)
        vae.load_state_dict(state["model"]), opt.load_state_dict(state["opt"])
        torch.set_rng_state(state["rng"])
        start = state["step"]
    t0 = time.time()
    bs = plan.batch_size // 2
    for step in tqdm(range(start, steps), desc=recipe.name, initial=start, total=steps):
        for g in opt.param_groups:
            g["lr"] = _lr_at(step, steps, recipe.lr)
        pool = pools[step % len(pools)]
        x = pool[torch.randint(len(pool), (bs,))] * 2 - 1
        post = vae.encode(x).latent_dist
        if recipe.objective == "l1-sample":  # the two VAE_OBJECTIVES (checked by VAERecipe)
            rec = vae.decode(post.sample()).sample
            loss = (rec - x).abs().mean()
        else:
            rec = vae.decode(post.mode()).sample
            loss = (rec - x).abs().mean() + F.mse_loss(rec, x)
        loss = loss + 1e-6 * post.kl().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if (step + 1) % plan.checkpoint_every == 0:
            _atomic_save({"model": vae.state_dict(), "opt": opt.state_dict(), "step": step + 1,
                          "rng": torch.get_rng_state()}, state_path)
    vae.eval()
    with torch.no_grad():
        z = torch.cat([vae.encode(p[:256] * 2 - 1).latent_dist.mode().flatten() for p in pools])
        vae.register_to_config(scaling_factor=float(1.0 / z.std()))
    vae.to(torch.float16).save_pretrained(out_dir, safe_serialization=True)
    _write_json(out_dir / "train_summary.json", {"recipe": recipe.name, "latent_channels": recipe.latent_channels,
                                                 "downsample": recipe.downsample, "objective": recipe.objective,
                                                 "steps": steps, "lr": recipe.lr, "seconds": time.time() - t0,
                                                 "scaling_factor": vae.config.scaling_factor})
    return vae.to(torch.float32)


# --- UNet + reference encoder ----------------------------------------------------------------
@dataclass
class LatentData:
    target: torch.Tensor  # (N, 4, h, w) scaled latents
    cond: torch.Tensor  # (N, C_cond, h, w)
    reference: torch.Tensor  # (N, 3, Hr, Wr) in [0, 1]


@torch.no_grad()
def encode_split(vae: AutoencoderKL, spec: I2IModelSpec, samples: list[I2ISample], batch: int = 128) -> LatentData:
    targets, conds = [], []
    for i in range(0, len(samples), batch):
        chunk = samples[i : i + batch]
        tgt = encode_image(vae, torch.stack([s.target for s in chunk]))
        stacked = {name: torch.stack([s.conditions[name] for s in chunk]) for name, _ in spec.conditions}
        targets.append(tgt)
        conds.append(encode_conditions(vae, spec.conditions, stacked, tuple(tgt.shape[-2:])))
    return LatentData(torch.cat(targets), torch.cat(conds), torch.stack([s.reference for s in samples]))


def export_model(folder: Path, modules: dict[str, torch.nn.Module], spec: I2IModelSpec, summary: dict) -> None:
    """Save each module in its standard folder (fp16 safetensors), plus ``i2i_config.json`` and the summary."""
    import copy

    for sub, module in modules.items():
        copy.deepcopy(module).to(torch.float16).save_pretrained(folder / sub, safe_serialization=True)
    spec.save(folder)
    _write_json(folder / "train_summary.json", summary)


def _training_loop(run: str, state_path: Path, modules: dict[str, torch.nn.Module], steps: int, plan: TrainPlan,
                   loss_fn, export, ladder: dict[int, str]) -> None:
    """The loop every model shares: AdamW with warm-up + cosine, clipping, resumable checkpoints, ladder exports.

    ``loss_fn(idx_generator)`` returns the batch loss; ``export(name, step, seconds, losses)`` writes a model.
    """
    params = [p for m in modules.values() for p in m.parameters()]
    opt = torch.optim.AdamW(params, lr=plan.lr, weight_decay=0.01)
    start, elapsed, losses = 0, 0.0, []
    gen = torch.Generator().manual_seed(plan.seed)
    if state_path.is_file():
        state = torch.load(state_path, weights_only=False)
        for name, m in modules.items():
            m.load_state_dict(state[name])
        opt.load_state_dict(state["opt"]), gen.set_state(state["gen"])
        start, elapsed, losses = state["step"], state["elapsed"], state["losses"]
    t0 = time.time() - elapsed
    bar = tqdm(range(start, steps), desc=run, initial=start, total=steps)
    for step in bar:
        for g in opt.param_groups:
            g["lr"] = _lr_at(step, steps, plan.lr)
        loss = loss_fn(gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        losses.append(loss.item())
        if step % 20 == 0:
            bar.set_postfix(loss=f"{np.mean(losses[-100:]):.4f}")
        done = step + 1
        if done in ladder:
            export(ladder[done], done, time.time() - t0, losses)
        if done % plan.checkpoint_every == 0 or done == steps:
            _atomic_save({**{name: m.state_dict() for name, m in modules.items()}, "opt": opt.state_dict(),
                          "gen": gen.get_state(), "step": done, "elapsed": time.time() - t0, "losses": losses},
                         state_path)
    export(None, steps, time.time() - t0, losses)


def train_task(task: EmbeddedTask, tokens: str, plan: TrainPlan, vae: AutoencoderKL) -> None:
    """Train one (task, token mode) UNet run; exports the final model and, for patch tokens, the ladder."""
    steps = (plan.steps or task.steps) if tokens == "patch" else plan.cls_steps
    final_name = "full" if tokens == "patch" else "cls-only"
    if (task.models_dir / final_name / "train_summary.json").is_file():
        return
    spec = I2IModelSpec(conditions=task.conditions, reference_tokens=tokens)
    data = encode_split(vae, spec, load_split(task, "train"))
    if task.residual_of:  # learn the detail over the condition's latent, rescaled to unit std
        residual = data.target - data.cond[:, spec.condition_slice(task.residual_of, vae.config.latent_channels)]
        scale = float(1.0 / residual.std())
        spec = dataclasses.replace(spec, residual_of=task.residual_of, residual_scale=scale)
        data = dataclasses.replace(data, target=residual * scale)
    torch.manual_seed(plan.seed)
    encoder = build_image_encoder(image_size=task.reference_size)
    unet = build_unet(data.cond.shape[1], cross_attention_dim=encoder.config.hidden_size,
                      latent_channels=vae.config.latent_channels,
                      attention_at_full_resolution=task.attention_at_full_resolution)
    sched = DDPMScheduler(num_train_timesteps=1000, beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012)
    n = len(data.target)

    def loss_fn(gen: torch.Generator) -> torch.Tensor:
        idx = torch.randint(n, (plan.batch_size,), generator=gen)
        x0, cond = data.target[idx], data.cond[idx]
        noise = torch.randn(x0.shape, generator=gen)
        t = torch.randint(0, sched.config.num_train_timesteps, (plan.batch_size,), generator=gen)
        ctx = encode_reference(encoder, data.reference[idx], tokens)
        keep = (torch.rand(plan.batch_size, generator=gen) >= REFERENCE_DROP).float()[:, None, None]
        pred = unet(torch.cat([sched.add_noise(x0, noise, t), cond], 1), t, encoder_hidden_states=ctx * keep).sample
        return F.mse_loss(pred, noise)

    def export(name, step, seconds, losses):
        export_model(task.models_dir / (name or final_name), {"unet": unet, "image_encoder": encoder}, spec,
                     _summary(task, tokens, step, steps, seconds, losses, plan))

    ladder = {s: f"ckpt-{s}" for s in plan.ladder if s < steps} if tokens == "patch" else {}
    state_path = _state_path(f"{task.name}-{tokens}", plan, task, vae.config.scaling_factor)
    _training_loop(f"{task.name}/{final_name}", state_path, {"unet": unet, "encoder": encoder}, steps, plan,
                   loss_fn, export, ladder)


DIT_NAME = "dit"


def train_dit(task: EmbeddedTask, plan: TrainPlan, vae: AutoencoderKL) -> None:
    """Train the mini I2I diffusion transformer (rectified flow; :mod:`benchmark.pipelines.reference_dit`)."""
    if (task.models_dir / DIT_NAME / "train_summary.json").is_file():
        return
    spec = I2IModelSpec(conditions=task.conditions, reference_tokens="latent",
                        extra={"architecture": "dit", "reference_size": [DEFAULT_REFERENCE_SIZE] * 2})
    data = encode_split(vae, spec, load_split(task, "train"))
    with torch.no_grad():
        ref_latent = torch.cat([encode_reference_latent(vae, data.reference[i : i + 128], reference_size(spec))
                                for i in range(0, len(data.reference), 128)])
    torch.manual_seed(plan.seed)
    transformer = build_dit(data.cond.shape[1], latent_channels=vae.config.latent_channels)
    n, (h, w) = len(data.target), data.target.shape[-2:]

    def loss_fn(gen: torch.Generator) -> torch.Tensor:
        idx = torch.randint(n, (plan.batch_size,), generator=gen)
        x0, cond = data.target[idx], data.cond[idx]
        noise = torch.randn(x0.shape, generator=gen)
        sigma = torch.sigmoid(torch.randn(plan.batch_size, generator=gen))  # logit-normal times (SD3)
        keep = (torch.rand(plan.batch_size, generator=gen) >= REFERENCE_DROP).float()[:, None, None, None]
        xt = (1 - sigma[:, None, None, None]) * x0 + sigma[:, None, None, None] * noise
        out = transformer(**dit_inputs(transformer, xt, cond, ref_latent[idx] * keep, sigma)).sample
        return F.mse_loss(unpack(out[:, : h * w], h, w), noise - x0)

    def export(name, step, seconds, losses):
        export_model(task.models_dir / (name or DIT_NAME), {"transformer": transformer}, spec,
                     _summary(task, "latent", step, plan.dit_steps, seconds, losses, plan))

    state_path = _state_path(f"{task.name}-dit", plan, task, vae.config.scaling_factor)
    _training_loop(f"{task.name}/{DIT_NAME}", state_path, {"transformer": transformer}, plan.dit_steps, plan,
                   loss_fn, export, {})


def _summary(task, tokens, step, total, seconds, losses, plan) -> dict:
    return {"task": task.name, "reference_tokens": tokens, "step": step, "total_steps": total,
            "seconds": round(seconds, 1), "batch_size": plan.batch_size, "lr": plan.lr, "seed": plan.seed,
            "loss_first_100": float(np.mean(losses[:100])), "loss_last_100": float(np.mean(losses[-100:])),
            "threads": torch.get_num_threads(), "device": "cpu"}


def _write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")


def train_all(plan: TrainPlan = TrainPlan(), tasks: list[str] | None = None) -> None:
    """Every embedded model: the VAEs the tasks use, then per task the UNet runs, then the DiTs."""
    names = tasks or list(EMBEDDED_TASKS)
    vaes = {}
    for name in names:
        recipe = EMBEDDED_TASKS[name].vae_recipe
        if recipe.name not in vaes:
            vaes[recipe.name] = train_vae(plan, recipe).eval().requires_grad_(False)
    for name in names:
        for tokens in ("patch", "cls"):
            train_task(EMBEDDED_TASKS[name], tokens, plan, vaes[EMBEDDED_TASKS[name].vae])
    for name in plan.dit_tasks:
        if name in names:
            train_dit(EMBEDDED_TASKS[name], plan, vaes[EMBEDDED_TASKS[name].vae])
