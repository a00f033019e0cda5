"""Random-init models of the published architectures each adapter is written for, saved in the adapter's folder
format: what ``python -m benchmark perf --scale real`` runs (``reduced=False``) and what the real-resolution tests
run (``reduced=True``).

Published sizes (``reduced=False``):

* ``reference_unet``: SD-1.5's UNet (320/640/1280/1280 channels, 2 layers per block, 8 heads, 16 cross-attention
  layers) with the VITON-HD conditions (masked image, mask, pose: 13 input channels), CLIP ViT-L/14 patch tokens
  (224 px, 257 tokens, width 1024) as context, SD's f = 8 VAE; 512x384 on VITON-HD.
* ``paint_by_example``: the Paint-by-Example pipeline: SD-1.5's UNet with 9 input channels, its CLIP ViT-L/14 image
  encoder and mapper (one 768-wide token); 512x512 on COCOEE.
* ``generic_unet``: SD-1.5's UNet with 9 input channels and a CLIP ViT-L/14 with projection (patch tokens
  projected to 768); 512x384 on VITON-HD.
* ``ldm_unet``: SD-1.5's UNet whose cross-attention modules are CompVis ``ldm`` shaped (``to_q`` ... ``heads``,
  ``forward(x, context=None, mask=None)``), built by the factory :func:`ldm_factory` as the original
  Paint-by-Example code is (one CLIP token); 512x512 on COCOEE.
* ``flux_kontext``: FLUX.1's transformer width (24 heads of 128 = 3072, joint width 4096, pooled 768, rotary axes
  16/56/56, guidance embedding) with 1 double- and 1 single-stream block of FLUX.1's 19 + 38 (stated wherever
  measured), FLUX's f = 8 VAE with 16 latent channels, a 512-token prompt embedding; 1024x1024 output, 512x512
  reference (T + G + R = 512 + 4096 + 1024 tokens) on COCOEE.
* ``reference_dit``: the same FLUX width and blocks, patch-1 tokens of SD's f = 8 VAE, the generated and the
  reference latents in one sequence; 512x384 on VITON-HD (G = R = 3072).

``reduced=True`` keeps every captured attention's token counts, heads and head width at the published resolution
where that fits a test of about 20 s on a 2-core CPU, and reduces depth and channels elsewhere: the UNets keep their
first level (3072 tokens at 512x384, 4096 at 512x512; 8 heads of 40) and SD-1.5's second-level shape in the middle
block (8 heads of 80), with one layer per block; the CLIP towers keep 224 px and 257 tokens with width 64 and one
layer; the VAEs keep f = 8 with narrow channels; the DiTs keep the token counts and head width 128 with 2 heads
instead of 24. Weights are random: outputs mean nothing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from benchmark.api.model import initial_noise

VITON_CONDITIONS = (("masked_image", "image"), ("mask", "mask"), ("pose", "image"))
INPAINT_CONDITIONS = (("masked_image", "image"), ("mask", "mask"))
FLUX_BLOCKS = (1, 1)  # double-, single-stream blocks built (FLUX.1 has 19 and 38)
FLUX_TEXT_TOKENS = 512


@dataclass(frozen=True)
class Published:
    """One adapter's published setting: the dataset format and size its sample is drawn at."""

    adapter: str
    dataset: str  # viton_hd | cocoee
    size: tuple[int, int]  # (H, W) of the generated image
    architecture: str  # one line for tables


PUBLISHED = {
    "reference_unet": Published("reference_unet", "viton_hd", (512, 384),
                                "SD-1.5 UNet (13 in-channels), CLIP ViT-L/14 patch tokens, SD VAE"),
    "paint_by_example": Published("paint_by_example", "cocoee", (512, 512),
                                  "Paint-by-Example: SD-1.5 UNet (9 in-channels), CLIP ViT-L/14 + mapper, SD VAE"),
    "generic_unet": Published("generic_unet", "viton_hd", (512, 384),
                              "SD-1.5 UNet (9 in-channels), CLIP ViT-L/14 projected patch tokens, SD VAE"),
    "ldm_unet": Published("ldm_unet", "cocoee", (512, 512),
                          "SD-1.5 UNet with ldm-shaped cross-attention, one CLIP token, SD VAE"),
    "flux_kontext": Published("flux_kontext", "cocoee", (1024, 1024),
                              f"FLUX.1 width (24x128), {FLUX_BLOCKS[0]}+{FLUX_BLOCKS[1]} of 19+38 blocks, "
                              "FLUX VAE, reference 512x512"),
    "reference_dit": Published("reference_dit", "viton_hd", (512, 384),
                               f"FLUX.1 width (24x128), {FLUX_BLOCKS[0]}+{FLUX_BLOCKS[1]} blocks, patch-1 SD-VAE "
                               "tokens, reference 512x384"),
}


