"""State shared by the installed capture processors during one sampling run."""

from __future__ import annotations

import torch

from benchmark.capture.accumulator import I2AMAccumulator


class CaptureSession:
    """Routes attention calls into an accumulator, conditional rows only.

    ``n_samples`` is the number of samples in the batch. A call whose batch is
    ``2 * n_samples`` is a classifier-free-guidance call laid out as
    [unconditional; conditional] (the diffusers convention); only the second
    half is captured. A call with ``n_samples`` rows is all conditional.
    The step index comes from the sampling loop via :meth:`on_step_end`
    (pass it as ``callback_on_step_end``), never from counting calls.
    """

    def __init__(self, accumulator: I2AMAccumulator, n_samples: int, cond_half: str = "second"):
        if cond_half not in ("first", "second"):
            raise ValueError("cond_half must be 'first' or 'second'")
        self.accumulator, self.n_samples, self.cond_half = accumulator, n_samples, cond_half
        self.step = 0
        self.enabled = True

    def on_step_end(self, pipe, i: int, t, callback_kwargs: dict) -> dict:
        """diffusers ``callback_on_step_end``: the next calls belong to step i + 1."""
        self.step = i + 1
        return callback_kwargs

    def conditional_rows(self, batch: int) -> slice:
        if batch == self.n_samples:
            return slice(0, batch)
        if batch == 2 * self.n_samples:
            return slice(self.n_samples, batch) if self.cond_half == "second" else slice(0, self.n_samples)
        raise ValueError(f"attention batch {batch} is neither {self.n_samples} samples nor 2x that (CFG)")

    def capture_rows(self, batch: int) -> slice | None:
        """Rows of an attention call with ``batch`` rows to capture now; None while disabled or past the last step."""
        if not self.enabled or self.step >= self.accumulator.num_steps:
            return None
        return self.conditional_rows(batch)

    def sink(self, layer: str) -> "LayerSink":
        return LayerSink(self, layer)


class LayerSink:
    """One layer's :class:`~benchmark.capture.attention.CaptureSink`: the session's rows, its accumulator."""

    __slots__ = ("session", "layer")

    def __init__(self, session: CaptureSession, layer: str):
        self.session, self.layer = session, layer

    def rows(self, batch: int) -> slice | None:
        return self.session.capture_rows(batch)

    def __call__(self, q: torch.Tensor, k: torch.Tensor, scale: float, additive_mask: torch.Tensor | None,
                 lse: torch.Tensor | None) -> None:
        """The captured rows of one call; see :meth:`I2AMAccumulator.add_attention`."""
        self.session.accumulator.add_attention(self.layer, q, k, scale, self.session.step, additive_mask, lse)
