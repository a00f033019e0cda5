"""Mini I2I latent diffusion components, built from standard library classes.

Everything here is a stock ``AutoencoderKL``, ``UNet2DConditionModel`` or
``CLIPVisionModel``, so the embedded default goes through exactly the code
path a full-size model takes; only the sizes are small.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
import json
from pathlib import Path

import torch
from diffusers import AutoencoderKL, FluxTransformer2DModel, UNet2DConditionModel
from transformers import CLIPVisionConfig, CLIPVisionModel

I2I_CONFIG_NAME = "i2i_config.json"


def condition_width(kind: str, latent_channels: int = 4) -> int:
    """UNet input channels of one condition: an ``image`` is VAE-encoded, a ``mask`` is one channel."""
    return latent_channels if kind == "image" else 1


@dataclass(frozen=True)
class I2IModelSpec:
    """What a reference-conditioned UNet expects, saved beside its weights.

    ``conditions`` lists the extra UNet inputs in channel order, each as
    ``(name, kind)``: kind ``image`` is VAE-encoded (4 latent channels), kind
    ``mask`` is resized to the latent grid (1 channel). ``reference_tokens`` is
    ``patch`` (CLS + patch tokens, the paper's custom model) or ``cls`` (one
    pooled token, like Paint-by-Example).

    ``residual_of`` names an image condition whose latent the model refines: the
    UNet generates ``(z - z_cond) * residual_scale``, the detail over that latent
    (as SR3/ResShift-style super-resolution models generate the detail over the
    upsampled input), and sampling adds ``z_cond`` back before decoding.
    """

    conditions: tuple[tuple[str, str], ...]
    reference_tokens: str = "patch"
    guidance_scale: float = 3.0
    num_inference_steps: int = 20
    extra: dict = field(default_factory=dict)
    residual_of: str | None = None
    residual_scale: float = 1.0

    def __post_init__(self):
        if self.residual_of is not None and (self.residual_of, "image") not in self.conditions:
            raise ValueError(f"residual_of={self.residual_of!r} must name an image condition of {self.conditions}")

    def condition_slice(self, name: str, latent_channels: int = 4) -> slice:
        """Channels of condition ``name`` in the stacked condition input."""
        start = 0
        for n, kind in self.conditions:
            width = condition_width(kind, latent_channels)
            if n == name:
                return slice(start, start + width)
            start += width
        raise KeyError(f"no condition {name!r} in {self.conditions}")

    def condition_channels(self, latent_channels: int = 4) -> int:
        return sum(condition_width(kind, latent_channels) for _, kind in self.conditions)

    def save(self, folder: str | Path) -> None:
        Path(folder).mkdir(parents=True, exist_ok=True)
        data = asdict(self)
        data["conditions"] = [list(c) for c in self.conditions]
        (Path(folder) / I2I_CONFIG_NAME).write_text(json.dumps(data, indent=2) + "\n")

    @classmethod
    def load(cls, folder: str | Path) -> "I2IModelSpec":
        path = Path(folder) / I2I_CONFIG_NAME
        if not path.is_file():
            raise FileNotFoundError(f"no {I2I_CONFIG_NAME} in model folder {folder}: is this an I2I model folder?")
        data = json.loads(path.read_text())
        data["conditions"] = tuple(tuple(c) for c in data["conditions"])
        return cls(**data)


def build_vae(latent_channels: int = 4, downsample: int = 4) -> AutoencoderKL:
    """An AutoencoderKL: (B, 3, H, W) in [-1, 1] <-> (B, latent_channels, H/f, W/f), f = ``downsample`` (2 or 4)."""
    levels = {2: 2, 4: 3}.get(downsample)
    if levels is None:
        raise ValueError(f"downsample must be 2 or 4, got {downsample}")
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * levels,
        up_block_types=("UpDecoderBlock2D",) * levels,
        block_out_channels=(32, 48, 64)[:levels],
        layers_per_block=1,
        latent_channels=latent_channels,
        norm_num_groups=16,
        sample_size=64,
    )


def build_image_encoder(image_size: int = 32, patch_size: int = 4, hidden_size: int = 64) -> CLIPVisionModel:
    """A small CLIP vision tower; its (1 + (image_size/patch_size)^2) tokens are the UNet context."""
    config = CLIPVisionConfig(
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 2,
        num_hidden_layers=2,
        num_attention_heads=4,
        image_size=image_size,
        patch_size=patch_size,
        num_channels=3,
    )
    return CLIPVisionModel(config)


def build_unet(condition_channels: int, cross_attention_dim: int = 64, latent_channels: int = 4,
               attention_at_full_resolution: bool = True) -> UNet2DConditionModel:
    """A two-level cross-attention UNet taking ``latent_channels + condition_channels`` inputs.

    ``attention_at_full_resolution=False`` drops the attention blocks of the outer (full latent resolution)
    level, as SDXL's UNet does at its outermost level: 4 cross-attention layers
    instead of 7, all on the half-resolution grid.
    """
    outer = "CrossAttn" if attention_at_full_resolution else ""
    return UNet2DConditionModel(
        sample_size=16,
        in_channels=latent_channels + condition_channels,
        out_channels=latent_channels,
        down_block_types=(f"{outer}DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", f"{outer}UpBlock2D"),
        block_out_channels=(32, 64),
        layers_per_block=1,
        cross_attention_dim=cross_attention_dim,
        attention_head_dim=4,  # diffusers reads this as the number of heads
        norm_num_groups=16,
        mid_block_type="UNetMidBlock2DCrossAttn",
    )


def build_dit(condition_channels: int, latent_channels: int = 4) -> FluxTransformer2DModel:
    """A FLUX-architecture transformer (2 dual-stream + 2 single-stream blocks, width 64, 4 heads).

    Tokens are single latent cells (patch 1): ``latent_channels + condition_channels``
    inputs, ``latent_channels`` outputs (see :mod:`benchmark.pipelines.reference_dit`).
    """
    return FluxTransformer2DModel(
        patch_size=1,
        in_channels=latent_channels + condition_channels,
        out_channels=latent_channels,
        num_layers=2,
        num_single_layers=2,
        attention_head_dim=16,
        num_attention_heads=4,
        joint_attention_dim=32,
        pooled_projection_dim=32,
        guidance_embeds=False,
        axes_dims_rope=(4, 6, 6),
    )


def count_parameters(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def save_tiny_random_model(folder, conditions, reference_tokens: str = "patch", seed: int = 0,
                           num_inference_steps: int = 4) -> None:
    """A randomly initialised model in the reference_unet folder format (vae included): for tests and smoke runs.

    Outputs of such a model mean nothing; everything that shows them says so.
    """
    from pathlib import Path

    folder = Path(folder)
    torch.manual_seed(seed)
    spec = I2IModelSpec(conditions=tuple(tuple(c) for c in conditions), reference_tokens=reference_tokens,
                        guidance_scale=3.0, num_inference_steps=num_inference_steps,
                        extra={"label": "tiny random model"})
    build_vae().save_pretrained(folder / "vae")
    encoder = build_image_encoder(image_size=16, patch_size=4, hidden_size=32)
    encoder.save_pretrained(folder / "image_encoder")
    build_unet(spec.condition_channels(), cross_attention_dim=32).save_pretrained(folder / "unet")
    spec.save(folder)


def save_tiny_random_dit(folder, conditions, seed: int = 0, num_inference_steps: int = 4,
                         reference_size: int | None = None) -> None:
    """A randomly initialised mini DiT in the reference_dit folder format (vae included): for tests and smoke runs.

    ``reference_size``: side of the square reference input; None keeps the pipeline's default.
    """
    folder = Path(folder)
    torch.manual_seed(seed)
    extra = {"label": "tiny random model", "architecture": "dit"}
    if reference_size is not None:
        extra["reference_size"] = [reference_size, reference_size]
    spec = I2IModelSpec(conditions=tuple(tuple(c) for c in conditions), reference_tokens="latent",
                        guidance_scale=3.0, num_inference_steps=num_inference_steps, extra=extra)
    build_vae().save_pretrained(folder / "vae")
    build_dit(spec.condition_channels()).save_pretrained(folder / "transformer")
    spec.save(folder)
