"""A reference-conditioned I2I diffusion transformer in the FLUX Kontext layout.

A diffusers ``FluxTransformer2DModel`` sees ONE image sequence: the noisy
latent's tokens (one per latent cell), each carrying the task's conditions in
extra channels (masked-image latent, mask; as FLUX Fill does), followed by the
reference image's latent tokens (as FLUX Kontext does: position ids with the
first coordinate 1, condition channels zero). The text stream is a single
null token. Trained with rectified flow (velocity ``noise - x0``) and sampled
with ``FlowMatchEulerDiscreteScheduler``; classifier-free guidance drops the
reference (its latent tokens become zeros) as the UNet models do.

I2AM reads the generated x reference block of the joint attention
(:mod:`benchmark.capture.joint_capture`).
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxTransformer2DModel

from benchmark.api.sample import condition_size
from benchmark.capture.joint_capture import JointLayout
from benchmark.models.mini import I2IModelSpec
from benchmark.pipelines.reference_i2i import ReferencePipelineBase, encode_image

TEXT_TOKENS = 1  # the null text token
DEFAULT_REFERENCE_SIZE = 48  # reference image side: 12x12 latent tokens at f=4


def pack(latents: torch.Tensor) -> torch.Tensor:
    """(B, C, h, w) -> (B, h*w, C): one token per latent cell, row-major."""
    return latents.flatten(2).transpose(1, 2)


def unpack(tokens: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """(B, h*w, C) -> (B, C, h, w)."""
    return tokens.transpose(1, 2).unflatten(2, (h, w))


def position_ids(h: int, w: int, image_index: int) -> torch.Tensor:
    """(h*w, 3) rotary position ids ``[image_index, row, col]`` (0: generated, 1: reference)."""
    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    return torch.stack([torch.full_like(yy, image_index), yy, xx], -1).flatten(0, 1).float()


def reference_size(spec: I2IModelSpec) -> tuple[int, int]:
    return tuple(spec.extra.get("reference_size", (DEFAULT_REFERENCE_SIZE, DEFAULT_REFERENCE_SIZE)))


def encode_reference_latent(vae: AutoencoderKL, reference: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(B, 3, Hr, Wr) in [0, 1] -> the reference latent at the model's fixed reference size.

    Shared by sampling and training, so both see the same reference tokens.
    """
    # resized in float32: the CPU antialiased kernels have no float16 / bfloat16 version
    pixels = F.interpolate(reference.float(), size=size, mode="bilinear", align_corners=False,
                           antialias=True).to(reference.dtype)
    return encode_image(vae, pixels)


def dit_inputs(transformer: FluxTransformer2DModel, noisy: torch.Tensor, cond: torch.Tensor,
               reference_latent: torch.Tensor, t: torch.Tensor) -> dict:
    """Keyword arguments of one transformer call (shared by training and sampling).

    noisy (B, C, h, w), cond (B, C_cond, h, w), reference_latent (B, C, hr, wr); t (B,) in [0, 1].
    """
    b, _, h, w = noisy.shape
    hr, wr = reference_latent.shape[-2:]
    generated = pack(torch.cat([noisy, cond], 1))
    reference = pack(torch.cat([reference_latent, reference_latent.new_zeros(b, cond.shape[1], hr, wr)], 1))
    cfg = transformer.config
    return dict(
        hidden_states=torch.cat([generated, reference], 1),
        encoder_hidden_states=noisy.new_zeros(b, TEXT_TOKENS, cfg.joint_attention_dim),
        pooled_projections=noisy.new_zeros(b, cfg.pooled_projection_dim),
        timestep=t.to(noisy.dtype),
        img_ids=torch.cat([position_ids(h, w, 0), position_ids(hr, wr, 1)]).to(noisy.device),
        txt_ids=torch.zeros(TEXT_TOKENS, 3, device=noisy.device),
    )


