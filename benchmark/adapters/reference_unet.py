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
import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from transformers import CLIPVisionModel

from benchmark.adapters.pipeline_adapter import ReferencePipelineAdapter, ddim_scheduler  # noqa: F401 (re-export)
from benchmark.api.model import ModelSpec, SamplingSettings
from benchmark.capture.tokens import TokenLayout
from benchmark.models.mini import I2IModelSpec
from benchmark.pipelines.reference_i2i import ReferenceI2IPipeline
from benchmark.registry import ADAPTERS


def _load(cls, path: Path, what: str, **kw):
    if not Path(path).is_dir():
        raise FileNotFoundError(f"{what} not found at {path}: put a {cls.__name__} folder (from save_pretrained) there")
    return cls.from_pretrained(path, torch_dtype=torch.float32, **kw)


@ADAPTERS.register("reference_unet")
class ReferenceUNetAdapter(ReferencePipelineAdapter):
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

    def default_sampling(self) -> SamplingSettings:
        return SamplingSettings(self.i2i.num_inference_steps, self.i2i.guidance_scale)
