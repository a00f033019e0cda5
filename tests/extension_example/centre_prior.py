"""An attribution method: a fixed Gaussian bump at the image centre, a baseline that reads no attention at all."""

import torch

from benchmark.methods.base import Method, MethodContext
from benchmark.results.sample_maps import SampleMaps


def bump(h: int, w: int) -> torch.Tensor:
    """(h, w) in (0, 1], 1 at the centre."""
    y, x = torch.linspace(-1, 1, h)[:, None], torch.linspace(-1, 1, w)[None, :]
    return torch.exp(-(x**2 + y**2) / 0.5)


class CentrePrior(Method):
    def maps(self, sample: SampleMaps):
        ref = sample.get("mask/reference")
        return bump(*sample.get("mask/region").shape), (None if ref is None else bump(*ref.shape))


def centre_prior(ctx: MethodContext) -> dict[str, Method]:
    return {ctx.shown(): CentrePrior()}
