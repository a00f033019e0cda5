"""Display- and score-ready maps: min-max normalise, resize, threshold (eq. 8, 9)."""

from __future__ import annotations

import torch

from benchmark.capture.accumulator import resize_maps
from benchmark.defaults import DEFAULT_THRESHOLD


def minmax(m: torch.Tensor) -> torch.Tensor:
    """Min-max normalise each (..., h, w) map to [0, 1]; a constant map becomes all NaN (no attribution)."""
    flat = m.reshape(*m.shape[:-2], -1).float()
    lo, hi = flat.min(-1, keepdim=True).values, flat.max(-1, keepdim=True).values
    span = hi - lo
    out = torch.where(span > 0, (flat - lo) / span.clamp_min(torch.finfo(torch.float32).tiny), torch.nan)
    return out.reshape(m.shape)


def prepare_map(m: torch.Tensor, size: tuple[int, int], threshold: float = DEFAULT_THRESHOLD) -> torch.Tensor:
    """M_hat of eq. (9): normalise to [0, 1], resize (bicubic) to ``size``, clip the overshoot
    to [0, 1], then zero values at or below ``threshold``. (..., h, w) -> (..., *size)."""
    norm = minmax(m)
    up = resize_maps(torch.nan_to_num(norm, nan=0.0), size, clamp=False).clamp(0, 1)
    up = torch.where(up > threshold, up, torch.zeros_like(up))
    nan_rows = torch.isnan(norm.reshape(*norm.shape[:-2], -1)).any(-1)
    return torch.where(nan_rows[..., None, None], torch.nan, up)
