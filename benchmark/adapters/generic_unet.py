"""Any diffusers ``UNet2DConditionModel`` whose cross-attention context is image tokens.

Everything is described by options, so a new model of this family needs a
config entry, not code::

    adapter: generic_unet
    path: /models/my_i2i            # root; component folders below are relative to it
    options:
      unet: unet                    # UNet2DConditionModel folder
      vae: vae                      # AutoencoderKL folder
      image_encoder: image_encoder  # transformers CLIPVisionModel[WithProjection] folder
      conditions: [[masked_image, image], [mask, mask]]   # extra UNet inputs, channel order
      reference_tokens: patch       # patch: CLS + patch tokens | pooled: one token
      use_projection: false         # pass tokens through the encoder's visual_projection
      reference_normalization: clip # clip (CLIP mean/std) | signed ([-1, 1])
      token_grid: [16, 16]          # optional; default from the encoder (image_size / patch_size)
      drop_tokens: [0]              # optional; default [0] (CLS) for patch, [] for pooled
      num_inference_steps: 50
      guidance_scale: 5.0
      dtype: float32                # float32 | float16 | bfloat16 | auto (UNet, image encoder and VAE)

Where the files are: ``path`` through
:func:`~benchmark.api.sources.resolve_model_source` (a local folder, relative
paths from the repository root, or a hub id in the local Hugging Face cache);
each component option is a folder under that root, or else a source of its
own (a local folder or a cached hub id, ``owner/name/vae`` for a subfolder).

Conditions: kind ``image`` is VAE-encoded (posterior mode, scaled), kind
``mask`` is area-resized to the latent grid; they are concatenated after the
noisy latent in the listed order, so UNet ``in_channels`` must equal the
latent channels plus theirs (checked on load).

Attention carrying the reference: every cross-attention layer (``attn2``)
of the UNet. Tokens map to ``token_grid`` in row-major order after the
``drop_tokens`` are removed (after the softmax).

Sampling is :class:`benchmark.pipelines.reference_i2i.ReferenceI2IPipeline`'s
loop (DDIM, CFG batch [zeros context; reference context], the conditional half
second, ``callback_on_step_end`` after each step); only the reference encoding
differs, to honour ``reference_tokens``, ``use_projection`` and the
normalisation a full-size CLIP encoder expects.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from transformers import CLIPVisionModel, CLIPVisionModelWithProjection

from benchmark.adapters.pipeline_adapter import (ReferencePipelineAdapter, clip_pixels, clip_token_layout,
                                                 ddim_scheduler, model_dtype, resize_antialiased)
from benchmark.api.model import ModelSpec
from benchmark.api.sources import resolve_model_source
from benchmark.capture.tokens import TokenLayout
from benchmark.config import REPO_ROOT, ConfigError, build_section
from benchmark.models.mini import I2IModelSpec
from benchmark.pipelines.reference_i2i import ReferenceI2IPipeline
from benchmark.registry import ADAPTERS


@dataclass(frozen=True)
class GenericUNetOptions:
    conditions: tuple[tuple[str, str], ...]
    unet: str = "unet"
    vae: str = "vae"
    image_encoder: str = "image_encoder"
    reference_tokens: str = "patch"  # patch | pooled
    use_projection: bool = False
    reference_normalization: str = "clip"  # clip | signed
    token_grid: tuple[int, ...] | None = None
    drop_tokens: tuple[int, ...] | None = None
    num_inference_steps: int = 50
    guidance_scale: float = 5.0
    dtype: str = "float32"  # see model_dtype

    def __post_init__(self):
        for name, kind in self.conditions:
            if kind not in ("image", "mask"):
                raise ConfigError(f"generic_unet condition {name!r}: kind must be 'image' or 'mask', got {kind!r}")
        if self.reference_tokens not in ("patch", "pooled"):
            raise ConfigError("generic_unet reference_tokens must be 'patch' or 'pooled', "
                              f"got {self.reference_tokens!r}")
        if self.reference_normalization not in ("clip", "signed"):
            raise ConfigError("generic_unet reference_normalization must be 'clip' or 'signed', "
                              f"got {self.reference_normalization!r}")
        if self.token_grid is not None and (len(self.token_grid) != 2 or min(self.token_grid) < 1):
            raise ConfigError(f"generic_unet token_grid must be [h, w] with h, w >= 1, got {list(self.token_grid)}")


def component_dir(root: Path, value: str, what: str, cls) -> Path:
    """``value`` under the model root, else a source of its own (:func:`resolve_model_source`, relative
    paths from the repository root); an error names every place looked at."""
    if Path(value).expanduser().is_absolute():
        return resolve_model_source(value, REPO_ROOT, what=f"{what} ({cls.__name__} folder from save_pretrained)")
    if (root / value).is_dir():
        return root / value
    return resolve_model_source(value, REPO_ROOT, what=f"{what} ({cls.__name__} folder from save_pretrained, "
                                                       f"looked for first at {root / value})")


class ImageTokenI2IPipeline(ReferenceI2IPipeline):
    """ReferenceI2IPipeline whose reference tokens follow :class:`GenericUNetOptions`."""

    options: GenericUNetOptions

    def encode_reference(self, reference: torch.Tensor) -> torch.Tensor:
        """(B, 3, Hr, Wr) in [0, 1] -> context (B, tokens, D)."""
        enc, opts = self.image_encoder, self.options
        size = enc.config.image_size
        if opts.reference_normalization == "clip":
            x = clip_pixels(reference, size)
        else:
            x = resize_antialiased(reference, (size, size), "bicubic").clamp(0, 1) * 2 - 1
        out = enc(pixel_values=x)
        if opts.reference_tokens == "pooled":
            return (out.image_embeds if opts.use_projection else out.pooler_output)[:, None]
        tokens = out.last_hidden_state
        if opts.use_projection:  # as image_embeds is made from the pooled token
            tokens = enc.visual_projection(enc.vision_model.post_layernorm(tokens))
        return tokens


@ADAPTERS.register("generic_unet")
class GenericUNetAdapter(ReferencePipelineAdapter):
    def __init__(self, spec: ModelSpec, device="cpu"):
        super().__init__(spec, device)
        where = f"model {spec.name!r} options"
        if "conditions" not in spec.options:
            raise ConfigError(f"{where}: 'conditions' is required (list of [name, image|mask], in UNet channel order)")
        self.options = opts = build_section(GenericUNetOptions, spec.options, where)
        root = resolve_model_source(spec.path, REPO_ROOT, what="generic_unet model root")
        dtype = model_dtype(opts.dtype, self.device, where)
        encoder_cls = CLIPVisionModelWithProjection if opts.use_projection else CLIPVisionModel

        def load(cls, name: str, what: str):
            return cls.from_pretrained(component_dir(root, name, what, cls), torch_dtype=dtype)

        vae = load(AutoencoderKL, opts.vae, "VAE")
        unet = load(UNet2DConditionModel, opts.unet, "UNet")
        encoder = load(encoder_cls, opts.image_encoder, "image encoder")
        i2i = I2IModelSpec(conditions=opts.conditions,
                           reference_tokens="cls" if opts.reference_tokens == "pooled" else "patch",
                           guidance_scale=opts.guidance_scale, num_inference_steps=opts.num_inference_steps)
        expected = unet.config.out_channels + i2i.condition_channels(vae.config.latent_channels)
        if unet.config.in_channels != expected:
            raise ConfigError(f"{where}: UNet takes {unet.config.in_channels} input channels, but the latent "
                              f"({unet.config.out_channels}) and conditions {list(opts.conditions)} give {expected}")
        self.pipe = ImageTokenI2IPipeline(vae=vae, unet=unet, image_encoder=encoder, scheduler=ddim_scheduler(),
                                          spec=i2i)
        self.pipe.options = opts
        self.pipe.to(self.device)
        self.pipe.set_progress_bar_config(disable=True)
        for m in (vae, unet, encoder):
            m.eval().requires_grad_(False)
        default = clip_token_layout(encoder.config, pooled=opts.reference_tokens == "pooled")
        self._layout = TokenLayout(grid=default.grid if opts.token_grid is None else tuple(opts.token_grid),
                                   drop=default.drop if opts.drop_tokens is None else tuple(opts.drop_tokens))
        try:
            self._layout.kept_index(default.n_kept + len(default.drop))  # the encoder's token count
        except ValueError as err:
            raise ConfigError(f"{where}: token_grid/drop_tokens do not fit the image encoder: {err}") from err

    @property
    def token_layout(self) -> TokenLayout:
        return self._layout
