"""Do the mini models use their reference? Quality numbers for the model cards.

For every task and model, on held-out test samples:
* masked PSNR / SSIM inside x_g (the inpainting region, or for super-resolution
  the region the reference covers) with the TRUE reference and with a
  MISMATCHED one (the next sample's), same noise; the paired gap is the test
  that a model copies from its reference;
* baselines: for inpainting the region filled with one mean colour: of the
  visible context or of the whole reference image (both use only what the
  model is given), or of the reference object inside its mask (an ORACLE: the
  model never sees that mask); bicubic upsampling for super-resolution;
* mean IMACS_g / IMACS_r of each model.

    python -m benchmark evaluate-models [--samples 64]
"""

from __future__ import annotations

import json

import numpy as np
import torch

from benchmark.analysis.bootstrap import bootstrap_mean
from benchmark.analysis.resampling import Resampling
from benchmark.api.model import ModelSpec
from benchmark.api.sample import collate
from benchmark.config import TaskConfig, resolve_path
from benchmark.defaults import IMACS_SCORES
from benchmark.run.generation import CaptureSettings, generate_with_capture
from benchmark.run.jobs import load_adapter, pick_device
from benchmark.run.tasks import build_dataset
from benchmark.metrics import masked_psnr, masked_ssim
from benchmark.models.mini import condition_width
from benchmark.results.sample_maps import split_accumulator
from benchmark.scoring.terms import imacs_scores
from benchmark.training.embedded import EMBEDDED_TASKS

MODEL_ORDER = ("ckpt-375", "ckpt-1125", "full", "cls-only", "dit")


def _adapter_name(folder) -> str:
    return "reference_dit" if (folder / "transformer").is_dir() else "reference_unet"


def _fill(batch: dict, colour: torch.Tensor) -> torch.Tensor:
    region = batch["region_mask"]
    return batch["target"] * (1 - region) + colour[:, :, None, None] * region


