"""Selective aggregation of attention heads (seed 002), for I2I generated-side maps.

Each (layer, head) map M_{l,n} (latent grid, time-integrated, from the stored
``g/layer_heads``) is scored on a CALIBRATION split, then only the top-k heads
are averaged on a disjoint EVALUATION split.

Relevance scores:
* ``supervised``: mean IMACS_g of the head's own map against the inpainting
  mask over the calibration samples (needs masks);
* ``label_free``: mean Pearson agreement of the head's map with the all-head
  map of the same sample (no masks): heads that carry the consensus rank high.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from benchmark.defaults import DEFAULT_LAMBDA, DEFAULT_THRESHOLD

from benchmark.scoring.imacs import imacs

SCORES = ("supervised", "label_free")


@dataclass(frozen=True)
class HeadRanking:
    score: str
    values: np.ndarray  # (L, N) mean relevance; NaN where undefined on every sample
    order: np.ndarray  # (L*N, 2) (layer, head) pairs, most relevant first

    def top(self, k: int) -> np.ndarray:
        if not 1 <= k <= len(self.order):
            raise ValueError(f"k must be in 1..{len(self.order)}, got {k}")
        return self.order[:k]


def head_relevance(layer_heads: list[torch.Tensor], masks: list[torch.Tensor] | None, score: str,
                   lam: float = DEFAULT_LAMBDA, threshold: float = DEFAULT_THRESHOLD) -> HeadRanking:
    """Rank heads from calibration samples.

    layer_heads: per sample (L, N, h, w) raw maps; masks: per sample (H, W) x_g (supervised only).
    """
    if score not in SCORES:
        raise ValueError(f"unknown head score {score!r}; choose from {SCORES}")
    if not layer_heads:
        raise ValueError("no calibration samples")
    n_layers, n_heads = layer_heads[0].shape[:2]
    per_sample = np.full((len(layer_heads), n_layers, n_heads), np.nan)
    for s, lh in enumerate(layer_heads):
        if score == "supervised":
            if masks is None:
                raise ValueError("the supervised head score needs masks")
            for l in range(n_layers):
                for n in range(n_heads):
                    per_sample[s, l, n] = imacs(lh[l, n], masks[s], lam, threshold).as_float()
        else:
            consensus = lh.mean((0, 1)).flatten().double()
            flat = lh.flatten(2).double()  # (L, N, h*w)
            c = consensus - consensus.mean()
            f = flat - flat.mean(-1, keepdim=True)
            denom = f.norm(dim=-1) * c.norm()
            per_sample[s] = torch.where(denom > 0, (f @ c) / denom.clamp_min(1e-30), torch.nan).numpy()
    with np.errstate(all="ignore"):
        values = np.nanmean(per_sample, axis=0) if np.isfinite(per_sample).any() else np.full((n_layers, n_heads), np.nan)
    ranked = np.where(np.isfinite(values), values, -np.inf).flatten()
    order = np.argsort(-ranked, kind="stable")
    return HeadRanking(score, values, np.stack(np.unravel_index(order, values.shape), axis=1))


def aggregate_heads(layer_heads: torch.Tensor, heads: np.ndarray) -> torch.Tensor:
    """Mean of the selected (layer, head) maps: (L, N, h, w) -> (h, w). All heads = I2AM's ULAM_g."""
    idx = torch.as_tensor(heads, dtype=torch.long)
    return layer_heads[idx[:, 0], idx[:, 1]].mean(0)


def k_from(spec: int | float, total: int) -> int:
    """k given as a count (int >= 1) or a fraction (0 < f <= 1) of ``total`` heads."""
    if isinstance(spec, float) and 0 < spec <= 1:
        return max(1, int(round(spec * total)))
    return int(spec)
