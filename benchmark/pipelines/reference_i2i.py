"""The paper's custom I2I model as a diffusers pipeline.

A ``UNet2DConditionModel`` whose extra input channels carry the task's
conditions (VAE latents of condition images, masks resized to the latent
grid) and whose cross-attention context is the reference image encoded by a
CLIP vision tower: CLS + patch tokens (``patch``), or the pooled token alone
(``cls``, as Paint-by-Example does).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, DDIMScheduler, DiffusionPipeline, UNet2DConditionModel
from transformers import CLIPVisionModel

from benchmark.api.sample import condition_size
from benchmark.models.mini import I2IModelSpec


def encode_reference(encoder: CLIPVisionModel, reference: torch.Tensor, tokens: str) -> torch.Tensor:
    """(B, 3, Hr, Wr) in [0, 1] -> context (B, tokens, D): CLS + patch tokens (``patch``) or the pooled token (``cls``).

    Shared by sampling and training, so both see the same context.
    """
    size = encoder.config.image_size
    # resized in float32: the CPU antialiased kernels have no float16 / bfloat16 version
    pixels = F.interpolate(reference.float(), size=(size, size), mode="bilinear", align_corners=False,
                           antialias=True).to(reference.dtype)
    out = encoder(pixel_values=pixels * 2 - 1)
    return out.pooler_output[:, None] if tokens == "cls" else out.last_hidden_state


def encode_image(vae: AutoencoderKL, image: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) in [0, 1] -> scaled latent (B, C, H/f, W/f), the posterior mode (deterministic)."""
    return vae.encode(image * 2 - 1).latent_dist.mode() * vae.config.scaling_factor


def encode_conditions(vae: AutoencoderKL, spec_conditions, conditions: dict[str, torch.Tensor],
                      latent_size: tuple[int, int]) -> torch.Tensor:
    """Stack ``(name, kind)`` conditions in channel order at the latent size -> (B, C_cond, h, w):
    kind ``image`` is VAE-encoded, kind ``mask`` is area-resized."""
    parts = []
    for name, kind in spec_conditions:
        if name not in conditions:
            raise KeyError(f"model expects condition {name!r}; got {sorted(conditions)}")
        x = conditions[name]
        parts.append(encode_image(vae, x) if kind == "image" else F.interpolate(x, size=latent_size, mode="area"))
    return torch.cat(parts, dim=1)


@contextmanager
def float32_decoder(vae: AutoencoderKL) -> Iterator[torch.dtype]:
    """Within the block, the dtype to decode in: float32 for a float16/bfloat16 VAE whose config sets
    ``force_upcast``, else the VAE's own.

    The SDXL-family VAEs overflow to NaN in float16 (diffusers marks them with ``force_upcast`` and decodes
    in float32); VAEs that are safe in half precision clear the flag and keep their speed. bfloat16 does not
    overflow, but its 8-bit mantissa shows in the 8-bit PNGs, and the decode is a small share of a run. Only
    ``post_quant_conv`` and ``decoder`` are cast, in place, and cast back on leaving (half -> float32 ->
    half is exact), so the model is never held twice. A loaded model serves one job at a time.
    """
    if vae.dtype not in (torch.float16, torch.bfloat16) or not vae.config.get("force_upcast", False):
        yield vae.dtype
        return
    half, parts = vae.dtype, [m for m in (vae.post_quant_conv, vae.decoder) if m is not None]
    for m in parts:
        m.to(torch.float32)
    try:
        yield torch.float32
    finally:
        for m in parts:
            m.to(half)


@contextmanager
def float32_decode_calls(vae: AutoencoderKL) -> Iterator[None]:
    """Within the block, every ``vae.decode(z)`` runs under :func:`float32_decoder` (``z`` cast to its dtype):
    for pipelines that decode inside their own ``__call__`` (diffusers' Paint-by-Example and FLUX Kontext
    pipelines). Nothing changes for a float32 VAE or one without ``force_upcast``."""
    if vae.dtype not in (torch.float16, torch.bfloat16) or not vae.config.get("force_upcast", False):
        yield
        return
    original = vae.decode

    def decode(z, *args, **kwargs):
        with float32_decoder(vae) as dtype:
            return original(z.to(dtype), *args, **kwargs)

    vae.decode = decode
    try:
        yield
    finally:
        del vae.decode  # the instance attribute; the class method is back


class ReferencePipelineBase(DiffusionPipeline):
    """What the reference pipelines share: a ``vae``, a ``spec`` (:class:`I2IModelSpec`) and a ``denoiser``."""

    denoiser: torch.nn.Module  # the network sampling calls (and the capture patches)

    def latent_size(self, image_size: tuple[int, int]) -> tuple[int, int]:
        f = 2 ** (len(self.vae.config.block_out_channels) - 1)
        return image_size[0] // f, image_size[1] // f

    def encode_image(self, image: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) in [0, 1] -> scaled latent (B, C, H/f, W/f), the posterior mode (deterministic)."""
        return encode_image(self.vae, image)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Scaled latents (B, C, h, w) -> (B, 3, H, W) float32 in [0, 1], decoded in :func:`float32_decoder`'s dtype."""
        with float32_decoder(self.vae) as dtype:
            image = self.vae.decode(latents.to(dtype) / self.vae.config.scaling_factor).sample
        return ((image.float() + 1) / 2).clamp(0, 1)

    def encode_conditions(self, conditions: dict[str, torch.Tensor], latent_size: tuple[int, int]) -> torch.Tensor:
        """Stack the spec's conditions in channel order at the latent size -> (B, C_cond, h, w)."""
        moved = {k: v.to(self.device, self.denoiser.dtype) for k, v in conditions.items()}
        return encode_conditions(self.vae, self.spec.conditions, moved, latent_size)

    def encode_inputs(self, reference: torch.Tensor, conditions: dict[str, torch.Tensor],
                      image_size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor, tuple[int, int]]:
        """(encoded reference, condition channels, latent (h, w)) for images of ``image_size``."""
        h, w = self.latent_size(image_size)
        reference = self.encode_reference(reference.to(self.device, self.denoiser.dtype))
        return reference, self.encode_conditions(conditions, (h, w)), (h, w)


