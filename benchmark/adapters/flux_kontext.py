"""FLUX.1 Kontext (Black Forest Labs) through diffusers' ``FluxKontextPipeline`` / ``FluxKontextInpaintPipeline``.

Folder layout (``path``; a local folder in the diffusers layout, e.g. what
``FluxKontextPipeline.save_pretrained`` writes, or a hub id such as
``black-forest-labs/FLUX.1-Kontext-dev`` that is already in the local Hugging
Face cache; nothing is downloaded here)::

    <path>/transformer/     FluxTransformer2DModel (in_channels = 4 * latent channels: 2x2 packed latents)
    <path>/vae/             AutoencoderKL with shift_factor and scaling_factor in its config
    <path>/scheduler/       FlowMatchEulerDiscreteScheduler
    <path>/text_encoder/ tokenizer/ text_encoder_2/ tokenizer_2/
                            CLIP and T5 (optional: needed only for the option ``prompt``)

Prompt: the option ``prompt`` (a string, encoded ONCE at load with the
folder's text encoders, which are then released), or, for a folder without
text encoders, the option ``prompt_embeds``: a ``.safetensors`` or torch file
holding ``prompt_embeds`` (1, T, joint_attention_dim) and
``pooled_prompt_embeds`` (1, pooled_projection_dim); a relative path is looked
up in the working directory, then in the model folder. Every sample of a run
uses the same prompt. T is the text part of :meth:`FluxKontextAdapter.joint_layout`.

Modes, chosen per batch from the task's conditions:

* inpainting (conditions ``masked_image`` and ``mask``, 1 = region to fill):
  ``FluxKontextInpaintPipeline(image=masked_image, mask_image=mask,
  image_reference=reference, strength=1.0)``. The ground-truth ``target`` is
  never given to the pipeline.
* plain Kontext (any other task): ``FluxKontextPipeline(image=reference)``;
  the other conditions are not used (the prompt carries the instruction).

In both the transformer sees ONE sequence ``[text (T); generated (G);
reference (R)]`` (reference position ids carry ``ids[..., 0] = 1``), and
I2AM reads its generated x reference block (joint-attention capture,
:mod:`benchmark.adapters.joint_attention`) in every attention layer, double- and
single-stream. There is no true CFG (``true_cfg_scale`` stays 1): every
attention row is conditional. ``guidance_scale`` is FLUX's distilled guidance
embedding, used only if ``transformer.config.guidance_embeds``.

Sizes: the generated image has the task size (H, W), which must be a multiple
of 2 * f (f = VAE scale factor; 16 for FLUX); it gives G = (H/2f) * (W/2f)
tokens on the grid :meth:`latent_grid`. The reference is resized (bicubic,
antialiased) to the option ``reference_size`` (h, w) before the pipeline sees
it, whatever its size in the task, so that its token grid (h/2f, w/2f),
``token_layout``, is fixed by the model spec. The pipelines get explicit
height/width, ``max_area = H * W`` and ``_auto_resize=False``, so they never
resize away from these sizes.

Noise: each sample starts from :func:`~benchmark.api.model.initial_noise`
drawn from its own seed; the VAE encodes the images one sample at a time with
the latent mode (no sampling), so outputs do not depend on batching.

Options (``ModelSpec.options``): ``prompt`` | ``prompt_embeds`` (above);
``reference_size`` ((512, 512)); ``num_inference_steps`` (28) and
``guidance_scale`` (2.5), the Kontext-dev defaults; ``max_sequence_length``
(512, T5 tokens when encoding ``prompt``); ``dtype`` (float32 | float16 |
bfloat16 | auto, default float32: transformer, VAE, text encoders and prompt
embeddings, :func:`~benchmark.adapters.pipeline_adapter.model_dtype`;
bfloat16, the precision FLUX.1 is released in, for a full-size model on a
GPU); ``random_init`` (a seed: replace the transformer by a freshly
initialised one of the same config, the attribution-method baseline; VAE kept
for decoding).

Tested (tests/adapters/test_flux_kontext.py, the contract suite) on a tiny random
FLUX Kontext folder on the CPU, both modes and prompt encoding included; not on
real FLUX.1 Kontext weights, in bfloat16 or on a GPU.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from diffusers import (AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxKontextInpaintPipeline,
                       FluxKontextPipeline, FluxTransformer2DModel)

from benchmark.adapters.joint_attention import JointAttentionCapture
from benchmark.adapters.pipeline_adapter import fresh_component, model_dtype
from benchmark.api.model import (ModelAdapter, ModelSpec, SamplingSettings, check_timesteps, initial_noise,
                                 one_pass_noise, one_pass_target)
from benchmark.api.sample import condition_size
from benchmark.api.sources import resolve_model_source
from benchmark.capture.joint_capture import JointLayout
from benchmark.capture.tokens import TokenLayout
from benchmark.config import REPO_ROOT, ConfigError, build_section
from benchmark.pipelines.reference_i2i import float32_decode_calls
from benchmark.registry import ADAPTERS

HUB_ID = "black-forest-labs/FLUX.1-Kontext-dev"
TEXT_PARTS = ("text_encoder", "tokenizer", "text_encoder_2", "tokenizer_2")
INPAINT_CONDITIONS = ("masked_image", "mask")


@dataclass(frozen=True)
class FluxKontextOptions:
    prompt: str | None = None
    prompt_embeds: str | None = None
    reference_size: tuple[int, ...] = (512, 512)
    num_inference_steps: int = 28
    guidance_scale: float = 2.5
    max_sequence_length: int = 512
    dtype: str = "float32"  # see model_dtype
    random_init: int | None = None

    def __post_init__(self):
        if self.prompt is not None and self.prompt_embeds is not None:
            raise ConfigError("flux_kontext: give either option 'prompt' or option 'prompt_embeds', not both")
        if len(self.reference_size) != 2 or min(self.reference_size) < 1:
            raise ConfigError(f"flux_kontext option reference_size must be [height, width], got {self.reference_size}")


def _part(folder: Path, name: str) -> Path:
    if not (folder / name).is_dir():
        raise FileNotFoundError(f"FLUX Kontext folder {folder} has no {name}/ folder")
    return folder / name


def load_prompt_embeds(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """A .safetensors or torch file -> prompt_embeds (1, T, D), pooled_prompt_embeds (1, P)."""
    if not path.is_file():
        raise FileNotFoundError(f"flux_kontext option prompt_embeds: no file {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file
        data = load_file(path)
    else:
        data = torch.load(path, map_location="cpu", weights_only=True)
    missing = [k for k in ("prompt_embeds", "pooled_prompt_embeds") if k not in data]
    if missing:
        raise ValueError(f"prompt embeddings file {path} lacks {missing} (it has {sorted(data)})")
    embeds, pooled = data["prompt_embeds"], data["pooled_prompt_embeds"]
    if embeds.ndim != 3 or pooled.ndim != 2 or embeds.shape[0] != 1 or pooled.shape[0] != 1:
        raise ValueError(f"prompt embeddings file {path}: expected prompt_embeds (1, T, D) and pooled_prompt_embeds "
                         f"(1, P), got {tuple(embeds.shape)} and {tuple(pooled.shape)}")
    return embeds, pooled


def encode_prompt(folder: Path, prompt: str, max_sequence_length: int, device, dtype) -> tuple[torch.Tensor, ...]:
    """Encode ``prompt`` with the folder's CLIP and T5 encoders -> (1, T, D), (1, P); the encoders are released."""
    from transformers import CLIPTextModel, CLIPTokenizer, T5EncoderModel, T5TokenizerFast

    missing = [p for p in TEXT_PARTS if not (folder / p).is_dir()]
    if missing:
        raise FileNotFoundError(
            f"flux_kontext option prompt needs the text encoders, but {folder} has no {', '.join(missing)} "
            f"folder(s); add them, or give the option prompt_embeds (a file with prompt_embeds and "
            f"pooled_prompt_embeds) instead")
    pipe = FluxKontextPipeline(
        scheduler=None, vae=None, transformer=None,
        text_encoder=CLIPTextModel.from_pretrained(folder / "text_encoder", torch_dtype=dtype).to(device),
        tokenizer=CLIPTokenizer.from_pretrained(folder / "tokenizer"),
        text_encoder_2=T5EncoderModel.from_pretrained(folder / "text_encoder_2", torch_dtype=dtype).to(device),
        tokenizer_2=T5TokenizerFast.from_pretrained(folder / "tokenizer_2"))
    with torch.no_grad():
        embeds, pooled, _ = pipe.encode_prompt(prompt, device=device, max_sequence_length=max_sequence_length)
    return embeds, pooled