# --- parts ----------------------------------------------------------------------------------------------------
def sd15_unet(in_channels: int, cross_attention_dim: int, reduced: bool):
    from diffusers import UNet2DConditionModel

    if reduced:  # SD-1.5's first level and its second-level attention shape (middle block), one layer per block
        return UNet2DConditionModel(
            sample_size=64, in_channels=in_channels, out_channels=4, layers_per_block=1,
            block_out_channels=(320, 640), down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=cross_attention_dim,
            attention_head_dim=8)
    return UNet2DConditionModel(  # SD-1.5 (runwayml/stable-diffusion-v1-5 unet/config.json) but in/context width
        sample_size=64, in_channels=in_channels, out_channels=4, layers_per_block=2,
        block_out_channels=(320, 640, 1280, 1280),
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
        cross_attention_dim=cross_attention_dim, attention_head_dim=8)


def sd_vae(reduced: bool, latent_channels: int = 4, **config):
    """SD's f = 8 VAE (4 levels); ``reduced``: the same levels with 8-16 channels and one layer each."""
    from diffusers import AutoencoderKL

    widths, layers, groups = ((8, 8, 16, 16), 1, 8) if reduced else ((128, 256, 512, 512), 2, 32)
    config = {"scaling_factor": 0.18215, **config}
    return AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 4,
                         up_block_types=("UpDecoderBlock2D",) * 4, block_out_channels=widths,
                         layers_per_block=layers, latent_channels=latent_channels, norm_num_groups=groups,
                         sample_size=512, **config)


def clip_vit_l14_config(reduced: bool, **kw):
    """CLIP ViT-L/14 at 224 px (257 tokens); ``reduced``: width 64, one layer (``kw`` may override)."""
    from transformers import CLIPVisionConfig

    size = (dict(hidden_size=64, intermediate_size=128, num_hidden_layers=1, num_attention_heads=2) if reduced else
            dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16))
    return CLIPVisionConfig(image_size=224, patch_size=14, projection_dim=768, **{**size, **kw})


def flux_transformer(in_channels: int, out_channels: int, reduced: bool, joint_attention_dim: int = 4096,
                     pooled: int = 768, guidance_embeds: bool = True):
    from diffusers import FluxTransformer2DModel

    return FluxTransformer2DModel(
        patch_size=1, in_channels=in_channels, out_channels=out_channels,
        num_layers=FLUX_BLOCKS[0], num_single_layers=FLUX_BLOCKS[1], attention_head_dim=128,
        num_attention_heads=2 if reduced else 24, joint_attention_dim=joint_attention_dim,
        pooled_projection_dim=pooled, guidance_embeds=guidance_embeds, axes_dims_rope=(16, 56, 56))


def ddim():
    from benchmark.adapters.pipeline_adapter import ddim_scheduler  # heavy: diffusers, transformers

    return ddim_scheduler()


# --- one folder per adapter ------------------------------------------------------------------------------------
def build(adapter: str, folder: Path, reduced: bool, seed: int = 0) -> tuple[str, dict]:
    """Build and save ``adapter``'s model under ``folder``; returns (model path, options) for its ModelSpec."""
    folder = Path(folder)
    torch.manual_seed(seed)
    return BUILDERS[adapter](folder, reduced)


def _reference_unet(folder: Path, reduced: bool):
    from transformers import CLIPVisionModel

    from benchmark.models.mini import I2IModelSpec  # heavy: diffusers, transformers

    spec = I2IModelSpec(conditions=VITON_CONDITIONS, reference_tokens="patch", guidance_scale=3.0,
                        num_inference_steps=2, extra={"label": "random-init published architecture"})
    encoder = CLIPVisionModel(clip_vit_l14_config(reduced))
    sd15_unet(4 + spec.condition_channels(), encoder.config.hidden_size, reduced).save_pretrained(folder / "unet")
    encoder.save_pretrained(folder / "image_encoder")
    sd_vae(reduced).save_pretrained(folder / "vae")
    spec.save(folder)
    return str(folder), {}


