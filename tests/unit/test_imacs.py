"""IMACS known answers on hand-built maps and masks, and agreement with an independent numpy IMACS."""

import math

import numpy as np
import pytest
import torch

from benchmark.scoring.imacs import imacs, imacs_from_prepared
from benchmark.scoring.maps import minmax, prepare_map
from imacs_reference import bicubic_matrix, prepare, reference_imacs


def test_perfect_map_scores_one():
    mask = torch.zeros(4, 4)
    mask[:2] = 1
    assert imacs_from_prepared(mask.clone(), mask).value == pytest.approx(1.0)


def test_map_entirely_outside_scores_minus_lambda():
    mask = torch.zeros(4, 4)
    mask[:2] = 1
    assert imacs_from_prepared(1 - mask, mask, lam=3).value == pytest.approx(-3.0)
    assert imacs_from_prepared(1 - mask, mask, lam=0.5).value == pytest.approx(-0.5)


def test_hand_computed_mixed_case():
    # mask: 4 of 16 pixels; map: 0.5 on two inside pixels, 1.0 on one outside pixel
    mask = torch.zeros(4, 4)
    mask[0, :4] = 1
    m = torch.zeros(4, 4)
    m[0, 0] = m[0, 1] = 0.5
    m[3, 3] = 1.0
    inside = (0.5 + 0.5) / 4  # mean over mask pixels
    outside = 1.0 / 12
    assert imacs_from_prepared(m, mask, lam=3).value == pytest.approx(inside - 3 * outside)


def test_threshold_zeroes_values_at_or_below():
    raw = torch.tensor([[0.0, 0.2], [0.4, 1.0]])
    out = prepare_map(raw, (2, 2), threshold=0.4)
    assert torch.equal(out, torch.tensor([[0.0, 0.0], [0.0, 1.0]]))
    out = prepare_map(raw, (2, 2), threshold=0.0)
    assert torch.allclose(out, torch.tensor([[0.0, 0.2], [0.4, 1.0]]))


def test_minmax_normalises_per_map():
    m = torch.tensor([[[1.0, 3.0], [5.0, 9.0]], [[2.0, 2.0], [2.0, 4.0]]])
    out = minmax(m)
    assert torch.allclose(out[0], torch.tensor([[0.0, 0.25], [0.5, 1.0]]))
    assert torch.allclose(out[1], torch.tensor([[0.0, 0.0], [0.0, 1.0]]))


@pytest.mark.parametrize("fill, reason", [(0.0, "empty mask"), (1.0, "full mask")])
def test_empty_or_full_mask_is_undefined(fill, reason):
    res = imacs(torch.rand(4, 4), torch.full((8, 8), fill))
    assert res.value is None and reason in res.undefined and math.isnan(res.as_float())


def test_constant_map_is_undefined():
    mask = torch.zeros(8, 8)
    mask[2:5, 2:5] = 1
    res = imacs(torch.ones(4, 4), mask)
    assert res.value is None and "constant" in res.undefined


def test_raw_map_is_resized_to_mask_size():
    # a 2x2 map hot in the top-left, a 16x16 mask on the top-left quadrant; bicubic spreads the hot
    # cell past the quadrant, so the score is below 1 (value from the numpy reference, 16 decimals)
    raw = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    mask = torch.zeros(16, 16)
    mask[:8, :8] = 1
    assert imacs(raw, mask, lam=3, threshold=0.4).value == pytest.approx(0.7324502412229776, abs=1e-6)
    assert reference_imacs(raw.numpy(), mask.numpy(), 3, 0.4) == pytest.approx(0.7324502412229776, abs=1e-12)
    flipped = raw.flip(0).flip(1)
    assert imacs(flipped, mask, lam=3, threshold=0.4).value == pytest.approx(-0.8747964603826404, abs=1e-6)


def test_bicubic_reference_reproduces_hand_computed_weights():
    """The reference resize itself. A 2x upscale of [0, 1] samples the input at -0.25, 0.25, 0.75, 1.25;
    at -0.25 the taps -2..1 (edges repeated) weigh W(1.75) + W(0.75) + W(0.25) on input 0 and W(1.25) on
    input 1, with W(0.25) = 0.87890625, W(0.75) = 0.26171875, W(1.25) = -0.10546875, W(1.75) = -0.03515625
    (Keys, a = -0.75); the other outputs mirror these."""
    up = bicubic_matrix(2, 4) @ np.array([0.0, 1.0])
    np.testing.assert_allclose(up, [-0.10546875, 0.2265625, 0.7734375, 1.10546875], atol=1e-15)
    np.testing.assert_allclose(bicubic_matrix(5, 11).sum(1), 1.0)  # a constant map stays constant
    np.testing.assert_allclose(bicubic_matrix(3, 3), np.eye(3), atol=1e-15)  # same size: identity


@pytest.mark.parametrize("raw_shape, mask_shape", [((8, 8), (8, 8)), ((2, 2), (16, 16)), ((3, 5), (12, 20)),
                                                   ((6, 4), (9, 7)), ((16, 12), (8, 6))])
def test_imacs_equals_an_independent_numpy_reference(raw_shape, mask_shape):
    """Random skewed maps (like attention), random box masks, random lambda and threshold; up- and
    downsampling, integer and fractional scales."""
    rng = np.random.default_rng(raw_shape[0] * 100 + mask_shape[1])
    for _ in range(10):
        raw = rng.gamma(0.5, size=raw_shape).astype(np.float32)
        mask = np.zeros(mask_shape, dtype=np.float32)
        h, w = (int(rng.integers(1, n)) for n in mask_shape)
        y, x = int(rng.integers(0, mask_shape[0] - h + 1)), int(rng.integers(0, mask_shape[1] - w + 1))
        mask[y : y + h, x : x + w] = 1
        lam, thr = float(rng.uniform(0, 4)), float(rng.uniform(0, 0.8))
        got = imacs(torch.from_numpy(raw), torch.from_numpy(mask), lam, thr).value
        assert got == pytest.approx(reference_imacs(raw, mask, lam, thr), abs=1e-5)
        # without a threshold no value can flip at the cut, so the prepared maps agree pixel by pixel
        np.testing.assert_allclose(prepare_map(torch.from_numpy(raw), mask_shape, 0.0).numpy(),
                                   prepare(raw, mask_shape, 0.0), atol=1e-5)


def test_range_is_minus_lambda_to_one():
    torch.manual_seed(1)
    for _ in range(50):
        mask = (torch.rand(8, 8) > 0.5).float()
        if mask.sum() in (0, 64):
            continue
        v = imacs(torch.rand(3, 3), mask, lam=2).value
        assert -2 - 1e-9 <= v <= 1 + 1e-9
