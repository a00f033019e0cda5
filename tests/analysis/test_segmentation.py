from __future__ import annotations

import math

import numpy as np
import pytest

from benchmark.analysis.segmentation import average_precision, segmentation_scores


def brute_force_ap(scores: np.ndarray, labels: np.ndarray) -> float:
    """Step-wise AP: every distinct score is a threshold (predict score >= t), in decreasing order."""
    s, y = scores.ravel(), labels.ravel().astype(bool)
    ap, prev_recall = 0.0, 0.0
    for t in sorted(set(s.tolist()), reverse=True):
        pred = s >= t
        tp = np.sum(pred & y)
        precision, recall = tp / pred.sum(), tp / y.sum()
        ap += (recall - prev_recall) * precision
        prev_recall = recall
    return float(ap)


def test_perfect_map() -> None:
    res = segmentation_scores(np.array([[0.9, 0.8], [0.1, 0.2]]), np.array([[1, 1], [0, 0]]))
    assert (res.pixel_accuracy, res.miou, res.average_precision) == (1.0, 1.0, 1.0)
    assert res.threshold == pytest.approx(0.5)


def test_hand_computed_partial_map() -> None:
    # mean 0.5 -> predicted foreground = left column; mask = top row.
    res = segmentation_scores(np.array([[0.9, 0.1], [0.8, 0.2]]), np.array([[1, 1], [0, 0]]))
    assert res.pixel_accuracy == 0.5
    assert res.iou_foreground == pytest.approx(1 / 3) and res.iou_background == pytest.approx(1 / 3)
    assert res.miou == pytest.approx(1 / 3)
    # ranking: 0.9(+), 0.8(-), 0.2(-), 0.1(+): AP = 0.5 * 1 + 0.5 * 0.5
    assert res.average_precision == pytest.approx(0.75)


def test_threshold_and_any_range() -> None:
    soft = np.array([[10.0, 20.0], [30.0, 40.0]])  # any range; mean 25
    mask = np.array([[0, 0], [1, 1]])
    assert segmentation_scores(soft, mask).pixel_accuracy == 1.0
    res = segmentation_scores(soft, mask, threshold=15.0)
    assert res.pixel_accuracy == 0.75 and res.threshold == 15.0
    assert segmentation_scores(soft, mask, threshold=35.0).iou_foreground == 0.5  # only the 40 pixel predicted


def test_ties_enter_together() -> None:
    # threshold 1 admits both tied pixels: P=0.5, R=0.5; threshold 0 admits all: P=0.5, R=1.
    assert average_precision([1, 1, 0, 0], [1, 0, 1, 0]) == pytest.approx(0.5)


def test_ap_matches_brute_force_on_random_cases() -> None:
    rng = np.random.default_rng(0)
    for _ in range(30):
        h, w = rng.integers(2, 9, size=2)
        scores = rng.integers(0, 5, size=(h, w)).astype(float)  # few levels -> many ties
        labels = rng.random((h, w)) < 0.4
        if not labels.any():
            labels[0, 0] = True
        assert average_precision(scores, labels) == pytest.approx(brute_force_ap(scores, labels), abs=1e-12)
        cont = rng.normal(size=(h, w))
        assert average_precision(cont, labels) == pytest.approx(brute_force_ap(cont, labels), abs=1e-12)


def test_empty_mask_and_map() -> None:
    res = segmentation_scores(np.array([[0.0, 1.0], [0.0, 0.0]]), np.zeros((2, 2), dtype=bool))
    assert math.isnan(res.average_precision)
    # predicted fg = 1 pixel, no true fg: IoU_fg = 0, IoU_bg = 3/4
    assert res.iou_foreground == 0.0 and res.miou == pytest.approx(0.375)
    constant = segmentation_scores(np.ones((2, 2)), np.zeros((2, 2)))
    assert math.isnan(constant.iou_foreground) and constant.miou == 1.0  # fg absent from both -> left out


def test_validation() -> None:
    with pytest.raises(ValueError, match="same"):
        segmentation_scores(np.zeros((2, 2)), np.zeros((2, 3)))
    with pytest.raises(ValueError, match="binary"):
        segmentation_scores(np.zeros((2, 2)), np.full((2, 2), 0.5))