def _paint_by_example(folder: Path, reduced: bool):
    from diffusers import PaintByExamplePipeline
    from diffusers.pipelines.deprecated.paint_by_example import PaintByExampleImageEncoder
    from transformers import CLIPImageProcessor

    # reduced: 4 layers, so the mapper gets (4 + 1) // 5 = 1 block (PBE's: 24 layers -> 5 blocks)
    config = clip_vit_l14_config(reduced, **({"num_hidden_layers": 4} if reduced else {}))
    PaintByExamplePipeline(
        vae=sd_vae(reduced), image_encoder=PaintByExampleImageEncoder(config), unet=sd15_unet(9, 768, reduced),
        scheduler=ddim(), safety_checker=None, requires_safety_checker=False,
        feature_extractor=CLIPImageProcessor(size={"shortest_edge": 224}, crop_size={"height": 224, "width": 224}),
    ).save_pretrained(folder)
    return str(folder), {}


def _generic_unet(folder: Path, reduced: bool):
    from transformers import CLIPVisionModelWithProjection

    CLIPVisionModelWithProjection(clip_vit_l14_config(reduced)).save_pretrained(folder / "image_encoder")
    sd15_unet(4 + 4 + 1, 768, reduced).save_pretrained(folder / "unet")
    sd_vae(reduced).save_pretrained(folder / "vae")
    return str(folder), {"conditions": [list(c) for c in INPAINT_CONDITIONS], "use_projection": True,
                         "reference_tokens": "patch", "num_inference_steps": 2, "guidance_scale": 3.0}


def _ldm_unet(folder: Path, reduced: bool):
    folder.mkdir(parents=True, exist_ok=True)
    model = LdmShapedModel(reduced)
    torch.save(model.state_dict(), folder / "model.pt")
    (folder / "config.json").write_text(json.dumps({"reduced": reduced}))
    return str(folder / "model.pt"), {"factory": "benchmark.models.published:ldm_factory", "token_grid": [1, 1],
                                      "num_inference_steps": 2, "guidance_scale": 3.0}


def _flux_kontext(folder: Path, reduced: bool):
    from diffusers import FlowMatchEulerDiscreteScheduler
    from safetensors.torch import save_file

    # Kontext packs 2x2 latent cells into one token: in_channels = 4 * 16
    flux_transformer(64, 64, reduced).save_pretrained(folder / "transformer")
    sd_vae(reduced, latent_channels=16, scaling_factor=0.3611, shift_factor=0.1159,
           use_quant_conv=False, use_post_quant_conv=False).save_pretrained(folder / "vae")
    FlowMatchEulerDiscreteScheduler(shift=3.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15,
                                    base_image_seq_len=256, max_image_seq_len=4096).save_pretrained(folder / "scheduler")
    save_file({"prompt_embeds": torch.randn(1, FLUX_TEXT_TOKENS, 4096), "pooled_prompt_embeds": torch.randn(1, 768)},
              folder / "prompt_embeds.safetensors")
    return str(folder), {"prompt_embeds": "prompt_embeds.safetensors", "reference_size": [512, 512],
                         "num_inference_steps": 2}


def _reference_dit(folder: Path, reduced: bool):
    from benchmark.models.mini import I2IModelSpec  # heavy: diffusers, transformers

    spec = I2IModelSpec(conditions=VITON_CONDITIONS, reference_tokens="latent", guidance_scale=3.0,
                        num_inference_steps=2, extra={"label": "random-init published architecture",
                                                      "architecture": "dit", "reference_size": [512, 384]})
    flux_transformer(4 + spec.condition_channels(), 4, reduced, joint_attention_dim=4096,
                     guidance_embeds=False).save_pretrained(folder / "transformer")
    sd_vae(reduced).save_pretrained(folder / "vae")
    spec.save(folder)
    return str(folder), {}


BUILDERS = {"reference_unet": _reference_unet, "paint_by_example": _paint_by_example,
            "generic_unet": _generic_unet, "ldm_unet": _ldm_unet, "flux_kontext": _flux_kontext,
            "reference_dit": _reference_dit}


# --- an ldm-shaped model and its factory ------------------------------------------------------------------------
class LdmCrossAttention(nn.Module):
    """CompVis ldm's ``CrossAttention``: ``to_q``, ``to_k``, ``to_v``, ``to_out``, ``heads``, ``scale``;
    ``forward(x, context=None, mask=None)``."""

    def __init__(self, query_dim: int, context_dim: int, heads: int, dim_head: int):
        super().__init__()
        inner = heads * dim_head
        self.heads, self.scale = heads, dim_head**-0.5
        self.to_q = nn.Linear(query_dim, inner, bias=False)
        self.to_k = nn.Linear(context_dim, inner, bias=False)
        self.to_v = nn.Linear(context_dim, inner, bias=False)
        self.to_out = nn.Sequential(nn.Linear(inner, query_dim), nn.Dropout(0.0))

    def forward(self, x, context=None, mask=None):
        context = x if context is None else context
        q, k, v = (t.unflatten(-1, (self.heads, -1)).transpose(1, 2)
                   for t in (self.to_q(x), self.to_k(context), self.to_v(context)))
        out = torch.nn.functional.scaled_dot_product_attention(q, k, v, scale=self.scale)
        return self.to_out(out.transpose(1, 2).flatten(2))


