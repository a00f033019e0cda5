"""A model adapter: a reference_unet-format model whose capture reads only the decoder (up-block) layers.

Folder layout: as ``reference_unet`` (``unet/``, ``image_encoder/``, ``i2i_config.json``, ``vae/``); the
capture is the contract's default (diffusers processors) on the layers :meth:`capture_layers` names.
"""

from diffusers import UNet2DConditionModel
from transformers import CLIPVisionModel

from benchmark.adapters.pipeline_adapter import ReferencePipelineAdapter, clip_token_layout, ddim_scheduler
from benchmark.capture import cross_attention_layers
from benchmark.capture.tokens import TokenLayout
from benchmark.pipelines.reference_i2i import ReferenceI2IPipeline


class UpBlocksUNetAdapter(ReferencePipelineAdapter):
    def __init__(self, spec, device="cpu"):
        super().__init__(spec, device)
        self.load(ReferenceI2IPipeline, "a folder with unet/, image_encoder/, i2i_config.json", ddim_scheduler(),
                  {"unet": (UNet2DConditionModel, "UNet"), "image_encoder": (CLIPVisionModel, "image encoder")})

    @property
    def token_layout(self) -> TokenLayout:
        return clip_token_layout(self.pipe.image_encoder.config, pooled=self.i2i.reference_tokens == "cls")

    def capture_layers(self) -> list[str]:
        return [k for k in cross_attention_layers(self.capture_module()) if k.startswith("up_blocks.")]
