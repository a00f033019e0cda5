"""Reference cross-attention capture (I2AM) for diffusers and CompVis-style attention."""

from benchmark.capture.accumulator import I2AMAccumulator, MAP_LEVELS
from benchmark.capture.attention import attention_with_capture
from benchmark.capture.diffusers_capture import I2AMAttnProcessor, capture_diffusers, cross_attention_layers
from benchmark.capture.ldm_capture import capture_ldm
from benchmark.capture.tokens import TokenLayout

__all__ = [
    "I2AMAccumulator", "I2AMAttnProcessor", "MAP_LEVELS", "TokenLayout", "attention_with_capture",
    "capture_diffusers", "capture_ldm", "cross_attention_layers",
]
