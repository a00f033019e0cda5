"""The model-adapter contract.

An adapter is one small file. It says how its model loads, which attention
layers carry the reference and how its capture is installed on them, how the
reference tokens map to a grid, and how it generates a batch. Adapters never
see dataset paths: they get collated samples (:func:`benchmark.api.sample.collate`).
"""

from __future__ import annotations

import hashlib
import zlib
from abc import ABC, abstractmethod
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Callable, ContextManager

import torch

from benchmark.api.spec import ModelSpec, SamplingSettings  # noqa: F401  (part of the contract)
from benchmark.capture.diffusers_capture import capture_diffusers, cross_attention_layers
from benchmark.capture.session import CaptureSession
from benchmark.capture.tokens import TokenLayout

if TYPE_CHECKING:  # joint_capture imports diffusers' FLUX code; only joint-attention adapters need it
    from benchmark.capture.joint_capture import OutputSpaceAccumulator


class ModelAdapter(ABC):
    """Contract every model adapter fulfils.

    * ``install_capture(session, batch, concept)``: the context manager that installs this model's attention
      capture and restores the originals on exit. The default puts diffusers processors
      (:func:`~benchmark.capture.capture_diffusers`) on ``capture_module()``'s ``capture_layers()``; an adapter
      whose model attends differently overrides it (``ldm_unet``: a forward patch of CompVis-style attention;
      joint-attention transformers: :class:`benchmark.adapters.joint_attention.JointAttentionCapture`).
    * ``concept_accumulator(steps)``: the ConceptAttention-style output-space accumulator its capture fills, or
      None (the default) where the model has no output space to read it from.
    * ``capture_layers()``: processor keys (diffusers) or a module-name filter (ldm); None: every cross-attention layer.
    * ``captured_modules()``: the attention modules the capture replaces (timed by ``benchmark perf``).
    * ``token_layout``: grid of the reference tokens and the tokens dropped after softmax.
    * ``latent_grid(image_size)``: (h, w) of the generated latent for an (H, W) image.
    * ``generate(batch, sampling, seeds, callback_on_step_end)``: (B, 3, H, W) in [0, 1];
      sample i starts from noise drawn with ``seeds[i]`` (so results do not depend on
      how samples are batched or sharded); under CFG the UNet batch is [unconditional; conditional].
    * ``one_pass(batch, timesteps, seeds, callback_on_step_end)``: one conditional model call
      per timestep on the noised ground truth (one-pass attribution); the default raises
      :class:`OnePassUnsupported`.
    """

    identity_parts: tuple[str, ...] = ()  # modules of self.pipe hashed after capture_module() in identity()
    _loaded_weights: str | None = None  # identity()'s digest, once computed

    def __init__(self, spec: ModelSpec, device: torch.device | str = "cpu"):
        self.spec, self.device = spec, torch.device(device)

    @property
    @abstractmethod
    def token_layout(self) -> TokenLayout: ...

    @abstractmethod
    def capture_module(self) -> torch.nn.Module: ...

    def capture_layers(self) -> list[str] | Callable[[str], bool] | None:
        return None  # every cross-attention layer

    def install_capture(self, session: CaptureSession, batch: dict,
                        concept: OutputSpaceAccumulator | None = None) -> ContextManager:
        """The capture of ``batch``'s model calls into ``session`` (a context manager, not yet entered, that
        restores the original attention on exit); ``concept`` is filled in the same pass by adapters whose
        :meth:`concept_accumulator` is not None.

        Default: :class:`~benchmark.capture.I2AMAttnProcessor` on the ``capture_layers()`` of ``capture_module()``.
        """
        if concept is not None:
            raise no_output_space(self)
        return capture_diffusers(self.capture_module(), session, self.capture_layers())

    def captured_modules(self) -> list[torch.nn.Module]:
        """The attention modules whose processor :meth:`install_capture` replaces (``benchmark perf`` times them)."""
        module = self.capture_module()
        layers = self.capture_layers()
        return [module.get_submodule(k.removesuffix(".processor"))
                for k in (cross_attention_layers(module) if layers is None else layers)]

    def concept_accumulator(self, steps: int) -> OutputSpaceAccumulator | None:
        """The ConceptAttention-style output-space accumulator of a run of ``steps`` model calls, filled in the same
        pass by adapters whose capture reads it (joint attention); None for the others."""
        return None

    @abstractmethod
    def latent_grid(self, image_size: tuple[int, int]) -> tuple[int, int]: ...

    @abstractmethod
    def default_sampling(self) -> SamplingSettings: ...

    @abstractmethod
    def generate(self, batch: dict, sampling: SamplingSettings, seeds: list[int],
                 callback_on_step_end: Callable | None = None) -> torch.Tensor: ...

    def identity(self) -> dict:
        """Name, adapter and a hash of the weights as loaded (after options such as ``random_init``): recorded in
        every job's result beside the key's hash of the model files (``docs/store.md``).

        The weights are hashed on the first call and the digest is kept on this object: a loaded model's
        weights do not change, and a worker serves many jobs from one load."""
        if self._loaded_weights is None:
            weights = weights_hash(self.capture_module())
            if self.identity_parts:
                weights += "-" + "".join(weights_hash(getattr(self.pipe, m))[:8] for m in self.identity_parts)
            self._loaded_weights = weights
        return {"name": self.spec.name, "adapter": self.spec.adapter, "weights": self._loaded_weights}

    def one_pass(self, batch: dict, timesteps: tuple[int, ...], seeds: list[int],
                 callback_on_step_end: Callable | None = None) -> int:
        """One conditional model call per timestep on the noised ground truth; returns the number of calls.

        ``batch["target"]`` (B, 3, H, W) in [0, 1] is encoded to the model's
        latent x_0; for ``timesteps[k]`` (of the scheduler's training steps,
        usually 1000) it is noised with ``one_pass_noise(seeds, timesteps,
        latent_shape)[k]`` as in training, and the model runs ONCE on the B
        noisy latents with exactly the conditioning of :meth:`generate`
        (reference tokens, masked image, mask, ...) and no unconditional
        branch (the model batch is B, not 2B). ``callback_on_step_end(pipe, k,
        t, {})`` follows call k, as it follows step k in generation, so a
        capture session files call k under step k. The model's output is
        discarded: the attention the calls run through is the product.

        Adapters whose model cannot be called on a given noisy latent keep this
        default, which raises :class:`OnePassUnsupported`.
        """
        raise OnePassUnsupported(f"adapter {self.spec.adapter!r} (model {self.spec.name!r}) cannot be called on a "
                                 f"given noisy latent: {type(self).__name__} does not implement one_pass")


