"""Models built on CompVis ``ldm`` code (StableVITON and alike), through a user-supplied factory.

The ``ldm`` package is research code that is not installable here, so the
adapter does not import it. The user names a callable by import path; it
builds the model on the user's machine::

    adapter: ldm_unet
    path: /models/stableviton.ckpt       # handed to the factory as a local path (below)
    options:
      factory: "mypkg.load:build_model"  # module:attribute
      factory_kwargs: {config: configs/VITONHD.yaml}
      token_grid: [16, 12]               # (h_I, w_I) of the captured layers' context tokens
      drop_tokens: []                    # token indices removed after the softmax (CLS, ...)
      attention_filter: "warp_flow_blks\\.[0-2]\\..*attn2$"   # re.search on module names
      latent_factor: 8                   # image size / latent size (f=8 for SD's VAE)
      num_inference_steps: 50
      guidance_scale: 1.0
      dtype: float16                     # optional: float32 | float16 | bfloat16 | auto (below)

``path`` is found by :func:`~benchmark.api.sources.resolve_model_source` (a
local file or folder, relative paths from the repository root, or a hub id in
the local Hugging Face cache, ``owner/name/file.ckpt`` for a file inside it);
the factory gets that local path as a string.
``factory(path, device=..., **factory_kwargs)`` returns an object with

* ``model``: the ``nn.Module`` that holds the attention, e.g. the
  ``LatentDiffusion`` (module names then read ``model.diffusion_model....``);
* ``sample(batch, sampling, seeds, callback_on_step_end)`` -> (B, 3, H, W) in
  [0, 1]: ``batch`` is a collated batch (:func:`benchmark.api.sample.collate`),
  ``sampling`` a :class:`SamplingSettings`; sample i must start from
  ``benchmark.api.model.initial_noise(seeds, shape)[i]`` (results may not depend
  on batching); under classifier-free guidance the model batch must be
  [unconditional; conditional] (ldm's DDIM/PLMS samplers do this:
  ``torch.cat([unconditional_conditioning, c])``); ``callback_on_step_end(None,
  i, t, {})`` must be called after step i (wire it to the sampler's
  ``callback``);
* optionally ``latent_grid(image_size) -> (h, w)``, used instead of ``latent_factor``.
* optionally ``one_pass(batch, timesteps, seeds, callback_on_step_end)`` -> the
  number of model calls: one conditional call per timestep on the noised
  ground truth, as :meth:`benchmark.api.model.ModelAdapter.one_pass` states
  (noise from :func:`benchmark.api.model.one_pass_noise`, model batch B, the
  callback after each call). Without it the model has no one-pass attribution.

The option ``dtype`` can only be honoured by the factory, which builds the
model and runs its sampler: when the option is given it is resolved
(:func:`~benchmark.adapters.pipeline_adapter.model_dtype`) and passed as
``factory(path, device=..., dtype=torch.<dtype>, **factory_kwargs)``. A factory
without a ``dtype`` parameter, or one whose model comes back with floating
parameters in another dtype, is a ConfigError. Without the option the factory
gets no ``dtype`` and the model keeps the precision it is built in.

Which modules are captured: the ldm attention modules (``to_q``, ``to_k``,
``to_v``, ``to_out``, ``heads``; ``forward(x, context=None, mask=None)``) whose
dotted name matches ``attention_filter`` (default ``attn2$``: every
cross-attention of a plain ldm UNet). Their context must be the reference
tokens, and all captured layers must share one token grid:

* a plain ldm image-conditioned UNet (e.g. the original Paint-by-Example code):
  the default filter, ``token_grid: [1, 1]``;
* StableVITON: the zero cross-attention blocks ``diffusion_model.warp_flow_blks.*``,
  whose context is the spatial encoder's garment features at the block's own
  resolution. Each resolution has its own grid, so capture one resolution per
  run, e.g. the first three blocks (h/4, w/4 of the latent: [16, 12] at 512x384)
  as above. The UNet's own ``attn2`` (one CLIP token) does not fit that grid and
  must stay out of the filter. A wrong grid is an error naming the token count.
"""

from __future__ import annotations

