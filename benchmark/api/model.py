"""The model-adapter contract.

An adapter is one small file. It says how its model loads, which attention
layers carry the reference and through which capture path, how the
reference tokens map to a grid, and how it generates a batch. Adapters never
see dataset paths: they get collated samples (:func:`benchmark.api.sample.collate`).
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from benchmark.capture.tokens import TokenLayout


@dataclass(frozen=True)
class ModelSpec:
    """A model as a run config names it."""

    name: str
    adapter: str
    path: str
    options: dict = field(default_factory=dict)


@dataclass(frozen=True)
class SamplingSettings:
    num_inference_steps: int = 50
    guidance_scale: float = 5.0
    eta: float = 0.0


class ModelAdapter(ABC):
    """Contract every model adapter fulfils.

    * ``capture_path``: ``"diffusers"`` (processors on ``capture_module()``),
      ``"ldm"`` (forward patch of to_q/to_k/heads modules) or ``"joint"``
      (joint-attention transformers: reference tokens in the same sequence as
      the generated ones; the adapter also defines ``joint_layout(batch)``).
    * ``capture_layers()``: processor keys (diffusers) or a module-name filter (ldm).
    * ``token_layout``: grid of the reference tokens and the tokens dropped after softmax.
    * ``latent_grid(image_size)``: (h, w) of the generated latent for an (H, W) image.
    * ``generate(batch, sampling, seeds, callback_on_step_end)``: (B, 3, H, W) in [0, 1];
      sample i starts from noise drawn with ``seeds[i]`` (so results do not depend on
      how samples are batched or sharded); under CFG the UNet batch is [unconditional; conditional].
    """

    capture_path: str = "diffusers"

    def __init__(self, spec: ModelSpec, device: torch.device | str = "cpu"):
        self.spec, self.device = spec, torch.device(device)

    @property
    @abstractmethod
    def token_layout(self) -> TokenLayout: ...

    @abstractmethod
    def capture_module(self) -> torch.nn.Module: ...

    def capture_layers(self) -> list[str] | Callable[[str], bool] | None:
        return None  # every cross-attention layer

    def joint_layout(self, batch: dict):
        """Joint-attention adapters: the :class:`~benchmark.capture.joint_capture.JointLayout` of ``batch``."""
        raise NotImplementedError(f"{type(self).__name__} has no joint-attention layout")

    @abstractmethod
    def latent_grid(self, image_size: tuple[int, int]) -> tuple[int, int]: ...

    @abstractmethod
    def default_sampling(self) -> SamplingSettings: ...

    @abstractmethod
    def generate(self, batch: dict, sampling: SamplingSettings, seeds: list[int],
                 callback_on_step_end: Callable | None = None) -> torch.Tensor: ...

    def identity(self) -> dict:
        """Name, adapter and a hash of the weights: part of every result key."""
        return {"name": self.spec.name, "adapter": self.spec.adapter, "weights": weights_hash(self.capture_module())}


def initial_noise(seeds: list[int], shape: tuple[int, ...]) -> torch.Tensor:
    """(B, *shape) standard normal noise, row i drawn on the CPU from ``seeds[i]`` (device independent)."""
    return torch.stack([torch.randn(shape, generator=torch.Generator().manual_seed(int(s))) for s in seeds])


def weights_hash(module: torch.nn.Module) -> str:
    """SHA-256 (16 hex) over parameter names, shapes and bytes."""
    h = hashlib.sha256()
    for name, t in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def resolve_model_path(path: str, base: Path | None = None) -> Path | str:
    """A local folder (relative to ``base`` if given) or, failing that, the string as a hub id."""
    p = Path(path)
    if not p.is_absolute() and base is not None and (base / p).exists():
        return base / p
    return p if p.exists() else path
