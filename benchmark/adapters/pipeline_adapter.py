"""What the adapters share: loading an exported I2I model, CLIP reference pixels and tokens, and the adapter of
the repository's own pipelines (:class:`~benchmark.pipelines.reference_i2i.ReferenceI2IPipeline` and
:class:`~benchmark.pipelines.reference_dit.ReferenceDiTPipeline`)."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, DDIMScheduler
from diffusers.models.modeling_utils import ModelMixin

from benchmark.api.model import (ModelAdapter, ModelSpec, SamplingSettings, check_timesteps, initial_noise,
                                 one_pass_noise, one_pass_target)
from benchmark.api.sample import condition_size
from benchmark.api.sources import resolve_model_source
from benchmark.capture.tokens import TokenLayout
from benchmark.config import REPO_ROOT, check_model_dtype
from benchmark.models.mini import I2IModelSpec

# OpenAI CLIP's pixel statistics.
CLIP_MEAN, CLIP_STD = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)


def ddim_scheduler() -> DDIMScheduler:
    """SD-1.5's DDIM settings (also what the mini models are trained for)."""
    return DDIMScheduler(num_train_timesteps=1000, beta_schedule="scaled_linear", beta_start=0.00085,
                         beta_end=0.012, clip_sample=False, set_alpha_to_one=False, steps_offset=1)


def model_dtype(dtype: str, device: torch.device | str, where: str) -> torch.dtype:
    """The torch dtype of the model option ``dtype`` (:data:`~benchmark.config.MODEL_DTYPES`): ``auto`` is
    float16 on CUDA and float32 elsewhere (half precision on CPUs is slow and poorly covered by kernels).
    Any other value is a ConfigError that names ``where``."""
    check_model_dtype(dtype, where)
    if dtype == "auto":
        return torch.float16 if torch.device(device).type == "cuda" else torch.float32
    return getattr(torch, dtype)


def load_component(cls, path: Path, what: str, dtype: torch.dtype):
    """A component folder inside an already resolved model folder (or the resolved ``vae`` option), in ``dtype``."""
    if not Path(path).is_dir():
        raise FileNotFoundError(f"{what} not found at {path}: put a {cls.__name__} folder (from save_pretrained) there")
    return cls.from_pretrained(path, torch_dtype=dtype)


def fresh_component(cls, path: Path, what: str, dtype: torch.dtype, device: torch.device):
    """A freshly initialised ``cls`` of the config in ``path`` (no weights are read), built on ``device`` and cast to
    ``dtype``: a random-init baseline never holds a second copy of the model in host memory. The values come from
    ``device``'s generator (seed it first), so they differ between CPU and CUDA, as every output does."""
    if not Path(path).is_dir():
        raise FileNotFoundError(f"{what} not found at {path}: put a {cls.__name__} folder (from save_pretrained) there")
    with torch.device(device):
        if issubclass(cls, ModelMixin):
            fresh = cls.from_config(cls.load_config(path))
        else:
            fresh = cls(cls.config_class.from_pretrained(path))
    return fresh if fresh.dtype == dtype else fresh.to(dtype)  # cast only when asked (diffusers warns)


def model_and_vae(spec: ModelSpec, layout: str) -> tuple[Path, Path]:
    """(model folder, VAE folder) of an exported I2I model: ``spec.path`` and the option ``vae`` (default
    ``<path>/vae``), both through :func:`resolve_model_source`."""
    root = resolve_model_source(spec.path, REPO_ROOT, what=f"{spec.adapter} model ({layout})")
    vae = spec.options.get("vae")
    return root, (resolve_model_source(vae, REPO_ROOT, what="VAE (option vae)") if vae else root / "vae")


def resize_antialiased(images: torch.Tensor, size: tuple[int, int], mode: str) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, *size), antialiased ``mode`` resize computed in float32 and returned in the input
    dtype: PyTorch's CPU antialiased kernels have no float16 / bfloat16 version."""
    x = F.interpolate(images.float(), size=tuple(size), mode=mode, align_corners=False, antialias=True)
    return x.to(images.dtype)


