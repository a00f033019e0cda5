"""The paper's custom model: SD-style UNet with extra condition channels, CLIP patch tokens as context.

Folder layout (what :mod:`benchmark.training.train` exports, and what a
full-size model of the same design is saved as)::

    <path>/unet/            UNet2DConditionModel
    <path>/image_encoder/   CLIPVisionModel
    <path>/i2i_config.json  conditions, reference tokens (patch | cls), sampling defaults
    <vae>/                  AutoencoderKL (option ``vae``; default <path>/vae)

``path`` and the option ``vae`` are found by
:func:`~benchmark.adapters.pipeline_adapter.model_and_vae` through
:func:`~benchmark.api.sources.resolve_model_source` (a local folder, relative
paths from the repository root, or a hub id in the local Hugging Face cache,
``owner/name/vae`` for a subfolder).

Options: ``vae`` (folder), ``random_init`` (a seed: replace UNet and image
encoder by freshly initialised copies, the attribution-method baseline),
``dtype`` (float32 | float16 | bfloat16 | auto, default float32: UNet, image
encoder and VAE; :func:`~benchmark.adapters.pipeline_adapter.model_dtype`).
"""

from __future__ import annotations

from diffusers import UNet2DConditionModel
from transformers import CLIPVisionModel

from benchmark.adapters.pipeline_adapter import ReferencePipelineAdapter, clip_token_layout, ddim_scheduler
from benchmark.api.model import ModelSpec
from benchmark.capture.tokens import TokenLayout
from benchmark.pipelines.reference_i2i import ReferenceI2IPipeline
from benchmark.registry import ADAPTERS


@ADAPTERS.register("reference_unet")
class ReferenceUNetAdapter(ReferencePipelineAdapter):
    def __init__(self, spec: ModelSpec, device="cpu"):
        super().__init__(spec, device)
        self.load(ReferenceI2IPipeline, "a folder with unet/, image_encoder/, i2i_config.json", ddim_scheduler(),
                  {"unet": (UNet2DConditionModel, "UNet"), "image_encoder": (CLIPVisionModel, "image encoder")})

    @property
    def token_layout(self) -> TokenLayout:
        return clip_token_layout(self.pipe.image_encoder.config, pooled=self.i2i.reference_tokens == "cls")
