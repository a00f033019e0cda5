"""The uniform map: the same value everywhere, the baseline every attribution method must beat."""

from __future__ import annotations

from benchmark.methods.base import Method, MethodContext, constant_map_scores, has_mask
from benchmark.results.sample_maps import SampleMaps


class Uniform(Method):
    def maps(self, sample: SampleMaps):
        return None, None  # nothing to read or draw: side_scores scores the constant map

    def side_scores(self, raw, mask, side, lam, thr) -> dict[str, float]:
        return constant_map_scores(mask, side, lam) if has_mask(mask) else {}


def uniform(ctx: MethodContext) -> dict[str, Method]:
    """None for a random-init copy (itself a baseline)."""
    return {} if ctx.random_init else {ctx.shown(): Uniform()}