def _masked_mean(image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (image * mask).sum((2, 3)) / mask.sum((2, 3)).clamp_min(1)


ORACLE_FILL = "reference-object mean colour fill (oracle)"
EXACT_DB = 100.0  # a baseline this far above the ground truth agrees with it to float precision


def baselines(task: str, batch: dict) -> dict[str, torch.Tensor]:
    """Non-generative baselines, images (B, 3, H, W) in [0, 1]: bicubic (super-resolution); for inpainting the
    region filled with one mean colour, of the visible context (outside the region), of the whole reference
    image, or of the reference object inside its mask. The last is an oracle: the model is never given the
    reference mask, and on a plain object filling its box the fill is exact."""
    if task == "super_resolution":
        return {"bicubic": batch["conditions"]["lr_up"]}
    return {"context mean colour fill": _fill(batch, _masked_mean(batch["target"], 1 - batch["region_mask"])),
            "reference mean colour fill": _fill(batch, batch["reference"].mean((2, 3))),
            ORACLE_FILL: _fill(batch, _masked_mean(batch["reference"], batch["reference_mask"]))}


def _ci(values) -> dict:
    values = np.asarray(values, dtype=float)
    c = bootstrap_mean(values, Resampling(n_boot=2000, seed=0))
    return {"mean": c.mean, "ci_low": c.ci_low, "ci_high": c.ci_high, "n": c.n, "median": float(np.nanmedian(values))}


def _psnr_ci(values) -> dict:
    """:func:`_ci` of per-sample PSNR (dB), plus how many samples are exact to float precision."""
    return {**_ci(values), "n_exact": int(np.sum(np.asarray(values, dtype=float) > EXACT_DB))}


def _paired(diff: np.ndarray) -> dict:
    """Mean paired difference with its CI, plus the share of samples where it is positive (robust to the
    heavy tail a near-exact baseline gives the mean of per-sample PSNR); the median is in ``_ci``."""
    return {**_ci(diff), "share_positive": float(np.mean(diff > 0))}


def evaluate_task(task_name: str, n_samples: int = 64, batch_size: int = 32) -> dict:
    task_dir = resolve_path(f"tasks/{task_name}")
    dataset = build_dataset(TaskConfig.load(task_dir))
    samples = [dataset[i] for i in range(min(n_samples, len(dataset)))]
    device = pick_device("auto")
    out = {"task": task_name, "n_samples": len(samples), "models": {}}
    batches = [collate(samples[i : i + batch_size]) for i in range(0, len(samples), batch_size)]
    base = {}
    for b in batches:
        for name, image in baselines(task_name, b).items():
            scores = base.setdefault(name, {"masked_psnr": [], "masked_ssim": []})
            scores["masked_psnr"] += masked_psnr(image, b["target"], b["region_mask"]).values.tolist()
            scores["masked_ssim"] += masked_ssim(image, b["target"], b["region_mask"]).values.tolist()
    vae = load_adapter(ModelSpec("full", "reference_unet", str(EMBEDDED_TASKS[task_name].models_dir / "full"),
                                 {"vae": str(EMBEDDED_TASKS[task_name].vae_dir)}), device).pipe
    with torch.no_grad():
        recon = [masked_psnr(vae.decode(vae.encode_image(b["target"].to(device))).cpu(), b["target"], b["region_mask"]).values
                 for b in batches]
    out["vae_reconstruction_masked_psnr"] = _psnr_ci(torch.cat(recon).tolist())
    out["baselines"] = {name: {"masked_psnr": _psnr_ci(scores["masked_psnr"]), "masked_ssim": _ci(scores["masked_ssim"])}
                        for name, scores in base.items()}
    for model in MODEL_ORDER:
        folder = EMBEDDED_TASKS[task_name].models_dir / model
        if not (folder / "i2i_config.json").is_file():
            continue
        adapter = load_adapter(ModelSpec(model, _adapter_name(folder), str(folder), {"vae": str(EMBEDDED_TASKS[task_name].vae_dir)}), device)
        sampling = adapter.default_sampling()
        res = {k: [] for k in ("psnr_true", "psnr_swap", "ssim_true", "ssim_swap", *IMACS_SCORES)}
        for b in batches:
            images, acc = generate_with_capture(adapter, b, sampling, 0, CaptureSettings(levels=("ulam",), time_groups=1))
            swapped = dict(b, reference=torch.roll(b["reference"], 1, 0))
            swap_images, _ = generate_with_capture(adapter, swapped, sampling, 0, CaptureSettings(enabled=False))
            res["psnr_true"] += masked_psnr(images, b["target"], b["region_mask"]).values.tolist()
            res["psnr_swap"] += masked_psnr(swap_images, b["target"], b["region_mask"]).values.tolist()
            res["ssim_true"] += masked_ssim(images, b["target"], b["region_mask"]).values.tolist()
            res["ssim_swap"] += masked_ssim(swap_images, b["target"], b["region_mask"]).values.tolist()
            for maps in split_accumulator(acc, b, {}):
                s = imacs_scores(maps)
                for score in IMACS_SCORES:
                    res[score].append(s[score])
        gap = np.asarray(res["psnr_true"]) - np.asarray(res["psnr_swap"])
        out["models"][model] = {
            "masked_psnr": _psnr_ci(res["psnr_true"]), "masked_psnr_swapped": _psnr_ci(res["psnr_swap"]),
            "swap_gap_db": _ci(gap), "masked_ssim": _ci(res["ssim_true"]),
            "masked_ssim_swapped": _ci(res["ssim_swap"]),
            **{score: _ci(res[score]) if np.isfinite(res[score]).any() else None for score in IMACS_SCORES},
            "sampling": {"steps": sampling.num_inference_steps, "cfg": sampling.guidance_scale},
            "minus_baseline_db": {name: _paired(np.asarray(res["psnr_true"]) - np.asarray(b["masked_psnr"]))
                                  for name, b in base.items()},
        }
    return out


def _f(c: dict | None, digits: int = 2) -> str:
    return "n/a" if not c else f"{c['mean']:.{digits}f} [{c['ci_low']:.{digits}f}, {c['ci_high']:.{digits}f}]"


def _median(c: dict | None) -> str:
    return "n/a" if not c or c.get("median") is None else f"{c['median']:.2f}"


def _baseline_notes(ev: dict) -> list[str]:
    """Sentences, from the numbers, on baselines whose mean says more about a few samples than about the rest."""
    ceiling = ev.get("vae_reconstruction_masked_psnr")
    notes = []
    for name, b in ev["baselines"].items():
        psnr = b["masked_psnr"]
        if psnr.get("n_exact"):
            notes.append(f"`{name}` is exact to float precision (above {EXACT_DB:.0f} dB) on {psnr['n_exact']} of "
                         f"{psnr['n']} samples, which lifts its mean to {psnr['mean']:.2f} dB against a median of "
                         f"{psnr['median']:.2f} dB.")
        if ceiling and psnr["mean"] > ceiling["mean"]:
            notes.append(f"The mean of `{name}` is above the VAE's own reconstruction of the ground truth "
                         f"({ceiling['mean']:.2f} dB): "
                         "no model that decodes through this VAE can reach it on the mean; the median and the "
                         "share of samples above it are the comparisons that measure the model.")
    return notes


def _vae_summary(task) -> str:
    p = task.vae_dir / "train_summary.json"
    seconds = f", {json.loads(p.read_text())['seconds']:.0f} s on CPU" if p.is_file() else ""
    return task.vae_recipe.describe() + seconds


def model_card(task_name: str, ev: dict) -> str:
    spec = EMBEDDED_TASKS[task_name]
    c = spec.vae_recipe.latent_channels
    lines = [f"# Model card: {task_name} mini models", "",
             "Mini reference-conditioned latent diffusion models trained by this project on procedural data, "
             "so that the harness shows the whole method on real diffusion mechanics without downloaded weights. "
             "They are NOT models of real images.", "", "## Data", "",
             f"Procedural `{spec.generator}` generator (`benchmark/procedural/`), seed {spec.seed}"
             + "".join(f", {k}={v}" for k, v in spec.generator_options) + ": "
             f"{spec.n_train} train samples, {spec.n_test} test samples (ids disjoint), written in the real dataset's layout.",
             "", "## Architecture", "",
             f"- VAE: diffusers `AutoencoderKL` (`tasks/_shared/{spec.vae}`), {_vae_summary(spec)}.",
             "- UNet: diffusers `UNet2DConditionModel`, channels (32, 64), one layer per block, 4 heads, " +
             ("7 cross-attention layers" if spec.attention_at_full_resolution else
              "4 cross-attention layers, all on the half-resolution grid (no attention blocks at the full latent "
              "resolution, like SDXL's outer level)") +
             f"; input = noisy latent ({c}) + " +
             " + ".join(f"{n} ({condition_width(k, c)})" for n, k in spec.conditions) +
             " channels." +
             (f" It generates the latent residual over `{spec.residual_of}` (the HR latent minus the latent of "
              f"the condition image, rescaled to unit std; `residual_of` in `i2i_config.json`), as SR3/ResShift-"
              "style super-resolution models generate the detail over the upsampled input; sampling adds the "
              "condition's latent back before decoding." if spec.residual_of else ""),
             f"- Reference encoder: transformers `CLIPVisionModel` ({spec.reference_size}x{spec.reference_size} "
             f"input, patch 4, width 64, 2 layers), trained jointly; context = CLS + "
             f"{spec.reference_size // 4}x{spec.reference_size // 4} patch tokens (`patch`), or the pooled "
             "token only (`cls-only`, like Paint-by-Example).",
             "- Training: epsilon prediction, DDPM 1000 steps (scaled-linear betas as SD-1.5), AdamW, batch 32, "
             "reference dropped 10% of steps (classifier-free guidance). Sampling: DDIM 20 steps, CFG 3." +
             (f" Training references: CUFED5 levels {', '.join(map(str, spec.train_levels))}; tests use level 1."
              if spec.generator == "cufed5" else "")]
    if (spec.models_dir / "dit" / "transformer").is_dir():
        lines += ["- `dit`: a diffusion transformer of the FLUX architecture (diffusers `FluxTransformer2DModel`, "
                  "2 dual-stream + 2 single-stream blocks, width 64, 4 heads, patch 1) in the FLUX Kontext layout: "
                  "one token per latent cell carrying the conditions as extra channels, followed in the same "
                  "sequence by the reference image's latent tokens (position ids with first coordinate 1) and one "
                  "null text token. Rectified flow (velocity target, logit-normal times), reference dropped 10% of "
                  "steps; sampling: flow-matching Euler 20 steps, CFG 3. Same VAE and data as the UNets."]
    lines += ["", "## Checkpoints", "", "| model | steps | training time (s, CPU) | loss first/last 100 steps |", "|---|---|---|---|"]
    for model in MODEL_ORDER:
        p = spec.models_dir / model / "train_summary.json"
        if p.is_file():
            s = json.loads(p.read_text())
            lines.append(f"| {model} | {s['step']} of {s['total_steps']} | {s['seconds']:.0f} | "
                         f"{s['loss_first_100']:.4f} / {s['loss_last_100']:.4f} |")
    region = "inside the region the reference covers" if task_name == "super_resolution" else "inside the inpainting mask"
    lines += ["", f"## Does the model use its reference? ({ev['n_samples']} held-out test samples)", "",
              f"Masked PSNR / SSIM {region}; mean [bootstrap 95% CI]. *Swapped*: the same sample and noise with "
              "another sample's reference. The gap is paired per sample.", "",
              "| model | masked PSNR (dB) | median | swapped ref. PSNR | gap (dB) | masked SSIM | swapped SSIM | "
              "IMACS_g | IMACS_r |",
              "|---|---|---|---|---|---|---|---|---|"]
    for model, m in ev["models"].items():
        lines.append(f"| {model} | {_f(m['masked_psnr'])} | {_median(m['masked_psnr'])} | "
                     f"{_f(m['masked_psnr_swapped'])} | {_f(m['swap_gap_db'])} | "
                     f"{_f(m['masked_ssim'], 3)} | {_f(m['masked_ssim_swapped'], 3)} | {_f(m['imacs_g'], 3)} | "
                     f"{_f(m['imacs_r'], 3)} |")
    for name, b in ev["baselines"].items():
        lines.append(f"| baseline: {name} | {_f(b['masked_psnr'])} | {_median(b['masked_psnr'])} | | | "
                     f"{_f(b['masked_ssim'], 3)} | | | |")
    notes = _baseline_notes(ev)
    lines += ["", *([" ".join(notes), ""] if notes else []),
              "Paired per sample, masked PSNR of the model minus the baseline's (dB): mean [95% CI]; median; the "
              "share of samples where the model is above the baseline:", "",
              "| model | " + " | ".join(f"minus {name}" for name in ev["baselines"]) + " |",
              "|---|" + "---|" * len(ev["baselines"])]
    for model, m in ev["models"].items():
        lines.append(f"| {model} | " + " | ".join(
            _f(m["minus_baseline_db"][name]) + f"; {_median(m['minus_baseline_db'][name])}; "
            f"above in {m['minus_baseline_db'][name]['share_positive']:.0%}"
            for name in ev["baselines"]) + " |")
    lines += ["",
              f"Ceiling set by the VAE: encoding and decoding the ground truth gives a masked PSNR of "
              f"{_f(ev.get('vae_reconstruction_masked_psnr'))} dB on the same samples.", "",
              "Regenerate: `python -m benchmark evaluate-models` (numbers above) after `python -m benchmark train`."]
    return "\n".join(lines) + "\n"


def main(args) -> int:
    for task_name in args.task or list(EMBEDDED_TASKS):
        ev = evaluate_task(task_name, args.samples)
        d = resolve_path(f"tasks/{task_name}")
        (d / "model_eval.json").write_text(json.dumps(ev, indent=2) + "\n")
        (d / "MODEL_CARD.md").write_text(model_card(task_name, ev))
        print(model_card(task_name, ev))
    return 0
