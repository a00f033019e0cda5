"""I2AM read from the stored per-(layer, head) maps: all heads, the top-k heads, and the one-pass protocol."""

from __future__ import annotations

import numpy as np
import torch

from benchmark.methods.base import Method, MethodContext
from benchmark.methods.head_selection import aggregate_heads, head_relevance, k_from
from benchmark.results.sample_maps import SampleMaps
from benchmark.scoring.terms import side_map

RANKINGS = ("supervised", "label_free")  # head relevance scores (benchmark.methods.head_selection)


class Heads(Method):
    """The mean of the stored ``layer_heads`` maps over every (layer, head) pair, or over ``heads`` (k, 2)."""

    def __init__(self, heads: np.ndarray | None = None):
        self.heads = heads

    def maps(self, sample: SampleMaps) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        lh_g, lh_r = sample.get("g/layer_heads"), side_map(sample, "r", "layer_heads")
        if self.heads is None:
            return lh_g.mean((0, 1)), (None if lh_r is None else lh_r.mean((0, 1)))
        return aggregate_heads(lh_g, self.heads), (None if lh_r is None else aggregate_heads(lh_r, self.heads))


class OtherCapture(Method):
    """All heads, read from the same sample's maps of another capture of the model (``sample id -> folder``)."""

    def __init__(self, folders):
        self.folders = folders

    def maps(self, sample: SampleMaps):
        folder = self.folders.get(sample.meta["sample_id"])
        return None if folder is None else Heads().maps(SampleMaps.load(folder / "maps.npz"))


def all_heads(ctx: MethodContext) -> dict[str, Method]:
    return {ctx.shown(): Heads()}


def top_k_heads(ctx: MethodContext) -> dict[str, Method]:
    """The top-k heads by each relevance score, ranked on the calibration half (the generated side's ranking serves
    both sides); none for a random-init copy, whose heads have nothing to rank."""
    if ctx.random_init:
        return {}
    lh0 = ctx.calibration[0].get("g/layer_heads")
    k = k_from(ctx.top_k, lh0.shape[0] * lh0.shape[1])
    out = {}
    for score in RANKINGS:
        ranking = head_relevance([m.get("g/layer_heads") for m in ctx.calibration],
                                 [m.get("mask/region") for m in ctx.calibration], score, ctx.lam, ctx.thr)
        out[f"{ctx.label.replace('top-k', f'top-{k}')} ({score.replace('_', '-')})"] = Heads(ranking.top(k))
    return out


def one_pass(ctx: MethodContext) -> dict[str, Method]:
    """All heads of each other capture of the model (one-pass attribution), under that capture's label."""
    return {label: OtherCapture(folders) for label, folders in ctx.other_captures.items()}
