"""Attribution scores of stored maps: what a job records per sample, and IMACS at report time.

A job records, per sample and side, the two IMACS terms at every threshold of
:data:`benchmark.defaults.THRESHOLD_GRID` (or why the score is undefined), the
segmentation scores and the areas of the masks. ``report`` turns the terms into
IMACS at any lambda and grid threshold without loading a map (``docs/maps.md``).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from benchmark.defaults import DEFAULT_LAMBDA, DEFAULT_THRESHOLD, THRESHOLD_GRID

if TYPE_CHECKING:  # torch is imported where maps are read: forming IMACS from stored terms needs none
    import torch

    from benchmark.analysis.segmentation import SegmentationScores
    from benchmark.results.sample_maps import SampleMaps

SIDES = {"g": "mask/region", "r": "mask/reference"}


def side_map(maps: SampleMaps, side: str, level: str = "ulam") -> torch.Tensor | None:
    """The raw map a side is scored on: ``g/<level>``; for ``r`` the eq.-17 map (restricted to the region,
    ``rm/<level>``) when stored, else ``r/<level>``."""
    if side == "r" and f"rm/{level}" in maps.arrays:
        return maps.get(f"rm/{level}")
    return maps.get(f"{side}/{level}")


def undefined_reason(maps: SampleMaps, side: str) -> str | None:
    """Why a side has no score on this sample before looking at the map (None: it may have one)."""
    if side == "r" and not maps.meta.get("reference_side", True):
        return "not applicable: single reference token"
    if maps.get(SIDES[side]) is None:
        return "no region mask" if side == "g" else "no reference mask"
    return None


def sample_terms(maps: SampleMaps, thresholds=THRESHOLD_GRID) -> dict[str, dict]:
    """Per side: ``{"a": [...], "b": [...]}`` (IMACS = a - lambda * b per threshold) or ``{"undefined": reason}``."""
    from benchmark.scoring.imacs import imacs_term_grid  # heavy: torch (forming IMACS from stored terms needs none)

    out = {}
    for side, mask_key in SIDES.items():
        reason = undefined_reason(maps, side)
        terms = None
        if reason is None:
            terms, reason = imacs_term_grid(side_map(maps, side), maps.get(mask_key), thresholds)
        out[side] = {"undefined": reason} if terms is None else {"a": terms[0], "b": terms[1]}
    return out


def imacs_from_terms(terms: dict, lam: float, threshold: float, thresholds=THRESHOLD_GRID) -> tuple[float, str]:
    """(IMACS, note) of one side from :func:`sample_terms`; NaN with the reason when undefined.
    ``threshold`` must be one of ``thresholds`` (the stored grid)."""
    if "undefined" in terms:
        return math.nan, terms["undefined"]
    i = grid_index(threshold, thresholds)
    return terms["a"][i] - lam * terms["b"][i], ""


def imacs_scores(maps: SampleMaps, lam: float = DEFAULT_LAMBDA, threshold: float = DEFAULT_THRESHOLD) -> dict[str, float]:
    """``{"imacs_g": value, "imacs_r": value}`` of one sample at one (lambda, threshold); NaN when undefined."""
    terms = sample_terms(maps, (threshold,))
    return {f"imacs_{side}": imacs_from_terms(t, lam, threshold, (threshold,))[0] for side, t in terms.items()}


def grid_index(threshold: float, thresholds=THRESHOLD_GRID) -> int:
    hits = [i for i, t in enumerate(thresholds) if abs(t - threshold) < 1e-9]
    if not hits:
        raise ValueError(f"threshold {threshold} is not on the stored grid {list(thresholds)}")
    return hits[0]


def mask_areas(maps: SampleMaps) -> dict[str, float]:
    """``area_g``: share of the image inside x_g; ``area_r``: share of the reference inside x_r (in [0, 1])."""
    out = {}
    for side, key in SIDES.items():
        mask = maps.arrays.get(key)
        if mask is not None:
            out[f"area_{side}"] = float(np.mean(mask > 0.5))
    return out


def map_segmentation(raw: torch.Tensor, mask: torch.Tensor) -> SegmentationScores | None:
    """Segmentation scores of a raw map (h, w) against a mask (H, W): min-max normalised, resized
    (bicubic, clipped to [0, 1]), binarised at its mean. None for a constant map (no attribution)."""
    import torch

    from benchmark.analysis.segmentation import segmentation_scores  # heavy: scipy, pandas (benchmark.analysis)
    from benchmark.capture.accumulator import resize_maps  # heavy: torch
    from benchmark.scoring.maps import minmax  # heavy: torch

    norm = minmax(raw)
    if torch.isnan(norm).any():
        return None
    up = resize_maps(norm, tuple(mask.shape), clamp=False).clamp(0, 1)
    return segmentation_scores(up.numpy(), mask.numpy() > 0.5)


def segmentation_rows(maps: SampleMaps) -> dict[str, float]:
    """Pixel accuracy, mIoU and AP of ULAM_g vs x_g and ULAM_r vs x_r (binarised at the map mean)."""
    rows = {}
    for side, mask_key in SIDES.items():
        m, mask = side_map(maps, side), maps.get(mask_key)
        if m is None or mask is None or mask.sum() == 0 or mask.sum() == mask.numel():
            continue
        s = map_segmentation(m, mask)
        if s is None:
            continue
        rows[f"miou_{side}"], rows[f"pixel_acc_{side}"], rows[f"ap_{side}"] = s.miou, s.pixel_accuracy, s.average_precision
    return {k: (v if v is not None and not (isinstance(v, float) and math.isnan(v)) else float("nan")) for k, v in rows.items()}
