"""Tiny random models for every registered adapter, saved the way a real model is (diffusers' get_dummy_components).

``BUILDERS[adapter](folder) -> ModelSpec``: builds the model, saves it under
``folder`` and returns the spec that loads it through the adapter. A new
adapter adds its builder here, or the contract suite fails for it.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, DDIMScheduler, PaintByExamplePipeline, UNet2DConditionModel
from diffusers.pipelines.deprecated.paint_by_example import PaintByExampleImageEncoder
from torch import nn
from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

from ldm_attention import CrossAttention

from benchmark.api.model import ModelSpec, initial_noise
from benchmark.api.sample import I2ISample
from benchmark.models.mini import I2IModelSpec, build_image_encoder, build_unet, build_vae

IMAGE = 32  # generated and reference size: PBE wants multiples of 8
CONDITIONS = [["masked_image", "image"], ["mask", "mask"]]


def tiny_sample(i: int) -> I2ISample:
    g = torch.Generator().manual_seed(i)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, IMAGE), torch.linspace(0, 1, IMAGE), indexing="ij")
    reference = torch.stack([xx, yy, (xx + yy) / 2]) * 0.6 + 0.4 * torch.rand(3, IMAGE, IMAGE, generator=g)
    target = torch.rand(3, IMAGE, IMAGE, generator=g)
    box = torch.zeros(1, IMAGE, IMAGE)
    box[:, 8 + 2 * i:24, 6:20 + i] = 1
    return I2ISample(f"s{i}", reference, {"masked_image": target * (1 - box) + 0.5 * box, "mask": box},
                     target=target, region_mask=box)


def tiny_vae(latent_channels: int = 4) -> AutoencoderKL:
    """f = 2: (B, 3, 32, 32) <-> (B, 4, 16, 16)."""
    return AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2,
                         up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(8, 16), layers_per_block=1,
                         latent_channels=latent_channels, norm_num_groups=4, sample_size=IMAGE)


def tiny_unet(in_channels: int, cross_dim: int) -> UNet2DConditionModel:
    return UNet2DConditionModel(
        sample_size=IMAGE // 2, in_channels=in_channels, out_channels=4, layers_per_block=1,
        block_out_channels=(16, 32),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=cross_dim, attention_head_dim=2, norm_num_groups=8)


def tiny_clip_config(**kw) -> CLIPVisionConfig:
    return CLIPVisionConfig(hidden_size=16, intermediate_size=32, num_attention_heads=2, image_size=IMAGE,
                            patch_size=8, **kw)


# --- diffusers adapters ------------------------------------------------------------------------
def build_paint_by_example(folder: Path) -> ModelSpec:
    torch.manual_seed(0)
    # 4 layers -> the PBE mapper gets (4 + 1) // 5 = 1 transformer block
    encoder = PaintByExampleImageEncoder(tiny_clip_config(num_hidden_layers=4, projection_dim=16))
    pipe = PaintByExamplePipeline(
        vae=tiny_vae(), image_encoder=encoder, unet=tiny_unet(9, 16),
        scheduler=DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                                set_alpha_to_one=False, steps_offset=1),
        safety_checker=None,
        feature_extractor=CLIPImageProcessor(size={"shortest_edge": IMAGE},
                                             crop_size={"height": IMAGE, "width": IMAGE}))
    pipe.save_pretrained(folder)
    return ModelSpec("tiny-pbe", "paint_by_example", str(folder))


def build_generic_unet(folder: Path) -> ModelSpec:
    torch.manual_seed(0)
    encoder = CLIPVisionModelWithProjection(tiny_clip_config(num_hidden_layers=2, projection_dim=24))
    encoder.save_pretrained(folder / "encoder")  # a non-default name, given by option
    tiny_vae().save_pretrained(folder / "vae")
    tiny_unet(4 + 4 + 1, 24).save_pretrained(folder / "unet")
    options = {"conditions": CONDITIONS, "image_encoder": "encoder", "use_projection": True,
               "reference_tokens": "patch", "token_grid": [4, 4], "drop_tokens": [0]}
    return ModelSpec("tiny-generic", "generic_unet", str(folder), options)


def build_reference_unet(folder: Path) -> ModelSpec:
    torch.manual_seed(0)
    spec = I2IModelSpec(conditions=tuple(tuple(c) for c in CONDITIONS), reference_tokens="patch")
    spec.save(folder)
    build_vae().save_pretrained(folder / "vae")
    build_unet(spec.condition_channels(), cross_attention_dim=32).save_pretrained(folder / "unet")
    build_image_encoder(image_size=16, patch_size=4, hidden_size=32).save_pretrained(folder / "image_encoder")
    return ModelSpec("tiny-reference", "reference_unet", str(folder))


def build_reference_dit(folder: Path) -> ModelSpec:
    """Tiny random mini-DiT folder (FLUX architecture, reference latent tokens in the joint sequence)."""
    from benchmark.models.mini import save_tiny_random_dit

    save_tiny_random_dit(folder, CONDITIONS, reference_size=IMAGE)
    return ModelSpec("tiny-dit", "reference_dit", str(folder))


# --- a CompVis-ldm-shaped model for ldm_unet ------------------------------------------------
class BasicTransformerBlock(nn.Module):
    def __init__(self, dim, context_dim):
        super().__init__()
        self.attn1, self.attn2 = CrossAttention(dim), CrossAttention(dim, context_dim)
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.ff = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))

    def forward(self, x, context):
        x = x + self.attn1(self.norm1(x))
        x = x + self.attn2(self.norm2(x), context=context)
        return x + self.ff(self.norm3(x))


class SpatialTransformer(nn.Module):
    def __init__(self, channels, context_dim):
        super().__init__()
        self.norm = nn.GroupNorm(4, channels)
        self.proj_in, self.proj_out = nn.Conv2d(channels, channels, 1), nn.Conv2d(channels, channels, 1)
        self.transformer_blocks = nn.ModuleList([BasicTransformerBlock(channels, context_dim)])

    def forward(self, x, context):
        b, c, h, w = x.shape
        y = self.proj_in(self.norm(x)).flatten(2).transpose(1, 2)
        for block in self.transformer_blocks:
            y = block(y, context)
        return x + self.proj_out(y.transpose(1, 2).reshape(b, c, h, w))


class TinyLdmUNet(nn.Module):
    """Two resolutions, a SpatialTransformer at each (ldm names: input_blocks / middle_block / output_blocks)."""

    def __init__(self, in_channels=9, channels=16, context_dim=12):
        super().__init__()
        self.channels = channels
        self.time_embed = nn.Linear(channels, channels)
        self.conv_in = nn.Conv2d(in_channels, channels, 3, padding=1)
        self.input_blocks = nn.ModuleList([SpatialTransformer(channels, context_dim)])
        self.down = nn.Conv2d(channels, channels, 3, stride=2, padding=1)
        self.middle_block = SpatialTransformer(channels, context_dim)
        self.output_blocks = nn.ModuleList([SpatialTransformer(channels, context_dim)])
        self.out = nn.Conv2d(channels, 4, 3, padding=1)

    def forward(self, x, timesteps, context):
        half = self.channels // 2
        freqs = torch.exp(-math.log(10000) * torch.arange(half, dtype=torch.float32) / half)
        t = float(timesteps) * freqs  # one timestep for the whole batch, as the samplers here call it
        emb = self.time_embed(torch.cat([t.cos(), t.sin()]))[None, :, None, None]
        h = self.input_blocks[0](self.conv_in(x) + emb, context)
        m = self.middle_block(self.down(h), context)
        h = h + F.interpolate(m, size=h.shape[-2:], mode="nearest")
        return self.out(self.output_blocks[0](h, context))


class TinyLatentDiffusion(nn.Module):
    """LatentDiffusion-shaped: diffusion_model, first stage (f=4), cond_stage_model (CLS + 4x4 patch tokens)."""

    def __init__(self, context_dim=12):
        super().__init__()
        self.diffusion_model = TinyLdmUNet(context_dim=context_dim)
        self.encoder, self.decoder = nn.Conv2d(3, 4, 4, stride=4), nn.ConvTranspose2d(4, 3, 4, stride=4)
        self.cond_stage_model = nn.Conv2d(3, context_dim, 8, stride=8)
        self.cls = nn.Parameter(torch.randn(1, 1, context_dim))

    def encode_reference(self, reference):
        tokens = self.cond_stage_model(reference * 2 - 1).flatten(2).transpose(1, 2)  # (B, 16, D)
        return torch.cat([self.cls.expand(len(reference), -1, -1), tokens], 1) * 3


class TinyLdmSampler:
    """What a user's factory returns: .model and .sample(batch, sampling, seeds, callback_on_step_end)."""

    def __init__(self, model: TinyLatentDiffusion, device):
        self.model, self.device = model.to(device), device
        self.scheduler = DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                                       clip_sample=False, set_alpha_to_one=False, steps_offset=1)

    def sample(self, batch, sampling, seeds, callback_on_step_end=None):
        m, dev = self.model, self.device
        cond_img = batch["conditions"]["masked_image"].to(dev) * 2 - 1
        z_cond = m.encoder(cond_img)
        mask = F.interpolate(batch["conditions"]["mask"].to(dev), size=z_cond.shape[-2:], mode="area")
        cond = torch.cat([z_cond, mask], 1)
        context = m.encode_reference(batch["reference"].to(dev))
        cfg = sampling.guidance_scale > 1
        if cfg:  # ldm's samplers: [unconditional; conditional]
            context, cond = torch.cat([torch.zeros_like(context), context]), torch.cat([cond, cond])
        x = initial_noise(seeds, tuple(z_cond.shape[1:])).to(dev)
        self.scheduler.set_timesteps(sampling.num_inference_steps)
        for i, t in enumerate(self.scheduler.timesteps):
            xx = torch.cat([x, x]) if cfg else x
            eps = m.diffusion_model(torch.cat([xx, cond], 1), t, context=context)
            if cfg:
                u, c = eps.chunk(2)
                eps = u + sampling.guidance_scale * (c - u)
            x = self.scheduler.step(eps, t, x).prev_sample
            if callback_on_step_end is not None:
                callback_on_step_end(None, i, t, {})
        return ((m.decoder(x).tanh() + 1) / 2).clamp(0, 1)


