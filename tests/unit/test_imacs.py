"""IMACS known answers on hand-built maps and masks."""

import math

import pytest
import torch

from benchmark.imacs import imacs, imacs_from_prepared
from benchmark.maps import minmax, prepare_map


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
    # a 2x2 map hot in the top-left, a 16x16 mask on the top-left quadrant
    raw = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    mask = torch.zeros(16, 16)
    mask[:8, :8] = 1
    res = imacs(raw, mask, lam=3, threshold=0.4)
    assert res.value is not None and 0.5 < res.value <= 1.0
    flipped = imacs(raw.flip(0).flip(1), mask, lam=3, threshold=0.4)
    assert flipped.value < 0


def test_range_is_minus_lambda_to_one():
    torch.manual_seed(1)
    for _ in range(50):
        mask = (torch.rand(8, 8) > 0.5).float()
        if mask.sum() in (0, 64):
            continue
        v = imacs(torch.rand(3, 3), mask, lam=2).value
        assert -2 - 1e-9 <= v <= 1 + 1e-9
