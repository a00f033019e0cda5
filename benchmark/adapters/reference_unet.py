"""The paper's custom model: SD-style UNet with extra condition channels, CLIP patch tokens as context.

Folder layout (what :mod:`benchmark.training.train` exports, and what a
full-size model of the same design is saved as)::

    <path>/unet/            UNet2DConditionModel
    <path>/image_encoder/   CLIPVisionModel
    <path>/i2i_config.json  conditions, reference tokens (patch | cls), sampling defaults
    <vae>/                  AutoencoderKL (option ``vae``; default <path>/vae)

Options: ``vae`` (folder), ``random_init`` (a seed: replace UNet and image
encoder by freshly initialised copies, the attribution-method baseline).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch
from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
from transformers import CLIPVisionModel

from benchmark.api.model import ModelAdapter, ModelSpec, SamplingSettings, initial_noise
from benchmark.capture.tokens import TokenLayout
from benchmark.models.mini import I2IModelSpec
from benchmark.pipelines.reference_i2i import ReferenceI2IPipeline
from benchmark.registry import ADAPTERS


def ddim_scheduler() -> DDIMScheduler:
    """SD-1.5's DDIM settings (also what the mini models are trained for)."""
    return DDIMScheduler(num_train_timesteps=1000, beta_schedule="scaled_linear", beta_start=0.00085,
                         beta_end=0.012, clip_sample=False, set_alpha_to_one=False, steps_offset=1)


def _load(cls, path: Path, what: str, **kw):
    if not Path(path).is_dir():
        raise FileNotFoundError(f"{what} not found at {path}: put a {cls.__name__} folder (from save_pretrained) there")
    return cls.from_pretrained(path, torch_dtype=torch.float32, **kw)


@ADAPTERS.register("reference_unet")
class ReferenceUNetAdapter(ModelAdapter):
    def __init__(self, spec: ModelSpec, device="cpu"):
        super().__init__(spec, device)
        root = Path(spec.path)
        self.i2i = I2IModelSpec.load(root)
        vae_dir = Path(spec.options.get("vae", root / "vae"))
        self.pipe = ReferenceI2IPipeline(
            vae=_load(AutoencoderKL, vae_dir, "VAE"),
            unet=_load(UNet2DConditionModel, root / "unet", "UNet"),
            image_encoder=_load(CLIPVisionModel, root / "image_encoder", "image encoder"),
            scheduler=ddim_scheduler(),
            spec=self.i2i,
        ).to(self.device)
        if spec.options.get("random_init") is not None:
            # Baseline "randomly initialised copy": same architecture, fresh weights (VAE kept for decoding).
            torch.manual_seed(int(spec.options["random_init"]))
            self.pipe.unet = UNet2DConditionModel.from_config(self.pipe.unet.config).to(self.device)
            self.pipe.image_encoder = CLIPVisionModel(self.pipe.image_encoder.config).to(self.device)
        self.pipe.set_progress_bar_config(disable=True)
        for m in (self.pipe.vae, self.pipe.unet, self.pipe.image_encoder):
            m.eval().requires_grad_(False)

    @property
    def token_layout(self) -> TokenLayout:
        if self.i2i.reference_tokens == "cls":
            return TokenLayout(grid=(1, 1))
        cfg = self.pipe.image_encoder.config
        side = cfg.image_size // cfg.patch_size
        return TokenLayout(grid=(side, side), drop=(0,))  # CLS first, dropped after the softmax

    def capture_module(self) -> torch.nn.Module:
        return self.pipe.unet

    def latent_grid(self, image_size):
        return self.pipe.latent_size(tuple(image_size))

    def default_sampling(self) -> SamplingSettings:
        return SamplingSettings(self.i2i.num_inference_steps, self.i2i.guidance_scale)

    def generate(self, batch: dict, sampling: SamplingSettings, seeds: list[int],
                 callback_on_step_end: Callable | None = None) -> torch.Tensor:
        size = tuple(next(iter(batch["conditions"].values())).shape[-2:])
        noise = initial_noise(seeds, (self.pipe.unet.config.out_channels, *self.latent_grid(size)))
        return self.pipe(batch["reference"], batch["conditions"], num_inference_steps=sampling.num_inference_steps,
                         guidance_scale=sampling.guidance_scale, eta=sampling.eta, latents=noise,
                         callback_on_step_end=callback_on_step_end).float().cpu()

    def identity(self) -> dict:
        ident = super().identity()
        ident["weights"] = ident["weights"] + "-" + _hash_modules(self.pipe.image_encoder, self.pipe.vae)
        return ident


def _hash_modules(*modules) -> str:
    from benchmark.api.model import weights_hash

    return "".join(weights_hash(m)[:8] for m in modules)