def build_tiny_ldm(path: str, device="cpu", context_dim: int = 12) -> TinyLdmSampler:
    """The factory the ldm_unet adapter imports by path ('adapter_tiny_models:build_tiny_ldm')."""
    model = TinyLatentDiffusion(context_dim)
    model.load_state_dict(torch.load(path, map_location="cpu"))
    return TinyLdmSampler(model.eval(), device)


def build_ldm_unet(folder: Path) -> ModelSpec:
    torch.manual_seed(0)
    path = folder / "tiny_ldm.pt"
    torch.save(TinyLatentDiffusion().state_dict(), path)
    options = {"factory": "adapter_tiny_models:build_tiny_ldm", "factory_kwargs": {"context_dim": 12},
               "token_grid": [4, 4], "drop_tokens": [0], "latent_factor": 4}
    return ModelSpec("tiny-ldm", "ldm_unet", str(path), options)


# --- a joint-attention DiT for flux_kontext -------------------------------------------------------
def build_flux_kontext(folder: Path, **options) -> ModelSpec:
    """Tiny random FLUX Kontext folder: f = 4 VAE (32x32 -> 4x4 packed tokens), 1 double + 1 single block,
    no text encoders but a prompt_embeds file (T = 5 text tokens)."""
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxTransformer2DModel
    from safetensors.torch import save_file

    torch.manual_seed(0)
    FluxTransformer2DModel(patch_size=1, in_channels=16, num_layers=1, num_single_layers=1, attention_head_dim=8,
                           num_attention_heads=2, joint_attention_dim=16, pooled_projection_dim=8,
                           guidance_embeds=True, axes_dims_rope=(2, 2, 4)).save_pretrained(folder / "transformer")
    AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 3,
                  up_block_types=("UpDecoderBlock2D",) * 3, block_out_channels=(8, 8, 16), layers_per_block=1,
                  latent_channels=4, norm_num_groups=4, sample_size=IMAGE, shift_factor=0.1,
                  scaling_factor=0.5).save_pretrained(folder / "vae")
    FlowMatchEulerDiscreteScheduler(shift=3.0, use_dynamic_shifting=True).save_pretrained(folder / "scheduler")
    save_file({"prompt_embeds": torch.randn(1, 5, 16), "pooled_prompt_embeds": torch.randn(1, 8)},
              folder / "prompt_embeds.safetensors")
    options = {"prompt_embeds": "prompt_embeds.safetensors", "reference_size": [IMAGE, IMAGE], **options}
    return ModelSpec("tiny-flux-kontext", "flux_kontext", str(folder), options)