class ReferenceI2IPipeline(ReferencePipelineBase):
    model_cpu_offload_seq = "image_encoder->unet->vae"

    def __init__(self, vae: AutoencoderKL, unet: UNet2DConditionModel, image_encoder: CLIPVisionModel,
                 scheduler: DDIMScheduler, spec: I2IModelSpec | None = None):
        super().__init__()
        self.register_modules(vae=vae, unet=unet, image_encoder=image_encoder, scheduler=scheduler)
        self.spec = spec

    @property
    def denoiser(self) -> UNet2DConditionModel:
        return self.unet

    def encode_reference(self, reference: torch.Tensor) -> torch.Tensor:
        """(B, 3, Hr, Wr) in [0, 1] -> context (B, tokens, D): CLS + patches, or the pooled token."""
        return encode_reference(self.image_encoder, reference, self.spec.reference_tokens)

    # --- sampling ------------------------------------------------------------------------------
    @torch.no_grad()
    def __call__(self, reference: torch.Tensor, conditions: dict[str, torch.Tensor],
                 num_inference_steps: int | None = None, guidance_scale: float | None = None,
                 generator: torch.Generator | None = None, eta: float = 0.0,
                 callback_on_step_end: Callable | None = None, latents: torch.Tensor | None = None) -> torch.Tensor:
        """Generate (B, 3, H, W) images in [0, 1] for ``reference`` (B, 3, Hr, Wr) and ``conditions``.

        Classifier-free guidance runs the batch as [unconditional; conditional]
        (the conditional half second, as diffusers pipelines do) whenever
        ``guidance_scale > 1``; the unconditional context is all zeros, the
        null reference used in training.
        ``callback_on_step_end(pipe, i, t, {})`` is called after step i.
        """
        steps = num_inference_steps or self.spec.num_inference_steps
        scale = self.spec.guidance_scale if guidance_scale is None else guidance_scale
        context, cond, (h, w) = self.encode_inputs(reference, conditions, condition_size(conditions))
        base = cond[:, self.spec.condition_slice(self.spec.residual_of, self.vae.config.latent_channels)] \
            if self.spec.residual_of else None
        do_cfg = scale > 1.0
        if do_cfg:
            context = torch.cat([torch.zeros_like(context), context])
            cond = torch.cat([cond, cond])
        b = reference.shape[0]
        if latents is None:
            latents = torch.randn((b, self.unet.config.out_channels, h, w), generator=generator,
                                  device="cpu", dtype=torch.float32)
        latents = latents.to(self.device, self.unet.dtype)
        self.scheduler.set_timesteps(steps, device=self.device)
        latents = latents * self.scheduler.init_noise_sigma
        for i, t in enumerate(self.progress_bar(self.scheduler.timesteps)):
            x = torch.cat([latents, latents]) if do_cfg else latents
            x = torch.cat([self.scheduler.scale_model_input(x, t), cond], dim=1)
            eps = self.unet(x, t, encoder_hidden_states=context).sample
            if do_cfg:
                uncond, cond_eps = eps.chunk(2)
                eps = uncond + scale * (cond_eps - uncond)
            latents = self.scheduler.step(eps, t, latents, eta=eta, generator=generator).prev_sample
            if callback_on_step_end is not None:
                callback_on_step_end(self, i, t, {})
        if base is not None:  # the model generated the residual over the condition's latent
            latents = latents / self.spec.residual_scale + base.to(latents.dtype)
        return self.decode(latents)

    @torch.no_grad()
    def one_pass(self, reference: torch.Tensor, conditions: dict[str, torch.Tensor], target: torch.Tensor,
                 timesteps: tuple[int, ...], noise: torch.Tensor, callback_on_step_end: Callable | None = None) -> int:
        """One conditional UNet call per timestep on the noised ground truth; returns the number of calls.

        ``reference`` and ``conditions`` as in :meth:`__call__`; ``target`` (B, 3, H, W)
        in [0, 1]; ``timesteps`` ints in [0, num_train_timesteps); ``noise`` (T, B, C, h, w).
        x_0 is the target's latent (posterior mode), or for a residual model the
        scaled residual over the condition's latent, exactly what training noised;
        x_t = ``scheduler.add_noise(x_0, noise[k], t)`` (the training forward process).
        The UNet sees the conditional context and condition channels of sampling
        and no unconditional half. ``callback_on_step_end(pipe, k, t, {})`` follows call k.
        """
        context, cond, _ = self.encode_inputs(reference, conditions, tuple(target.shape[-2:]))
        x0 = self.encode_image(target.to(self.device, self.unet.dtype))
        if self.spec.residual_of:  # training noised the scaled residual, so that is the model's x_0
            base = cond[:, self.spec.condition_slice(self.spec.residual_of, self.vae.config.latent_channels)]
            x0 = (x0 - base) * self.spec.residual_scale
        for k, step in enumerate(timesteps):
            t = torch.full((x0.shape[0],), int(step), device=self.device, dtype=torch.long)
            x = self.scheduler.add_noise(x0, noise[k].to(x0), t)
            x = torch.cat([self.scheduler.scale_model_input(x, t), cond], dim=1)
            self.unet(x, t, encoder_hidden_states=context)
            if callback_on_step_end is not None:
                callback_on_step_end(self, k, t[0], {})
        return len(timesteps)
