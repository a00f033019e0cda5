"""Capture for joint-attention transformers (FLUX-style): reference tokens share the sequence with the generated ones.

Mixed into an adapter before :class:`~benchmark.api.model.ModelAdapter`. The adapter defines
``joint_layout(batch)``, where text, generated and reference tokens sit in the sequence its transformer sees;
this mixin installs :class:`~benchmark.capture.joint_capture.FluxI2AMProcessor` on every attention layer, which
reads I2AM from the generated x reference block and, in the same pass, fills the ConceptAttention-style
output-space accumulator (:mod:`benchmark.capture.joint_capture`).
"""

from __future__ import annotations

from typing import ContextManager

from benchmark.capture.joint_capture import JointLayout, OutputSpaceAccumulator, capture_joint
from benchmark.capture.session import CaptureSession


class JointAttentionCapture:
    """Joint-attention capture for a :class:`~benchmark.api.model.ModelAdapter`: I2AM and output-space maps."""

    def joint_layout(self, batch: dict) -> JointLayout:
        """The :class:`~benchmark.capture.joint_capture.JointLayout` of the sequence ``batch`` runs as."""
        raise NotImplementedError(f"{type(self).__name__} must define joint_layout(batch)")

    def concept_accumulator(self, steps: int) -> OutputSpaceAccumulator:
        return OutputSpaceAccumulator(steps)

    def install_capture(self, session: CaptureSession, batch: dict,
                        concept: OutputSpaceAccumulator | None = None) -> ContextManager:
        return capture_joint(self.capture_module(), session, self.joint_layout(batch), concept, self.capture_layers())

    def captured_modules(self) -> list:
        """The transformer's attention modules (every processor ``capture_joint`` replaces)."""
        module = self.capture_module()
        layers = self.capture_layers()
        return [module.get_submodule(k.removesuffix(".processor"))
                for k in (list(module.attn_processors) if layers is None else layers)]
