"""The mini I2I diffusion transformer: FLUX architecture, reference tokens in the joint sequence.

Folder layout (what :func:`benchmark.training.train.train_dit` exports)::

    <path>/transformer/     FluxTransformer2DModel
    <path>/i2i_config.json  conditions, reference size, sampling defaults
    <vae>/                  AutoencoderKL (option ``vae``; default <path>/vae)

``path`` and the option ``vae`` are found as in :mod:`benchmark.adapters.reference_unet`.

Options: ``vae`` (folder), ``random_init`` (a seed: a freshly initialised
transformer of the same config, the attribution-method baseline).
Capture path ``joint``: I2AM reads the generated x reference block of every
attention layer (dual- and single-stream blocks); output-space
(ConceptAttention-style) maps come from the same pass.
"""

from __future__ import annotations

from typing import Callable

import torch
from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxTransformer2DModel

from benchmark.adapters.reference_unet import load_component, model_and_vae
from benchmark.api.model import (ModelAdapter, ModelSpec, SamplingSettings, check_timesteps, initial_noise,
                                 one_pass_noise, one_pass_target, weights_hash)
from benchmark.capture.joint_capture import JointLayout
from benchmark.capture.tokens import TokenLayout
from benchmark.models.mini import I2IModelSpec
from benchmark.pipelines.reference_dit import ReferenceDiTPipeline, reference_size
from benchmark.registry import ADAPTERS


@ADAPTERS.register("reference_dit")
class ReferenceDiTAdapter(ModelAdapter):
    capture_path = "joint"

    def __init__(self, spec: ModelSpec, device="cpu"):
        super().__init__(spec, device)
        root, vae_dir = model_and_vae(spec, "a folder with transformer/, i2i_config.json")
        self.i2i = I2IModelSpec.load(root)
        self.pipe = ReferenceDiTPipeline(
            vae=load_component(AutoencoderKL, vae_dir, "VAE"),
            transformer=load_component(FluxTransformer2DModel, root / "transformer", "transformer"),
            scheduler=FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=1.0),
            spec=self.i2i,
        ).to(self.device)
        if spec.options.get("random_init") is not None:
            torch.manual_seed(int(spec.options["random_init"]))
            self.pipe.transformer = FluxTransformer2DModel.from_config(self.pipe.transformer.config).to(self.device)
        self.pipe.set_progress_bar_config(disable=True)
        for m in (self.pipe.vae, self.pipe.transformer):
            m.eval().requires_grad_(False)

    @property
    def token_layout(self) -> TokenLayout:
        return TokenLayout(grid=self.pipe.latent_size(reference_size(self.i2i)))

    def capture_module(self) -> torch.nn.Module:
        return self.pipe.transformer

    def joint_layout(self, batch: dict) -> JointLayout:
        return self.pipe.joint_layout(tuple(next(iter(batch["conditions"].values())).shape[-2:]))

    def latent_grid(self, image_size):
        return self.pipe.latent_size(tuple(image_size))

    def default_sampling(self) -> SamplingSettings:
        return SamplingSettings(self.i2i.num_inference_steps, self.i2i.guidance_scale)

    def generate(self, batch: dict, sampling: SamplingSettings, seeds: list[int],
                 callback_on_step_end: Callable | None = None) -> torch.Tensor:
        size = tuple(next(iter(batch["conditions"].values())).shape[-2:])
        noise = initial_noise(seeds, (self.pipe.transformer.config.out_channels, *self.latent_grid(size)))
        return self.pipe(batch["reference"], batch["conditions"], num_inference_steps=sampling.num_inference_steps,
                         guidance_scale=sampling.guidance_scale, latents=noise,
                         callback_on_step_end=callback_on_step_end).float().cpu()

    def identity(self) -> dict:
        ident = super().identity()
        ident["weights"] += "-" + weights_hash(self.pipe.vae)[:8]
        return ident

    def one_pass(self, batch: dict, timesteps: tuple[int, ...], seeds: list[int],
                 callback_on_step_end: Callable | None = None) -> int:
        """See :meth:`ModelAdapter.one_pass`; t / 1000 is the flow time sigma. A
        :class:`~benchmark.capture.joint_capture.OutputSpaceAccumulator` in the capture fills from the same calls."""
        who = f"model {self.spec.name!r}"
        target = one_pass_target(batch, who)
        steps = check_timesteps(timesteps, self.pipe.scheduler.config.num_train_timesteps, who)
        noise = one_pass_noise(seeds, steps, (self.pipe.transformer.config.out_channels,
                                              *self.latent_grid(tuple(target.shape[-2:]))))
        return self.pipe.one_pass(batch["reference"], batch["conditions"], target, steps, noise, callback_on_step_end)
