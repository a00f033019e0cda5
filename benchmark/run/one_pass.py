"""One-pass attribution: capture I2AM from a few conditional model calls on the noised ground truth.

ConceptAttention's protocol (seed 003) reads attribution from the model run on
a noised REAL image rather than from a whole generation. Here the task's
ground-truth target is encoded to the model's latent, noised at each chosen
timestep t (of the scheduler's 1000 training steps; noise drawn per sample from
its seed and t), and the model runs once per t, conditional only, with the
conditioning it uses in generation (:meth:`benchmark.api.model.ModelAdapter.one_pass`).
The calls go through the same capture processors into the same
:class:`~benchmark.capture.I2AMAccumulator` as generation-time capture
(:func:`benchmark.run.generation.generate_with_capture`), so the same maps come out
(ULAM, TLAM with one time group per timestep, HLAM, LLAM, SRAM; generated and
reference side; eq. (17) restriction) and
:func:`benchmark.results.sample_maps.split_accumulator` stores them as
generation's. A joint-attention model fills the ConceptAttention-style
:class:`~benchmark.capture.joint_capture.OutputSpaceAccumulator` from the same calls.

Cost: ``len(timesteps)`` model calls per sample, against
``num_inference_steps`` (x2 under classifier-free guidance) for generation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from benchmark.api.model import ModelAdapter, one_pass_target
from benchmark.capture import I2AMAccumulator
from benchmark.run.generation import CaptureSettings, prepare_capture, sample_seed

if TYPE_CHECKING:  # imports diffusers' FLUX code; only joint-attention adapters make one
    from benchmark.capture.joint_capture import OutputSpaceAccumulator
from benchmark.defaults import ONE_PASS_TIMESTEPS, one_pass_timesteps


@dataclass(frozen=True)
class OnePassSettings:
    """The timesteps of the one-pass protocol, out of the scheduler's training steps (1000 for every model here).

    The calls run from the noisiest timestep down (:attr:`schedule`), as
    sampling does, so TLAM group k is ``schedule[k]`` and group 0 is the
    noisiest in both protocols.
    """

    timesteps: tuple[int, ...] = ONE_PASS_TIMESTEPS

    def __post_init__(self):
        # The range is the model's scheduler's, checked when it is called; a list becomes the hashable tuple.
        object.__setattr__(self, "timesteps", one_pass_timesteps(self.timesteps))

    @property
    def schedule(self) -> tuple[int, ...]:
        """The timesteps in call order, noisiest first."""
        return tuple(sorted(self.timesteps, reverse=True))

    @property
    def label(self) -> str:
        """``one-pass t=250,500,750``: the protocol's name in tables."""
        return "one-pass t=" + ",".join(str(t) for t in sorted(self.timesteps))


def one_pass_with_capture(adapter: ModelAdapter, batch: dict, settings: OnePassSettings = OnePassSettings(),
                          seed: int = 0, capture: CaptureSettings = CaptureSettings(),
                          concept: OutputSpaceAccumulator | None = None) -> tuple[I2AMAccumulator, int]:
    """The filled accumulator of one-pass attribution over ``batch``, and the number of model calls made.

    ``batch`` is collated (:func:`benchmark.api.sample.collate`) and must carry
    ``target`` (B, 3, H, W) in [0, 1]. Sample i's noise comes from
    ``sample_seed(seed, sample_id)`` (as generation's does) and the timestep,
    so its maps do not depend on batching. The accumulator has one step and one
    time group per timestep (``capture.time_groups`` does not apply);
    ``capture.levels`` chooses the maps. ``concept`` (joint-attention adapters
    only) is filled with the output-space volume by the same calls. The model
    is called ``len(settings.timesteps)`` times, each on the B samples.

    Raises :class:`~benchmark.api.model.OnePassUnsupported` for an adapter whose
    model cannot be called on a given noisy latent, ``ValueError`` for a batch
    without target.
    """
    if not capture.enabled:
        raise ValueError("one-pass attribution is a capture; CaptureSettings(enabled=False) leaves nothing to run")
    one_pass_target(batch, f"model {adapter.spec.name!r}")
    steps = settings.schedule
    seeds = [sample_seed(seed, sid) for sid in batch["sample_id"]]
    acc, session, installer = prepare_capture(adapter, batch, len(steps), len(steps), capture.levels, concept)
    with installer:
        calls = adapter.one_pass(batch, steps, seeds, callback_on_step_end=session.on_step_end)
    if session.step != len(steps):
        # Without the callback every call would be filed under step 0 and TLAM would be wrong, silently.
        raise RuntimeError(f"{type(adapter).__name__}.one_pass advanced the capture to step {session.step}, not "
                           f"{len(steps)}: it must call callback_on_step_end after each of its model calls")
    return acc, calls