import importlib
import inspect
import re
from dataclasses import dataclass, field
from typing import Callable, ContextManager

import torch

from benchmark.adapters.pipeline_adapter import model_dtype
from benchmark.api.model import (ModelAdapter, ModelSpec, OnePassUnsupported, SamplingSettings, no_output_space,
                                 one_pass_target)
from benchmark.api.sources import resolve_model_source
from benchmark.capture.ldm_capture import REQUIRED, capture_ldm, ldm_attention_modules
from benchmark.capture.session import CaptureSession
from benchmark.capture.tokens import TokenLayout
from benchmark.config import REPO_ROOT, ConfigError, build_section
from benchmark.registry import ADAPTERS


@dataclass(frozen=True)
class LdmUNetOptions:
    factory: str
    token_grid: tuple[int, ...]
    drop_tokens: tuple[int, ...] = ()
    attention_filter: str = r"(^|\.)attn2$"
    latent_factor: int = 8
    factory_kwargs: dict = field(default_factory=dict)
    num_inference_steps: int = 50
    guidance_scale: float = 1.0  # StableVITON's inference runs without CFG
    dtype: str | None = None  # None: the factory's own precision

    def __post_init__(self):
        if ":" not in self.factory:
            raise ConfigError(f"ldm_unet option factory must be 'module:callable', got {self.factory!r}")
        if len(self.token_grid) != 2 or min(self.token_grid) < 1:
            raise ConfigError(f"ldm_unet option token_grid must be [h, w] with h, w >= 1, got {list(self.token_grid)}")
        try:
            re.compile(self.attention_filter)
        except re.error as err:
            raise ConfigError(f"ldm_unet option attention_filter {self.attention_filter!r} is not a regex: {err}"
                              ) from err
        if self.latent_factor < 1:
            raise ConfigError("ldm_unet option latent_factor must be >= 1")


def _takes_dtype(factory: Callable) -> bool:
    """Whether ``factory`` accepts a ``dtype`` keyword (by name or through ``**kwargs``)."""
    try:
        params = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):  # no signature to read (some builtins): let the call decide
        return True
    return any(p.name == "dtype" or p.kind is inspect.Parameter.VAR_KEYWORD for p in params)