@ADAPTERS.register("flux_kontext")
class FluxKontextAdapter(JointAttentionCapture, ModelAdapter):
    identity_parts = ("vae",)  # then the prompt embeddings' hash

    def __init__(self, spec: ModelSpec, device="cpu"):
        super().__init__(spec, device)
        where = f"model {spec.name!r} options"
        self.options = opts = build_section(FluxKontextOptions, spec.options, where)
        self.dtype = model_dtype(opts.dtype, self.device, where)
        folder = resolve_model_source(spec.path, REPO_ROOT, what="FLUX Kontext model (a diffusers folder with "
                                      "transformer/, vae/, scheduler/)", suggest=HUB_ID)
        transformer_dir = _part(folder, "transformer")
        # the prompt first: a missing one fails before the weights load, and T5 is released before they do
        self.prompt_embeds, self.pooled_prompt_embeds = self._prompt(
            folder, FluxTransformer2DModel.load_config(transformer_dir))
        if opts.random_init is None:
            transformer = FluxTransformer2DModel.from_pretrained(transformer_dir, torch_dtype=self.dtype)
        else:  # built where it runs, from the config alone: no trained weights read, no float32 copy in host memory
            with torch.random.fork_rng():
                torch.manual_seed(int(opts.random_init))
                transformer = fresh_component(FluxTransformer2DModel, transformer_dir, "FLUX transformer", self.dtype,
                                              self.device)
        vae = AutoencoderKL.from_pretrained(_part(folder, "vae"), torch_dtype=self.dtype)
        if vae.config.get("shift_factor") is None or vae.config.get("scaling_factor") is None:
            raise ValueError(f"the VAE in {folder / 'vae'} needs shift_factor and scaling_factor in its config "
                             "(FLUX's: 0.1159 and 0.3611)")
        scheduler = FlowMatchEulerDiscreteScheduler.from_pretrained(_part(folder, "scheduler"))
        parts = dict(scheduler=scheduler, vae=vae, transformer=transformer, text_encoder=None, tokenizer=None,
                     text_encoder_2=None, tokenizer_2=None)
        self.pipe = FluxKontextPipeline(**parts).to(self.device)
        self.inpaint_pipe = FluxKontextInpaintPipeline(**parts).to(self.device)
        for p in (self.pipe, self.inpaint_pipe):
            p.set_progress_bar_config(disable=True)
        for m in (vae, transformer):
            m.eval().requires_grad_(False)
        h, w = opts.reference_size
        if h % self.multiple_of or w % self.multiple_of:
            raise ConfigError(f"flux_kontext option reference_size {[h, w]} must be a multiple of "
                              f"{self.multiple_of} (2 x the VAE scale factor)")

    def _prompt(self, folder: Path, cfg: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """(1, T, joint_attention_dim), (1, pooled_projection_dim) from the option prompt or prompt_embeds."""
        opts, dims = self.options, (cfg["joint_attention_dim"], cfg["pooled_projection_dim"])
        if opts.prompt is not None:
            embeds, pooled = encode_prompt(folder, opts.prompt, opts.max_sequence_length, self.device, self.dtype)
        elif opts.prompt_embeds is not None:
            path = Path(opts.prompt_embeds).expanduser()
            if not path.is_absolute() and not path.exists():
                path = folder / path
            embeds, pooled = load_prompt_embeds(path)
        else:
            has = [p for p in TEXT_PARTS if (folder / p).is_dir()]
            raise ConfigError(
                f"model {self.spec.name!r} (flux_kontext) has no prompt: set the option 'prompt' (a string, encoded "
                f"with the folder's text encoders; {folder} has {has or 'none'} of {list(TEXT_PARTS)}) or the "
                f"option 'prompt_embeds' (a file with prompt_embeds (1, T, {dims[0]}) and "
                f"pooled_prompt_embeds (1, {dims[1]}))")
        if (embeds.shape[-1], pooled.shape[-1]) != dims:
            raise ValueError(f"prompt embeddings have widths {embeds.shape[-1]} / {pooled.shape[-1]}, the transformer "
                             f"wants {dims[0]} / {dims[1]}")
        return embeds.to(self.device, self.dtype), pooled.to(self.device, self.dtype)

    # --- layout -------------------------------------------------------------------------------
    @property
    def multiple_of(self) -> int:
        """Image sides must be multiples of this: VAE downsampling times the 2x2 latent packing."""
        return 2 * self.pipe.vae_scale_factor

    def _packed_grid(self, size: tuple[int, int], what: str) -> tuple[int, int]:
        h, w = size
        m = self.multiple_of
        if h % m or w % m:
            raise ValueError(f"flux_kontext: {what} size {h}x{w} is not a multiple of {m} (2 x VAE scale factor "
                             f"{self.pipe.vae_scale_factor}); resize the task's images to a multiple of {m}")
        return h // m, w // m

    def latent_grid(self, image_size) -> tuple[int, int]:
        """(H/2f, W/2f): the packed generated-token grid (the grid of the generated-side maps)."""
        return self._packed_grid(tuple(image_size), "image")

    @property
    def token_layout(self) -> TokenLayout:
        return TokenLayout(grid=self._packed_grid(tuple(self.options.reference_size), "reference"))

    def joint_layout(self, batch: dict) -> JointLayout:
        gh, gw = self.latent_grid(condition_size(batch["conditions"]))
        return JointLayout(self.prompt_embeds.shape[1], gh * gw, self.token_layout.n_kept)

    def capture_module(self) -> torch.nn.Module:
        return self.pipe.transformer

    def default_sampling(self) -> SamplingSettings:
        return SamplingSettings(self.options.num_inference_steps, self.options.guidance_scale)

    # --- generation ---------------------------------------------------------------------------
    @staticmethod
    def is_inpainting(batch: dict) -> bool:
        present = [c for c in INPAINT_CONDITIONS if c in batch["conditions"]]
        if len(present) == 1:
            raise KeyError(f"flux_kontext inpainting needs both conditions {list(INPAINT_CONDITIONS)}; "
                           f"got {sorted(batch['conditions'])}")
        return len(present) == 2

    def reference_pixels(self, reference: torch.Tensor) -> torch.Tensor:
        """(B, 3, Hr, Wr) in [0, 1] -> (B, 3, *reference_size) in [0, 1]."""
        size = tuple(self.options.reference_size)
        x = reference.float()
        if tuple(x.shape[-2:]) != size:
            x = F.interpolate(x, size=size, mode="bicubic", align_corners=False, antialias=True)
        return x.clamp(0, 1)

    @torch.no_grad()
    def generate(self, batch: dict, sampling: SamplingSettings, seeds: list[int],
                 callback_on_step_end: Callable | None = None) -> torch.Tensor:
        """(B, 3, H, W) float CPU in [0, 1]; sample i starts from the noise of ``seeds[i]``."""
        size = condition_size(batch["conditions"])
        gh, gw = self.latent_grid(size)
        b, dev, dtype = len(seeds), self.device, self.dtype
        channels = self.pipe.transformer.config.in_channels // 4
        noise = initial_noise(seeds, (channels, 2 * gh, 2 * gw)).to(dev, dtype)  # unpacked (B, C, H/f, W/f)

        def on_step_end(pipe, i, t, kwargs):  # diffusers pops tensors from the returned dict
            out = callback_on_step_end(pipe, i, t, kwargs)
            return out if isinstance(out, dict) else {}

        common = dict(
            prompt_embeds=self.prompt_embeds.expand(b, -1, -1),
            pooled_prompt_embeds=self.pooled_prompt_embeds.expand(b, -1),
            height=size[0], width=size[1], max_area=size[0] * size[1], _auto_resize=False,
            num_inference_steps=sampling.num_inference_steps, guidance_scale=sampling.guidance_scale,
            # VAE encoding one sample at a time (batching-independent); the latent mode is used, no draw
            generator=[torch.Generator().manual_seed(int(s)) for s in seeds],
            output_type="pt", callback_on_step_end=on_step_end if callback_on_step_end is not None else None)
        reference = self.reference_pixels(batch["reference"]).to(dev, dtype)
        with float32_decode_calls(self.pipe.vae):  # force_upcast honoured inside the pipelines' own decode
            if self.is_inpainting(batch):
                c = batch["conditions"]
                images = self.inpaint_pipe(
                    image=c["masked_image"].float().clamp(0, 1).to(dev, dtype),
                    mask_image=c["mask"].float().clamp(0, 1).to(dev, dtype),
                    image_reference=reference, strength=1.0,
                    latents=noise,  # this pipeline packs the latents itself
                    **common).images
            else:
                packed = self.pipe._pack_latents(noise, b, channels, 2 * gh, 2 * gw)
                images = self.pipe(image=reference, latents=packed, **common).images
        if tuple(images.shape) != (b, 3, *size):
            raise RuntimeError(f"flux_kontext: pipeline returned {tuple(images.shape)}, expected {(b, 3, *size)}")
        return images.float().cpu()

    def identity(self) -> dict:
        ident = super().identity()
        h = hashlib.sha256()
        for t in (self.prompt_embeds, self.pooled_prompt_embeds):
            h.update(t.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
        ident["weights"] += h.hexdigest()[:8]
        return ident

    @torch.no_grad()
    def one_pass(self, batch: dict, timesteps: tuple[int, ...], seeds: list[int],
                 callback_on_step_end: Callable | None = None) -> int:
        """See :meth:`ModelAdapter.one_pass`.

        The transformer call is the one both Kontext pipelines make: hidden
        states [packed x_t; packed reference latents], ids [generated (first
        coordinate 0); reference (1)], the run's prompt embeddings, timestep
        sigma = t / 1000 and the distilled guidance embedding of the default
        sampling; the reference goes through the pipeline's own
        ``image_processor`` and ``prepare_latents``. x_0 is the target's latent
        (mode, FLUX shift and scale), x_t = (1 - sigma) x_0 + sigma noise, the
        flow-matching path. The inpainting pipeline uses its mask and masked
        image only to blend latents between steps, never as model input, so
        both modes make this same call.
        """
        who = f"model {self.spec.name!r}"
        target = one_pass_target(batch, who)
        pipe, dev, dtype = self.pipe, self.device, self.dtype
        num_train = pipe.scheduler.config.num_train_timesteps
        steps = check_timesteps(timesteps, num_train, who)
        size = tuple(target.shape[-2:])
        gh, gw = self.latent_grid(size)
        b, channels = len(seeds), pipe.transformer.config.in_channels // 4
        vae = pipe.vae
        x0 = torch.cat([vae.encode(x[None]).latent_dist.mode() for x in  # one sample at a time, as generate
                        (target.float().clamp(0, 1) * 2 - 1).to(dev, dtype)])
        x0 = (x0 - vae.config.shift_factor) * vae.config.scaling_factor  # (B, C, 2gh, 2gw)
        reference = pipe.image_processor.preprocess(self.reference_pixels(batch["reference"]),
                                                    *self.options.reference_size).to(dev, dtype)
        _, ref_latents, latent_ids, ref_ids = pipe.prepare_latents(
            reference, b, channels, size[0], size[1], dtype, dev,
            [torch.Generator().manual_seed(int(s)) for s in seeds], latents=x0)
        guidance = (torch.full((b,), self.options.guidance_scale, device=dev, dtype=torch.float32)
                    if pipe.transformer.config.guidance_embeds else None)
        text_ids = torch.zeros(self.prompt_embeds.shape[1], 3, device=dev, dtype=dtype)
        noise = one_pass_noise(seeds, steps, tuple(x0.shape[1:]))
        for k, step in enumerate(steps):
            sigma = step / num_train
            x = pipe._pack_latents((1 - sigma) * x0 + sigma * noise[k].to(x0), b, channels, 2 * gh, 2 * gw)
            pipe.transformer(
                hidden_states=torch.cat([x, ref_latents], dim=1),
                timestep=torch.full((b,), sigma, device=dev, dtype=dtype),
                guidance=guidance,
                pooled_projections=self.pooled_prompt_embeds.expand(b, -1),
                encoder_hidden_states=self.prompt_embeds.expand(b, -1, -1),
                txt_ids=text_ids, img_ids=torch.cat([latent_ids, ref_ids], dim=0), return_dict=False)
            if callback_on_step_end is not None:
                callback_on_step_end(pipe, k, torch.tensor(float(step)), {})
        return len(steps)
