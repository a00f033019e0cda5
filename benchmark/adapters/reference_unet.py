"""The paper's custom model: SD-style UNet with extra condition channels, CLIP patch tokens as context.

Folder layout (what :mod:`benchmark.training.train` exports, and what a
full-size model of the same design is saved as)::

    <path>/unet/            UNet2DConditionModel
    <path>/image_encoder/   CLIPVisionModel
    <path>/i2i_config.json  conditions, reference tokens (patch | cls), sampling defaults
    <vae>/                  AutoencoderKL (option ``vae``; default <path>/vae)

``path`` and the option ``vae`` are found by
:func:`~benchmark.api.sources.resolve_model_source` (a local folder, relative
paths from the repository root, or a hub id in the local Hugging Face cache,
``owner/name/vae`` for a subfolder).

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
from benchmark.api.sources import resolve_model_source
from benchmark.capture.tokens import TokenLayout
from benchmark.config import REPO_ROOT
from benchmark.models.mini import I2IModelSpec
from benchmark.pipelines.reference_i2i import ReferenceI2IPipeline
from benchmark.registry import ADAPTERS


def load_component(cls, path: Path, what: str, **kw):
    """A component folder inside an already resolved model folder (or the resolved ``vae`` option)."""
    if not Path(path).is_dir():
        raise FileNotFoundError(f"{what} not found at {path}: put a {cls.__name__} folder (from save_pretrained) there")
    return cls.from_pretrained(path, torch_dtype=torch.float32, **kw)


def model_and_vae(spec: ModelSpec, layout: str) -> tuple[Path, Path]:
    """(model folder, VAE folder) of an exported I2I model: ``spec.path`` and the option ``vae`` (default
    ``<path>/vae``), both through :func:`resolve_model_source`."""
    root = resolve_model_source(spec.path, REPO_ROOT, what=f"{spec.adapter} model ({layout})")
    vae = spec.options.get("vae")
    return root, (resolve_model_source(vae, REPO_ROOT, what="VAE (option vae)") if vae else root / "vae")


@ADAPTERS.register("reference_unet")
class ReferenceUNetAdapter(ReferencePipelineAdapter):
    def __init__(self, spec: ModelSpec, device="cpu"):
        super().__init__(spec, device)
        root, vae_dir = model_and_vae(spec, "a folder with unet/, image_encoder/, i2i_config.json")
        self.i2i = I2IModelSpec.load(root)
        self.pipe = ReferenceI2IPipeline(
            vae=load_component(AutoencoderKL, vae_dir, "VAE"),
            unet=load_component(UNet2DConditionModel, root / "unet", "UNet"),
            image_encoder=load_component(CLIPVisionModel, root / "image_encoder", "image encoder"),
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
