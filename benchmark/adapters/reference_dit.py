"""The mini I2I diffusion transformer: FLUX architecture, reference tokens in the joint sequence.

Folder layout (what :func:`benchmark.training.train.train_dit` exports)::

    <path>/transformer/     FluxTransformer2DModel
    <path>/i2i_config.json  conditions, reference size, sampling defaults
    <vae>/                  AutoencoderKL (option ``vae``; default <path>/vae)

``path`` and the option ``vae`` are found by :func:`~benchmark.adapters.pipeline_adapter.model_and_vae`,
as in :mod:`benchmark.adapters.reference_unet`.

Options: ``vae`` (folder), ``random_init`` (a seed: a freshly initialised
transformer of the same config, the attribution-method baseline), ``dtype``
(float32 | float16 | bfloat16 | auto, default float32: transformer and VAE;
:func:`~benchmark.adapters.pipeline_adapter.model_dtype`).
Capture (:class:`~benchmark.adapters.joint_attention.JointAttentionCapture`):
I2AM reads the generated x reference block of every attention layer (dual-
and single-stream blocks); output-space (ConceptAttention-style) maps come
from the same pass, in generation and in one-pass attribution (where t / 1000
is the flow time sigma).
"""

from __future__ import annotations

from diffusers import FlowMatchEulerDiscreteScheduler, FluxTransformer2DModel

from benchmark.adapters.joint_attention import JointAttentionCapture
from benchmark.adapters.pipeline_adapter import ReferencePipelineAdapter
from benchmark.api.model import ModelSpec
from benchmark.api.sample import condition_size
from benchmark.capture.joint_capture import JointLayout
from benchmark.capture.tokens import TokenLayout
from benchmark.pipelines.reference_dit import ReferenceDiTPipeline, reference_size
from benchmark.registry import ADAPTERS


@ADAPTERS.register("reference_dit")
class ReferenceDiTAdapter(JointAttentionCapture, ReferencePipelineAdapter):
    identity_parts = ("vae",)
    sampler_options = ("num_inference_steps", "guidance_scale")  # the Euler flow sampler has no eta

    def __init__(self, spec: ModelSpec, device="cpu"):
        super().__init__(spec, device)
        self.load(ReferenceDiTPipeline, "a folder with transformer/, i2i_config.json",
                  FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=1.0),
                  {"transformer": (FluxTransformer2DModel, "transformer")})

    @property
    def token_layout(self) -> TokenLayout:
        return TokenLayout(grid=self.pipe.latent_size(reference_size(self.i2i)))

    def joint_layout(self, batch: dict) -> JointLayout:
        return self.pipe.joint_layout(condition_size(batch["conditions"]))
