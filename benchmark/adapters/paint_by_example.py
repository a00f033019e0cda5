"""Paint-by-Example (Yang et al. 2023) through diffusers' ``PaintByExamplePipeline``.

Loading: the components of a ``PaintByExamplePipeline`` saved folder (see
:func:`load_pipeline` for why not ``from_pretrained``), ``path`` a local
folder in the diffusers layout (``model_index.json``, ``unet/``, ``vae/``,
``image_encoder/``, ``scheduler/``, ``feature_extractor/``) or a hub id that is
already in the local Hugging Face cache (e.g. ``Fantasy-Studio/Paint-by-Example``).
Nothing is downloaded here; a missing model is an error that says where to put it.
The safety checker is never loaded (it would black out benchmark outputs).

Attention carrying the reference: every cross-attention layer (``attn2``) of
the UNet. Its context is ONE token, the example image's CLIP pooled output
passed through the PBE mapper and projection, so the token layout is a (1, 1)
grid: the generated-side maps exist (softmax over generated positions), the
reference-side maps do not and are reported as not applicable.

Generation: the UNet takes 9 channels (latent, masked-image latent, mask).
``image`` is ``conditions['masked_image']`` (or ``target``; the pipeline zeroes
the masked region itself, so both give the same input), ``mask_image`` is
``conditions['mask']`` (1 = region to fill), ``example_image`` is ``reference``
put through the pipeline's own CLIP feature extractor. Under CFG the pipeline
stacks the image embeddings as [uncond_vector; example] (``_encode_image``),
so the conditional half is the second one, as the capture assumes.
The masked image is VAE-encoded by sampling the posterior (as PBE does); that
draw uses a per-sample generator derived from the sample's seed, so outputs
depend only on the seeds, never on batching.

Options (``ModelSpec.options``): ``scheduler`` ``ddim`` (default; the paper's
setting) or ``pretrained`` (the folder's own scheduler); ``num_inference_steps``
(50) and ``guidance_scale`` (5.0), the paper's settings; ``dtype`` (float32 |
float16 | bfloat16 | auto, default float32: UNet, image encoder and VAE;
:func:`~benchmark.adapters.pipeline_adapter.model_dtype`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import diffusers
from diffusers import AutoencoderKL, DDIMScheduler, DDPMScheduler, PaintByExamplePipeline, UNet2DConditionModel
from diffusers.pipelines.deprecated.paint_by_example import PaintByExampleImageEncoder
from diffusers.pipelines.deprecated.paint_by_example.pipeline_paint_by_example import (
    prepare_mask_and_masked_image)
from transformers import CLIPImageProcessor, CLIPVisionConfig

from benchmark.adapters.pipeline_adapter import clip_pixels, model_dtype
from benchmark.api.model import (ModelAdapter, ModelSpec, SamplingSettings, check_timesteps, initial_noise,
                                 one_pass_noise, one_pass_target)
from benchmark.api.sources import resolve_model_source
from benchmark.capture.tokens import TokenLayout
from benchmark.config import REPO_ROOT, ConfigError, build_section
from benchmark.pipelines.reference_i2i import float32_decode_calls
from benchmark.registry import ADAPTERS

HUB_ID = "Fantasy-Studio/Paint-by-Example"
LAYOUT = "a diffusers folder with model_index.json, unet/, vae/, image_encoder/, scheduler/, feature_extractor/"


@dataclass(frozen=True)
class PaintByExampleOptions:
    scheduler: str = "ddim"  # ddim | pretrained
    num_inference_steps: int = 50
    guidance_scale: float = 5.0
    dtype: str = "float32"  # see model_dtype

    def __post_init__(self):
        if self.scheduler not in ("ddim", "pretrained"):
            raise ConfigError("paint_by_example option scheduler must be 'ddim' or 'pretrained', "
                              f"got {self.scheduler!r}")


def load_pipeline(path: str, scheduler: str = "ddim", dtype: torch.dtype = torch.float32) -> PaintByExamplePipeline:
    """A local folder or a cached hub id (:func:`resolve_model_source`) -> the pipeline, without its safety checker.

    The components are loaded one by one rather than by ``from_pretrained``:
    the released checkpoint's model_index.json declares the image encoder as
    ``["paint_by_example", ...]``, a module diffusers no longer resolves since
    the pipeline moved to ``pipelines.deprecated`` (and a folder saved by this
    diffusers declares ``["diffusers", ...]``, which it does not export either).
    """
    folder = resolve_model_source(path, REPO_ROOT, what=f"Paint-by-Example model ({LAYOUT})", suggest=HUB_ID)
    if not (folder / "model_index.json").is_file():
        raise FileNotFoundError(f"Paint-by-Example model {path!r}: {folder} has no model_index.json; "
                                f"expected {LAYOUT}")

    def part(name: str) -> Path:
        if not (folder / name).is_dir():
            raise FileNotFoundError(f"Paint-by-Example model {path!r}: {folder} has no {name}/ folder; "
                                    f"expected {LAYOUT}")
        return folder / name

    enc_dir = part("image_encoder")
    image_encoder = PaintByExampleImageEncoder.from_pretrained(
        enc_dir, config=CLIPVisionConfig.from_pretrained(enc_dir), torch_dtype=dtype)
    sched_config = DDIMScheduler.load_config(part("scheduler"))
    if scheduler == "ddim":  # over the folder's noise schedule; no x0 clipping, as the original (CompVis) sampler
        sched = DDIMScheduler.from_config(sched_config, clip_sample=sched_config.get("clip_sample", False))
    else:
        sched = getattr(diffusers, sched_config["_class_name"]).from_config(sched_config)
    fe_dir = folder / "feature_extractor"
    return PaintByExamplePipeline(
        vae=AutoencoderKL.from_pretrained(part("vae"), torch_dtype=dtype),
        image_encoder=image_encoder,
        unet=UNet2DConditionModel.from_pretrained(part("unet"), torch_dtype=dtype),
        scheduler=sched,
        safety_checker=None,
        feature_extractor=CLIPImageProcessor.from_pretrained(fe_dir) if fe_dir.is_dir() else None,
        requires_safety_checker=False,
    )


def required_mask(conditions: dict) -> torch.Tensor:
    if "mask" not in conditions:
        raise KeyError(f"paint_by_example needs the condition 'mask' (1 = region to fill); got {sorted(conditions)}")
    return conditions["mask"]


@ADAPTERS.register("paint_by_example")
class PaintByExampleAdapter(ModelAdapter):
    identity_parts = ("image_encoder", "vae")

    def __init__(self, spec: ModelSpec, device="cpu"):
        super().__init__(spec, device)
        where = f"model {spec.name!r} options"
        self.options = build_section(PaintByExampleOptions, spec.options, where)
        dtype = model_dtype(self.options.dtype, self.device, where)
        self.pipe = load_pipeline(spec.path, self.options.scheduler, dtype).to(self.device)
        self.pipe.set_progress_bar_config(disable=True)
        for m in (self.pipe.vae, self.pipe.unet, self.pipe.image_encoder):
            m.eval().requires_grad_(False)

    @property
    def token_layout(self) -> TokenLayout:
        return TokenLayout(grid=(1, 1))  # one pooled token: no reference-side map

    def capture_module(self) -> torch.nn.Module:
        return self.pipe.unet

    def latent_grid(self, image_size):
        f = self.pipe.vae_scale_factor
        return image_size[0] // f, image_size[1] // f

    def default_sampling(self) -> SamplingSettings:
        return SamplingSettings(self.options.num_inference_steps, self.options.guidance_scale)

    def example_pixels(self, reference: torch.Tensor) -> torch.Tensor:
        """(B, 3, Hr, Wr) in [0, 1] -> CLIP pixel values, through the pipeline's own feature extractor."""
        fe = self.pipe.feature_extractor
        if fe is not None:
            return fe(images=list(reference.float().cpu()), return_tensors="pt", do_rescale=False).pixel_values
        return clip_pixels(reference.float(), self.pipe.image_encoder.config.image_size)  # no feature extractor

    @torch.no_grad()
    def generate(self, batch: dict, sampling: SamplingSettings, seeds: list[int],
                 callback_on_step_end: Callable | None = None) -> torch.Tensor:
        conditions = batch["conditions"]
        mask = required_mask(conditions)
        image = conditions.get("masked_image", batch.get("target"))
        if image is None:
            raise KeyError("paint_by_example needs the condition 'masked_image' or a target image")
        size = tuple(mask.shape[-2:])
        dtype = self.pipe.unet.dtype
        latents = initial_noise(seeds, (self.pipe.vae.config.latent_channels, *self.latent_grid(size)))

        def callback(i, t, latents_now):  # the pipeline only has the legacy per-step callback
            callback_on_step_end(self.pipe, i, t, {"latents": latents_now})

        with float32_decode_calls(self.pipe.vae):  # force_upcast honoured inside the pipeline's own decode
            out = self.pipe(
                example_image=self.example_pixels(batch["reference"]).to(self.device, dtype),
                image=(image.float() * 2 - 1).clamp(-1, 1).to(self.device, dtype),
                mask_image=mask.float().clamp(0, 1).to(self.device, dtype),
                num_inference_steps=sampling.num_inference_steps,
                guidance_scale=sampling.guidance_scale,
                eta=sampling.eta,
                generator=self.masked_image_generators(seeds),  # the masked-image latent is a posterior sample
                latents=latents.to(self.device, dtype),
                output_type="pt",
                callback=callback if callback_on_step_end is not None else None,
                callback_steps=1,
            ).images
        return out.float().cpu()

    @staticmethod
    def masked_image_generators(seeds: list[int]) -> list[torch.Generator]:
        """One generator per sample for the masked-image posterior draw, apart from the noise seed."""
        return [torch.Generator().manual_seed(int(s) + 0x9E3779B9) for s in seeds]

    @torch.no_grad()
    def one_pass(self, batch: dict, timesteps: tuple[int, ...], seeds: list[int],
                 callback_on_step_end: Callable | None = None) -> int:
        """See :meth:`ModelAdapter.one_pass`.

        The UNet input is the pipeline's own 9 channels, [x_t; masked-image
        latent; mask], prepared by the pipeline's ``prepare_mask_and_masked_image``
        and ``prepare_mask_latents`` with the same per-sample generators as
        :meth:`generate`; the context is the example embedding alone (no
        unconditional vector). x_0 is the target's latent (posterior mode), noised
        by the DDPM forward process of the folder's noise schedule (whatever
        sampler the option ``scheduler`` picks, the UNet was trained on that process).
        """
        who = f"model {self.spec.name!r}"
        target = one_pass_target(batch, who)
        conditions = batch["conditions"]
        mask = required_mask(conditions)
        pipe, dev, dtype = self.pipe, self.device, self.pipe.unet.dtype
        noiser = DDPMScheduler.from_config(pipe.scheduler.config)
        steps = check_timesteps(timesteps, noiser.config.num_train_timesteps, who)
        image = conditions.get("masked_image", target)
        b, (height, width) = len(seeds), tuple(target.shape[-2:])
        mask, masked = prepare_mask_and_masked_image((image.float() * 2 - 1).clamp(-1, 1), mask.float().clamp(0, 1))
        mask, masked_latent = pipe.prepare_mask_latents(mask, masked, b, height, width, dtype, dev,
                                                        self.masked_image_generators(seeds), False)
        context = pipe.image_encoder(self.example_pixels(batch["reference"]).to(dev, dtype))  # (B, 1, D)
        x0 = pipe.vae.encode((target.float() * 2 - 1).clamp(-1, 1).to(dev, dtype)).latent_dist.mode()
        x0 = x0 * pipe.vae.config.scaling_factor
        noise = one_pass_noise(seeds, steps, tuple(x0.shape[1:]))
        for k, step in enumerate(steps):
            t = torch.full((b,), step, device=dev, dtype=torch.long)
            x = noiser.add_noise(x0, noise[k].to(x0), t)
            pipe.unet(torch.cat([x, masked_latent, mask], dim=1), t, encoder_hidden_states=context)
            if callback_on_step_end is not None:
                callback_on_step_end(pipe, k, t[0], {})
        return len(steps)