class ReferenceDiTPipeline(ReferencePipelineBase):
    model_cpu_offload_seq = "transformer->vae"

    def __init__(self, vae: AutoencoderKL, transformer: FluxTransformer2DModel,
                 scheduler: FlowMatchEulerDiscreteScheduler, spec: I2IModelSpec | None = None):
        super().__init__()
        self.register_modules(vae=vae, transformer=transformer, scheduler=scheduler)
        self.spec = spec

    @property
    def denoiser(self) -> FluxTransformer2DModel:
        return self.transformer

    def encode_reference(self, reference: torch.Tensor) -> torch.Tensor:
        """(B, 3, Hr, Wr) in [0, 1] -> reference latent at the model's fixed reference size."""
        return encode_reference_latent(self.vae, reference, reference_size(self.spec))

    def joint_layout(self, image_size: tuple[int, int]) -> JointLayout:
        h, w = self.latent_size(image_size)
        hr, wr = self.latent_size(reference_size(self.spec))
        return JointLayout(TEXT_TOKENS, h * w, hr * wr)

    @torch.no_grad()
    def __call__(self, reference: torch.Tensor, conditions: dict[str, torch.Tensor],
                 num_inference_steps: int | None = None, guidance_scale: float | None = None,
                 latents: torch.Tensor | None = None, generator: torch.Generator | None = None,
                 callback_on_step_end: Callable | None = None) -> torch.Tensor:
        """Generate (B, 3, H, W) in [0, 1]. Under CFG the transformer batch is [null reference; reference]."""
        steps = num_inference_steps or self.spec.num_inference_steps
        scale = self.spec.guidance_scale if guidance_scale is None else guidance_scale
        dtype, device = self.transformer.dtype, self.device
        ref, cond, (h, w) = self.encode_inputs(reference, conditions, condition_size(conditions))
        do_cfg = scale > 1.0
        if do_cfg:
            ref, cond = torch.cat([torch.zeros_like(ref), ref]), torch.cat([cond, cond])
        if latents is None:
            latents = torch.randn((reference.shape[0], self.transformer.config.out_channels, h, w),
                                  generator=generator, dtype=torch.float32)
        latents = latents.to(device, dtype)
        self.scheduler.set_timesteps(steps, device=device)
        for i, t in enumerate(self.progress_bar(self.scheduler.timesteps)):
            x = torch.cat([latents, latents]) if do_cfg else latents
            sigma = (t / self.scheduler.config.num_train_timesteps).expand(x.shape[0])
            out = self.transformer(**dit_inputs(self.transformer, x, cond, ref, sigma)).sample
            v = unpack(out[:, : h * w], h, w)
            if do_cfg:
                uncond, cond_v = v.chunk(2)
                v = uncond + scale * (cond_v - uncond)
            latents = self.scheduler.step(v, t, latents).prev_sample
            if callback_on_step_end is not None:
                callback_on_step_end(self, i, t, {})
        return self.decode(latents)

    @torch.no_grad()
    def one_pass(self, reference: torch.Tensor, conditions: dict[str, torch.Tensor], target: torch.Tensor,
                 timesteps: tuple[int, ...], noise: torch.Tensor, callback_on_step_end: Callable | None = None) -> int:
        """One conditional transformer call per timestep on the noised ground truth; returns the number of calls.

        ``target`` (B, 3, H, W) in [0, 1]; ``timesteps`` ints in [0, num_train_timesteps);
        ``noise`` (T, B, C, h, w). With sigma = t / num_train_timesteps (the time
        sampling passes the transformer), x_t = (1 - sigma) x_0 + sigma noise[k],
        the rectified-flow path the model was trained on. The joint sequence
        holds the true reference tokens only (no null-reference half).
        ``callback_on_step_end(pipe, k, t, {})`` follows call k.
        """
        dtype, device = self.transformer.dtype, self.device
        ref, cond, _ = self.encode_inputs(reference, conditions, tuple(target.shape[-2:]))
        x0 = self.encode_image(target.to(device, dtype))
        num_train = self.scheduler.config.num_train_timesteps
        for k, step in enumerate(timesteps):
            sigma = torch.full((x0.shape[0],), int(step) / num_train, device=device)
            s = sigma.to(dtype)[:, None, None, None]
            x = (1 - s) * x0 + s * noise[k].to(x0)
            self.transformer(**dit_inputs(self.transformer, x, cond, ref, sigma))
            if callback_on_step_end is not None:
                callback_on_step_end(self, k, torch.tensor(float(step)), {})
        return len(timesteps)
