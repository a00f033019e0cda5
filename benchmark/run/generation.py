"""Generate a batch while capturing the reference cross-attention, and turn the capture into maps."""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, ContextManager

import torch
import torch.nn.functional as F

from benchmark.api.model import ModelAdapter, SamplingSettings
from benchmark.capture import I2AMAccumulator
from benchmark.capture.session import CaptureSession
from benchmark.defaults import MAP_LEVELS, TIME_GROUPS

if TYPE_CHECKING:  # imports diffusers' FLUX code; only joint-attention adapters make one
    from benchmark.capture.joint_capture import OutputSpaceAccumulator


@dataclass(frozen=True)
class CaptureSettings:
    levels: tuple[str, ...] = MAP_LEVELS
    time_groups: int = TIME_GROUPS
    enabled: bool = True


def sample_seed(seed: int, sample_id: str) -> int:
    """A per-sample noise seed that does not depend on batching, sharding or worker."""
    return zlib.crc32(f"{seed}:{sample_id}".encode()) & 0x7FFFFFFF


def generate_with_capture(adapter: ModelAdapter, batch: dict, sampling: SamplingSettings, seed: int,
                          capture: CaptureSettings = CaptureSettings(),
                          concept: OutputSpaceAccumulator | None = None) -> tuple[torch.Tensor, I2AMAccumulator | None]:
    """Generate (B, 3, H, W) images in [0, 1] and, if enabled, the filled accumulator.

    The region mask of eq. (17) is the batch's ``region_mask`` area-resized to
    the latent grid, when the task has one. ``concept`` (joint-attention
    adapters only) is filled with the ConceptAttention-style output-space
    volume in the same pass.
    """
    seeds = [sample_seed(seed, sid) for sid in batch["sample_id"]]
    if not capture.enabled:
        return adapter.generate(batch, sampling, seeds), None
    steps = sampling.num_inference_steps
    acc, session, installer = prepare_capture(adapter, batch, steps, min(capture.time_groups, steps),
                                              capture.levels, concept)
    with installer:
        images = adapter.generate(batch, sampling, seeds, callback_on_step_end=session.on_step_end)
    return images, acc


def prepare_capture(adapter: ModelAdapter, batch: dict, num_steps: int, num_groups: int,
                    levels: tuple[str, ...], concept: OutputSpaceAccumulator | None = None
                    ) -> tuple[I2AMAccumulator, CaptureSession, ContextManager]:
    """The empty accumulator of a run of ``num_steps`` model steps over ``batch``, its session, and the
    adapter's capture installer (:meth:`~benchmark.api.model.ModelAdapter.install_capture`: a context manager,
    not yet entered; a ValueError when ``concept`` is given to an adapter without output-space maps).

    The accumulator sits on the latent grid of the batch's image size, with
    ``num_groups`` time groups and the batch's ``region_mask`` area-resized to
    that grid as the eq. (17) region. Steps advance through
    ``session.on_step_end``, passed to the model loop as ``callback_on_step_end``.
    """
    size = tuple(next(iter(batch["conditions"].values())).shape[-2:])
    latent = adapter.latent_grid(size)
    region = batch.get("region_mask")
    if region is not None:
        region = F.interpolate(region.float(), size=latent, mode="area").to(adapter.device)
    acc = I2AMAccumulator(latent, adapter.token_layout, num_steps, num_groups, levels, region)
    session = CaptureSession(acc, n_samples=len(batch["sample_id"]))
    return acc, session, adapter.install_capture(session, batch, concept)