def no_output_space(adapter: ModelAdapter) -> ValueError:
    """The error for output-space (ConceptAttention-style) maps asked of a model that attends to the reference
    only through cross-attention, so has no output space to read them from."""
    return ValueError(f"output-space (ConceptAttention) maps need a joint-attention model; model "
                      f"{adapter.spec.name!r} ({type(adapter).__name__}) has cross-attention to the reference only")


def initial_noise(seeds: list[int], shape: tuple[int, ...]) -> torch.Tensor:
    """(B, *shape) standard normal noise, row i drawn on the CPU from ``seeds[i]`` (device independent)."""
    return torch.stack([torch.randn(shape, generator=torch.Generator().manual_seed(int(s))) for s in seeds])


HASH_CHUNK_BYTES = 64 << 20  # bytes of one tensor brought to the CPU at a time
HASH_THREADS = 8


def weights_hash(module: torch.nn.Module) -> str:
    """SHA-256 (16 hex) over each state-dict entry's name, dtype, shape and raw bytes in its own dtype.

    Each tensor reaches the CPU in chunks of at most :data:`HASH_CHUNK_BYTES` (never a float32 copy of
    the model) and tensors are hashed on a few threads (hashlib and the copies release the GIL); the
    digest is over the per-tensor digests in name order. Digests made before this form (float32 upcasts
    of every tensor, one running hash) differ for the same weights.
    """
    entries = sorted(module.state_dict().items())
    with ThreadPoolExecutor(max_workers=min(HASH_THREADS, max(1, len(entries)))) as pool:
        digests = list(pool.map(lambda kv: _tensor_digest(kv[1]), entries))
    h = hashlib.sha256()
    for (name, t), d in zip(entries, digests):
        h.update(f"{name}:{str(t.dtype).removeprefix('torch.')}:{tuple(t.shape)}:".encode())
        h.update(d)
    return h.hexdigest()[:16]


def _tensor_digest(t: torch.Tensor) -> bytes:
    """SHA-256 of ``t``'s elements in row-major order, as stored (its own dtype, any device)."""
    flat = t.detach().reshape(-1)  # a view for the contiguous tensors a state dict holds
    step = max(1, HASH_CHUNK_BYTES // t.element_size())
    h = hashlib.sha256()
    for start in range(0, flat.numel(), step):
        h.update(flat[start : start + step].to("cpu").contiguous().view(torch.uint8).numpy())
    return h.digest()


class OnePassUnsupported(NotImplementedError):
    """The adapter's model cannot be run on a given noisy latent, so it has no one-pass attribution."""


def one_pass_target(batch: dict, who: str) -> torch.Tensor:
    """The batch's ground truth (B, 3, H, W) in [0, 1]; an error naming the samples when the protocol has none."""
    target = batch.get("target")
    if target is None:
        raise ValueError(f"{who}: one-pass attribution noises the ground-truth target, but batch "
                         f"{list(batch.get('sample_id', []))} has none (an unpaired protocol?); run it on a "
                         "paired split or use generation-time capture")
    if target.ndim != 4 or target.shape[1] != 3:
        raise ValueError(f"{who}: target must be (B, 3, H, W), got {tuple(target.shape)}")
    return target


def check_timesteps(timesteps, num_train_timesteps: int, who: str) -> tuple[int, ...]:
    """``timesteps`` as ints, each in [0, num_train_timesteps); an error naming the bad one otherwise."""
    out = tuple(int(t) for t in timesteps)
    if not out:
        raise ValueError(f"{who}: one-pass needs at least one timestep")
    bad = [t for t in out if not 0 <= t < num_train_timesteps]
    if bad:
        raise ValueError(f"{who}: timestep {bad[0]} is outside the scheduler's training range "
                         f"0..{num_train_timesteps - 1}")
    return out


def one_pass_noise(seeds: list[int], timesteps, shape: tuple[int, ...]) -> torch.Tensor:
    """(T, B, *shape) standard normal noise; entry [k, i] drawn on the CPU from (``seeds[i]``, ``timesteps[k]``).

    Each draw depends only on its sample's seed and its own timestep: not on the
    batch, the sample's position in it, the device, or the other timesteps chosen.
    """
    def draw(seed: int, t: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(zlib.crc32(f"{int(seed)}:one-pass:{int(t)}".encode()) & 0x7FFFFFFF)
        return torch.randn(shape, generator=g)

    return torch.stack([torch.stack([draw(s, t) for s in seeds]) for t in timesteps])
