"""Attribution scores of stored maps: IMACS_g / IMACS_r at any (lambda, threshold), segmentation scores."""

from __future__ import annotations

import math

import torch

from benchmark.analysis.segmentation import SegmentationScores, segmentation_scores
from benchmark.imacs import IMACSResult, imacs
from benchmark.maps import minmax
from benchmark.capture.accumulator import resize_maps
from benchmark.results.sample_maps import SampleMaps


def imacs_scores(maps: SampleMaps, lam: float = 3.0, threshold: float = 0.4) -> dict[str, IMACSResult]:
    """IMACS_g (ULAM_g vs the region mask) and IMACS_r (eq. 17 ULAM_r vs the reference mask)."""
    out = {}
    region, reference = maps.get("mask/region"), maps.get("mask/reference")
    g = maps.get("g/ulam")
    out["imacs_g"] = IMACSResult(None, "no region mask") if region is None else imacs(g, region, lam, threshold)
    if not maps.meta.get("reference_side", True):
        out["imacs_r"] = IMACSResult(None, "not applicable: single reference token")
    elif reference is None:
        out["imacs_r"] = IMACSResult(None, "no reference mask")
    else:
        r = maps.get("rm/ulam") if "rm/ulam" in maps.arrays else maps.get("r/ulam")
        out["imacs_r"] = imacs(r, reference, lam, threshold)
    return out


def map_segmentation(raw: torch.Tensor, mask: torch.Tensor) -> SegmentationScores | None:
    """Segmentation scores of a raw map (h, w) against a mask (H, W): min-max normalised, resized
    (bicubic, clipped to [0, 1]), binarised at its mean. None for a constant map (no attribution)."""
    norm = minmax(raw)
    if torch.isnan(norm).any():
        return None
    up = resize_maps(norm, tuple(mask.shape), clamp=False).clamp(0, 1)
    return segmentation_scores(up.numpy(), mask.numpy() > 0.5)


def segmentation_rows(maps: SampleMaps) -> dict[str, float]:
    """Pixel accuracy, mIoU and AP of ULAM_g vs x_g and ULAM_r vs x_r (binarised at the map mean)."""
    rows = {}
    for side, key, mask_key in (("g", "g/ulam", "mask/region"), ("r", "rm/ulam" if "rm/ulam" in maps.arrays else "r/ulam", "mask/reference")):
        m, mask = maps.get(key), maps.get(mask_key)
        if m is None or mask is None or mask.sum() == 0 or mask.sum() == mask.numel():
            continue
        s = map_segmentation(m, mask)
        if s is None:
            continue
        rows[f"miou_{side}"], rows[f"pixel_acc_{side}"], rows[f"ap_{side}"] = s.miou, s.pixel_accuracy, s.average_precision
    return {k: (v if v is not None and not (isinstance(v, float) and math.isnan(v)) else float("nan")) for k, v in rows.items()}