def _ldm_call(module, args, kwargs):
    """diffusers' blocks call ``attn2(h, encoder_hidden_states=..., attention_mask=...)``; ldm's is
    ``attn2(h, context=...)``."""
    context = kwargs.pop("encoder_hidden_states", None)
    kwargs.pop("attention_mask", None)
    return args, {"context": context, **kwargs}


class LdmShapedModel(nn.Module):
    """``diffusion_model`` (SD-1.5's UNet, its ``attn2`` modules ldm-shaped), ``first_stage_model`` (SD's VAE)
    and ``cond_stage_model`` (CLIP ViT-L/14 + a projection to one 768-wide token, as Paint-by-Example's)."""

    def __init__(self, reduced: bool):
        super().__init__()
        from transformers import CLIPVisionModel

        self.diffusion_model = unet = sd15_unet(9, 768, reduced)
        for name, module in list(unet.named_modules()):
            if name.endswith("attn2"):
                parent, _, child = name.rpartition(".")
                old = module
                new = LdmCrossAttention(old.query_dim, old.cross_attention_dim, old.heads,
                                        old.inner_dim // old.heads)
                new.register_forward_pre_hook(_ldm_call, with_kwargs=True)
                setattr(unet.get_submodule(parent), child, new)
        self.first_stage_model = sd_vae(reduced)
        self.cond_stage_model = CLIPVisionModel(clip_vit_l14_config(reduced))
        self.proj = nn.Linear(self.cond_stage_model.config.hidden_size, 768)


class LdmShapedSampler:
    """What an ldm factory returns (see :mod:`benchmark.adapters.ldm_unet`): ``.model`` and ``.sample``, DDIM with
    the CFG batch [unconditional; conditional], each sample from its own seed."""

    def __init__(self, model: LdmShapedModel, device):
        self.model, self.device = model, torch.device(device)
        self.scheduler = ddim()

    def _context(self, reference: torch.Tensor) -> torch.Tensor:
        from benchmark.adapters.pipeline_adapter import clip_pixels  # heavy: diffusers, transformers

        m = self.model
        pooled = m.cond_stage_model(pixel_values=clip_pixels(reference.to(self.device), 224).to(self.dtype)).pooler_output
        return m.proj(pooled)[:, None]

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    @torch.no_grad()
    def sample(self, batch, sampling, seeds, callback_on_step_end=None):
        import torch.nn.functional as F

        m, dev, dt = self.model, self.device, self.dtype
        vae = m.first_stage_model
        masked = batch["conditions"]["masked_image"].to(dev, dt) * 2 - 1
        z_cond = torch.cat([vae.encode(masked[i : i + 1]).latent_dist.mode() for i in range(len(masked))])
        z_cond = z_cond * vae.config.scaling_factor
        mask = F.interpolate(batch["conditions"]["mask"].to(dev, dt), size=z_cond.shape[-2:], mode="area")
        cond, context = torch.cat([z_cond, mask], 1), self._context(batch["reference"])
        cfg = sampling.guidance_scale > 1
        if cfg:
            context, cond = torch.cat([torch.zeros_like(context), context]), torch.cat([cond, cond])
        x = initial_noise(seeds, (4, *z_cond.shape[-2:])).to(dev, dt)
        self.scheduler.set_timesteps(sampling.num_inference_steps)
        for i, t in enumerate(self.scheduler.timesteps):
            xx = torch.cat([x, x]) if cfg else x
            eps = m.diffusion_model(torch.cat([xx, cond], 1), t, encoder_hidden_states=context).sample
            if cfg:
                u, c = eps.chunk(2)
                eps = u + sampling.guidance_scale * (c - u)
            x = self.scheduler.step(eps, t, x).prev_sample
            if callback_on_step_end is not None:
                callback_on_step_end(None, i, t, {})
        images = vae.decode((x / vae.config.scaling_factor).float().to(vae.dtype)).sample
        return ((images.float() + 1) / 2).clamp(0, 1)


def ldm_factory(path: str, device="cpu", dtype: torch.dtype | None = None) -> LdmShapedSampler:
    """The ldm_unet factory (``benchmark.models.published:ldm_factory``): the model saved by :func:`build`."""
    reduced = json.loads((Path(path).parent / "config.json").read_text())["reduced"]
    model = LdmShapedModel(reduced)
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    model = model.eval().to(device)
    return LdmShapedSampler(model if dtype is None else model.to(dtype), device)
