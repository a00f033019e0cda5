"""Shared behaviour of adapters built on :class:`~benchmark.pipelines.reference_i2i.ReferenceI2IPipeline`."""

from __future__ import annotations

from typing import Callable

import torch
from diffusers import DDIMScheduler

from benchmark.api.model import (ModelAdapter, SamplingSettings, check_timesteps, initial_noise, one_pass_noise,
                                 one_pass_target, weights_hash)


def ddim_scheduler() -> DDIMScheduler:
    """SD-1.5's DDIM settings (also what the mini models are trained for)."""
    return DDIMScheduler(num_train_timesteps=1000, beta_schedule="scaled_linear", beta_start=0.00085,
                         beta_end=0.012, clip_sample=False, set_alpha_to_one=False, steps_offset=1)


class ReferencePipelineAdapter(ModelAdapter):
    """Subclasses set ``self.pipe`` (a ReferenceI2IPipeline) and declare ``token_layout`` / ``default_sampling``."""

    pipe = None

    def capture_module(self) -> torch.nn.Module:
        return self.pipe.unet

    def latent_grid(self, image_size):
        return self.pipe.latent_size(tuple(image_size))

    def generate(self, batch: dict, sampling: SamplingSettings, seeds: list[int],
                 callback_on_step_end: Callable | None = None) -> torch.Tensor:
        size = tuple(next(iter(batch["conditions"].values())).shape[-2:])
        noise = initial_noise(seeds, (self.pipe.unet.config.out_channels, *self.latent_grid(size)))
        return self.pipe(batch["reference"], batch["conditions"], num_inference_steps=sampling.num_inference_steps,
                         guidance_scale=sampling.guidance_scale, eta=sampling.eta, latents=noise,
                         callback_on_step_end=callback_on_step_end).float().cpu()

    def identity(self) -> dict:
        ident = super().identity()
        ident["weights"] += "-" + "".join(weights_hash(m)[:8] for m in (self.pipe.image_encoder, self.pipe.vae))
        return ident

    def one_pass(self, batch: dict, timesteps: tuple[int, ...], seeds: list[int],
                 callback_on_step_end: Callable | None = None) -> int:
        """See :meth:`ModelAdapter.one_pass`; the pipeline's :meth:`~ReferenceI2IPipeline.one_pass` runs the calls."""
        who = f"model {self.spec.name!r}"
        target = one_pass_target(batch, who)
        steps = check_timesteps(timesteps, self.pipe.scheduler.config.num_train_timesteps, who)
        noise = one_pass_noise(seeds, steps, (self.pipe.unet.config.out_channels,
                                              *self.latent_grid(tuple(target.shape[-2:]))))
        return self.pipe.one_pass(batch["reference"], batch["conditions"], target, steps, noise, callback_on_step_end)