def import_factory(ref: str) -> Callable:
    """``'pkg.module:attr.sub'`` -> the object; errors name what was missing."""
    module_name, _, attr = ref.partition(":")
    try:
        obj = importlib.import_module(module_name)
    except ImportError as err:
        raise ConfigError(f"ldm_unet factory {ref!r}: cannot import module {module_name!r} ({err}); "
                          "is the model's code on PYTHONPATH?") from err
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ConfigError(f"ldm_unet factory {ref!r}: {module_name!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ConfigError(f"ldm_unet factory {ref!r} is not callable")
    return obj


@ADAPTERS.register("ldm_unet")
class LdmUNetAdapter(ModelAdapter):
    def __init__(self, spec: ModelSpec, device="cpu"):
        super().__init__(spec, device)
        where = f"model {spec.name!r} options"
        missing = [k for k in ("factory", "token_grid") if k not in spec.options]
        if missing:
            raise ConfigError(f"{where}: {missing[0]!r} is required (see benchmark/adapters/ldm_unet.py)")
        self.options = opts = build_section(LdmUNetOptions, spec.options, where)
        factory = import_factory(opts.factory)
        dtype = None if opts.dtype is None else model_dtype(opts.dtype, self.device, where)
        if dtype is not None and not _takes_dtype(factory):
            raise ConfigError(f"{where}: dtype {opts.dtype!r} cannot be honoured: factory {opts.factory!r} has no "
                              "dtype parameter; give it one that builds the model in that dtype, or leave dtype out")
        path = resolve_model_source(spec.path, REPO_ROOT, what="ldm_unet model (the factory's checkpoint)")
        extra = {} if dtype is None else {"dtype": dtype}
        self.wrapped = factory(str(path), device=self.device, **extra, **opts.factory_kwargs)
        model = getattr(self.wrapped, "model", None)
        if not isinstance(model, torch.nn.Module) or not callable(getattr(self.wrapped, "sample", None)):
            raise TypeError(f"ldm_unet factory {opts.factory!r} must return an object with .model (nn.Module) and "
                            f".sample(batch, sampling, seeds, callback_on_step_end); got {type(self.wrapped).__name__}")
        found = {p.dtype for p in model.parameters() if p.is_floating_point()}
        if dtype is not None and found - {dtype}:
            raise ConfigError(f"{where}: dtype {opts.dtype!r} ({dtype}) was passed to factory {opts.factory!r}, but "
                              f"its model has parameters in {sorted(map(str, found))}")
        model.eval().requires_grad_(False)
        self._pattern = re.compile(opts.attention_filter)
        if not ldm_attention_modules(model, self._matches):
            found = ldm_attention_modules(model, lambda n: True)
            raise ConfigError(f"{where}: attention_filter {opts.attention_filter!r} matches no attention module "
                              f"(modules with {'/'.join(REQUIRED)}: {found[:6]}{' ...' if len(found) > 6 else ''})")

    def _matches(self, name: str) -> bool:
        return self._pattern.search(name) is not None

    @property
    def token_layout(self) -> TokenLayout:
        return TokenLayout(grid=tuple(self.options.token_grid), drop=tuple(self.options.drop_tokens))

    def capture_module(self) -> torch.nn.Module:
        return self.wrapped.model

    def capture_layers(self) -> Callable[[str], bool]:
        return self._matches

    def attention_layers(self) -> list[str]:
        """Names of the modules that the capture will patch."""
        return ldm_attention_modules(self.wrapped.model, self._matches)

    def install_capture(self, session: CaptureSession, batch: dict, concept=None) -> ContextManager:
        """A forward patch of the CompVis-style attention modules ``attention_filter`` matches (:func:`capture_ldm`)."""
        if concept is not None:
            raise no_output_space(self)
        return capture_ldm(self.wrapped.model, session, self._matches)

    def captured_modules(self) -> list[torch.nn.Module]:
        return [self.wrapped.model.get_submodule(n) for n in self.attention_layers()]

    def latent_grid(self, image_size):
        if callable(getattr(self.wrapped, "latent_grid", None)):
            return tuple(self.wrapped.latent_grid(tuple(image_size)))
        f = self.options.latent_factor
        return image_size[0] // f, image_size[1] // f

    def default_sampling(self) -> SamplingSettings:
        return SamplingSettings(self.options.num_inference_steps, self.options.guidance_scale)

    @torch.no_grad()
    def generate(self, batch: dict, sampling: SamplingSettings, seeds: list[int],
                 callback_on_step_end: Callable | None = None) -> torch.Tensor:
        images = self.wrapped.sample(batch, sampling, list(seeds), callback_on_step_end)
        b = len(seeds)
        if images.ndim != 4 or images.shape[:2] != (b, 3):
            raise ValueError(f"ldm_unet factory's sample() must return (B={b}, 3, H, W), got {tuple(images.shape)}")
        return images.float().cpu()

    @torch.no_grad()
    def one_pass(self, batch: dict, timesteps: tuple[int, ...], seeds: list[int],
                 callback_on_step_end: Callable | None = None) -> int:
        """See :meth:`ModelAdapter.one_pass`: the factory's object runs it, if it offers ``one_pass``."""
        run = getattr(self.wrapped, "one_pass", None)
        if not callable(run):
            raise OnePassUnsupported(
                f"adapter 'ldm_unet' (model {self.spec.name!r}) cannot be called on a given noisy latent: the object "
                f"that factory {self.options.factory!r} returns ({type(self.wrapped).__name__}) has no "
                "one_pass(batch, timesteps, seeds, callback_on_step_end); the ldm sampler code is the user's, so "
                "only it knows how to encode the target and noise it (see benchmark/adapters/ldm_unet.py)")
        one_pass_target(batch, f"model {self.spec.name!r}")
        calls = run(batch, tuple(int(t) for t in timesteps), list(seeds), callback_on_step_end)
        if calls != len(timesteps):
            raise ValueError(f"ldm_unet factory's one_pass() must return the number of model calls, "
                             f"{len(timesteps)} here; got {calls!r}")
        return calls
