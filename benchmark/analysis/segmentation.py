"""Scores of a soft attribution map against a binary ground-truth mask.

Per sample, for a soft map ``s`` (H, W, any real range) and a mask ``g``
(H, W, binary):

* the map is binarised as ``s > t`` with ``t`` the map's own mean by default
  (a constant map therefore predicts all background), or a given threshold in
  the map's units;
* pixel accuracy is the fraction of pixels where the binarised map equals the mask;
* mIoU is the mean IoU over the classes {background, foreground}; a class
  absent from both prediction and mask (empty union) is left out of the mean;
* average precision ranks pixels by ``s`` with the mask as labels:
  ``AP = sum_k (R_k - R_{k-1}) P_k`` over the distinct score values taken as
  thresholds in decreasing order (tied pixels enter together), the step-wise
  definition used by scikit-learn's ``average_precision_score``. AP is NaN
  when the mask has no foreground pixel.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

__all__ = ["SegmentationScores", "average_precision", "segmentation_scores"]


@dataclass(frozen=True)
class SegmentationScores:
    """Scores of one soft map against one mask.

    Attributes:
        pixel_accuracy: fraction of correctly classified pixels, in [0, 1].
        miou: mean of the defined IoUs over {background, foreground}, in [0, 1].
        iou_background, iou_foreground: per-class IoU; NaN when the class is
            absent from both prediction and mask.
        average_precision: AP of the soft map, in [0, 1]; NaN for an empty mask.
        threshold: threshold used for binarisation (map units).
    """

    pixel_accuracy: float
    miou: float
    iou_background: float
    iou_foreground: float
    average_precision: float
    threshold: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _as_bool(a: np.ndarray, name: str) -> np.ndarray:
    """``a`` as a bool array; raises unless it is bool or holds only 0 and 1."""
    if a.dtype == bool:
        return a
    if not np.isin(a, (0, 1)).all():
        raise ValueError(f"{name} must be binary (bool or values in {{0, 1}})")
    return a.astype(bool)


def average_precision(scores: ArrayLike, labels: ArrayLike) -> float:
    """Average precision of real-valued ``scores`` for binary ``labels`` (any equal shapes; flattened).

    Returns NaN when there is no positive label. See the module docstring for the definition.
    """
    s = np.asarray(scores, dtype=np.float64).ravel()
    y = np.asarray(labels).ravel()
    if s.shape != y.shape:
        raise ValueError(f"scores and labels differ in size: {s.size} vs {y.size}")
    y = _as_bool(y, "labels")
    n_pos = int(y.sum())
    if n_pos == 0:
        return float("nan")
    order = np.argsort(-s, kind="stable")
    s_sorted, y_sorted = s[order], y[order]
    tp = np.cumsum(y_sorted)
    # Keep only the last position of each run of tied scores: a threshold admits all ties at once.
    last_of_tie = np.r_[s_sorted[1:] != s_sorted[:-1], True]
    tp = tp[last_of_tie].astype(np.float64)
    predicted = (np.flatnonzero(last_of_tie) + 1).astype(np.float64)
    precision = tp / predicted
    recall = tp / n_pos
    recall_prev = np.r_[0.0, recall[:-1]]
    return float(np.sum((recall - recall_prev) * precision))


def _iou(pred: np.ndarray, truth: np.ndarray) -> float:
    union = int(np.logical_or(pred, truth).sum())
    if union == 0:
        return float("nan")
    return int(np.logical_and(pred, truth).sum()) / union


def segmentation_scores(soft_map: ArrayLike, mask: ArrayLike, threshold: float | None = None) -> SegmentationScores:
    """Pixel accuracy, mIoU and AP of one soft map against one mask.

    Args:
        soft_map: (H, W), any real range (higher = more foreground).
        mask: (H, W), bool or {0, 1}; True/1 is foreground.
        threshold: binarisation threshold in map units; None uses the map's mean.
    """
    s, g = np.asarray(soft_map, dtype=np.float64), np.asarray(mask)
    if s.ndim != 2 or s.shape != g.shape:
        raise ValueError(f"expected soft map and mask of the same (H, W) shape, got {s.shape} and {g.shape}")
    if not np.isfinite(s).all():
        raise ValueError("soft map contains NaN or inf")
    g = _as_bool(g, "mask")
    t = float(s.mean()) if threshold is None else float(threshold)
    pred = s > t
    iou_bg, iou_fg = _iou(~pred, ~g), _iou(pred, g)
    defined = [v for v in (iou_bg, iou_fg) if not np.isnan(v)]
    return SegmentationScores(
        pixel_accuracy=float((pred == g).mean()),
        # A non-empty image always has at least one defined class.
        miou=float(np.mean(defined)),
        iou_background=iou_bg,
        iou_foreground=iou_fg,
        average_precision=average_precision(s, g),
        threshold=t,
    )
