"""ConceptAttention-style output-space maps (joint-attention transformers), stored as ``cg/concept`` / ``cr/concept``."""

from __future__ import annotations

from benchmark.methods.base import Method, MethodContext
from benchmark.results.sample_maps import SampleMaps


class OutputSpace(Method):
    def maps(self, sample: SampleMaps):
        return sample.get("cg/concept"), sample.get("cr/concept")


def output_space(ctx: MethodContext) -> dict[str, Method]:
    """Only for models whose capture stored output-space maps."""
    return {ctx.shown(): OutputSpace()} if "cg/concept" in ctx.calibration[0].arrays else {}
