"""What a run config says about a model and its sampling: plain data, importable without torch."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class ModelSpec:
    """A model as a run config names it: ``path`` is a local folder or a hub id."""

    name: str
    adapter: str
    path: str
    options: dict = field(default_factory=dict)


@dataclass(frozen=True)
class SamplingSettings:
    num_inference_steps: int = 50
    guidance_scale: float = 5.0
    eta: float = 0.0