BUILDERS = {
    "paint_by_example": build_paint_by_example,
    "generic_unet": build_generic_unet,
    "reference_unet": build_reference_unet,
    "ldm_unet": build_ldm_unet,
    "flux_kontext": build_flux_kontext,
    "reference_dit": build_reference_dit,
}


# --- one-pass: an ldm factory whose object also offers one_pass ----------------------------------
class TinyLdmOnePassSampler(TinyLdmSampler):
    """TinyLdmSampler plus the optional ``one_pass`` of the ldm_unet factory contract."""

    def one_pass(self, batch, timesteps, seeds, callback_on_step_end=None):
        from benchmark.api.model import one_pass_noise

        m, dev = self.model, self.device
        z_cond = m.encoder(batch["conditions"]["masked_image"].to(dev) * 2 - 1)
        mask = F.interpolate(batch["conditions"]["mask"].to(dev), size=z_cond.shape[-2:], mode="area")
        cond, context = torch.cat([z_cond, mask], 1), m.encode_reference(batch["reference"].to(dev))
        x0 = m.encoder(batch["target"].to(dev) * 2 - 1)
        noise = one_pass_noise(seeds, timesteps, tuple(x0.shape[1:])).to(dev)
        for k, t in enumerate(timesteps):
            x = self.scheduler.add_noise(x0, noise[k], torch.tensor([t]))
            m.diffusion_model(torch.cat([x, cond], 1), t, context=context)
            if callback_on_step_end is not None:
                callback_on_step_end(None, k, t, {})
        return len(timesteps)


def build_tiny_ldm_one_pass(path: str, device="cpu", context_dim: int = 12) -> TinyLdmOnePassSampler:
    """Factory 'adapter_tiny_models:build_tiny_ldm_one_pass': the tiny ldm model with one_pass."""
    return TinyLdmOnePassSampler(build_tiny_ldm(path, device, context_dim).model, device)


def build_ldm_unet_one_pass(folder: Path) -> ModelSpec:
    spec = build_ldm_unet(folder)
    return ModelSpec("tiny-ldm-one-pass", "ldm_unet", spec.path,
                     {**spec.options, "factory": "adapter_tiny_models:build_tiny_ldm_one_pass"})