def clip_pixels(images: torch.Tensor, size: int) -> torch.Tensor:
    """(B, 3, H, W) in [0, 1] -> (B, 3, size, size) CLIP pixel values (bicubic, antialiased, CLIP mean/std),
    computed in float32 and returned in the input dtype."""
    x = F.interpolate(images.float(), size=(size, size), mode="bicubic", align_corners=False, antialias=True)
    mean = torch.tensor(CLIP_MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD, device=x.device).view(1, 3, 1, 1)
    return ((x.clamp(0, 1) - mean) / std).to(images.dtype)


def clip_token_layout(config, pooled: bool) -> TokenLayout:
    """A CLIP vision tower's context: one pooled token, or CLS + patch tokens (CLS dropped after the softmax)."""
    if pooled:
        return TokenLayout(grid=(1, 1))
    side = config.image_size // config.patch_size
    return TokenLayout(grid=(side, side), drop=(0,))


class ReferencePipelineAdapter(ModelAdapter):
    """Subclasses set ``self.pipe`` (a ReferenceI2IPipeline or ReferenceDiTPipeline, e.g. by :meth:`load`)
    and declare ``token_layout``."""

    pipe = None
    identity_parts = ("image_encoder", "vae")
    sampler_options = ("num_inference_steps", "guidance_scale", "eta")  # SamplingSettings fields the pipeline takes

    def load(self, pipeline_cls, layout: str, scheduler, parts: dict[str, tuple[type, str]]) -> None:
        """Load an exported I2I model (:func:`model_and_vae`; ``layout`` describes it in errors) into ``self.i2i``
        and ``self.pipe``. ``parts`` maps each pipeline module but the VAE to (class, its name in errors); it is
        read from ``<path>/<module>``. The option ``random_init`` (a seed) replaces them by freshly initialised
        copies of the same config, the attribution-method baseline (the VAE is kept for decoding). Every module,
        the VAE included, is loaded in the option ``dtype`` (:func:`model_dtype`)."""
        root, vae_dir = model_and_vae(self.spec, layout)
        self.i2i = I2IModelSpec.load(root)
        dtype = model_dtype(self.spec.options.get("dtype", "float32"), self.device, f"model {self.spec.name!r}")
        vae = load_component(AutoencoderKL, vae_dir, "VAE", dtype)
        if self.spec.options.get("random_init") is None:
            modules = {name: load_component(cls, root / name, what, dtype) for name, (cls, what) in parts.items()}
        else:  # built where it runs, from the configs alone: the trained weights are never read
            torch.manual_seed(int(self.spec.options["random_init"]))
            modules = {name: fresh_component(cls, root / name, what, dtype, self.device)
                       for name, (cls, what) in parts.items()}
        self.pipe = pipeline_cls(vae=vae, scheduler=scheduler, spec=self.i2i, **modules).to(self.device)
        self.pipe.set_progress_bar_config(disable=True)
        for name in ("vae", *parts):
            getattr(self.pipe, name).eval().requires_grad_(False)

    def capture_module(self) -> torch.nn.Module:
        return self.pipe.denoiser

    def latent_grid(self, image_size):
        return self.pipe.latent_size(tuple(image_size))

    def default_sampling(self) -> SamplingSettings:
        return SamplingSettings(self.pipe.spec.num_inference_steps, self.pipe.spec.guidance_scale)

    def generate(self, batch: dict, sampling: SamplingSettings, seeds: list[int],
                 callback_on_step_end: Callable | None = None) -> torch.Tensor:
        grid = self.latent_grid(condition_size(batch["conditions"]))
        noise = initial_noise(seeds, (self.pipe.denoiser.config.out_channels, *grid))
        options = {name: getattr(sampling, name) for name in self.sampler_options}
        return self.pipe(batch["reference"], batch["conditions"], latents=noise,
                         callback_on_step_end=callback_on_step_end, **options).float().cpu()

    def one_pass(self, batch: dict, timesteps: tuple[int, ...], seeds: list[int],
                 callback_on_step_end: Callable | None = None) -> int:
        """See :meth:`ModelAdapter.one_pass`; the pipeline's ``one_pass`` runs the calls."""
        who = f"model {self.spec.name!r}"
        target = one_pass_target(batch, who)
        steps = check_timesteps(timesteps, self.pipe.scheduler.config.num_train_timesteps, who)
        grid = self.latent_grid(tuple(target.shape[-2:]))
        noise = one_pass_noise(seeds, steps, (self.pipe.denoiser.config.out_channels, *grid))
        return self.pipe.one_pass(batch["reference"], batch["conditions"], target, steps, noise, callback_on_step_end)
