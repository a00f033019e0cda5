"""Selective head aggregation: relevance values recomputed in numpy, rankings, top-k means."""

import numpy as np
import pytest
import torch

from benchmark.methods.head_selection import aggregate_heads, head_relevance, k_from
from imacs_reference import reference_imacs


def _case(n_samples=4):
    """2 layers x 3 heads on an 8x8 grid; only head (1, 2) lights up the masked square."""
    torch.manual_seed(0)
    maps, masks = [], []
    for s in range(n_samples):
        mask = torch.zeros(8, 8)
        y, x = 1 + s % 3, 2 + s % 2
        mask[y : y + 4, x : x + 4] = 1
        lh = torch.rand(2, 3, 8, 8) * 0.2
        lh[1, 2] += mask * 2
        maps.append(lh)
        masks.append(mask)
    return maps, masks


def _order(values: np.ndarray) -> list[tuple[int, int]]:
    """(layer, head) pairs by decreasing value, ties in row-major order."""
    flat = values.ravel()
    return [tuple(int(i) for i in np.unravel_index(k, values.shape)) for k in np.argsort(-flat, kind="stable")]


def test_supervised_score_is_the_mean_imacs_of_each_head():
    maps, masks = _case()
    ranking = head_relevance(maps, masks, "supervised", lam=3.0, threshold=0.4)
    expected = np.array([[np.mean([reference_imacs(lh[l, n].numpy(), m.numpy(), 3.0, 0.4) for lh, m in zip(maps, masks)])
                          for n in range(3)] for l in range(2)])
    np.testing.assert_allclose(ranking.values, expected, atol=1e-5)
    assert expected[1, 2] > 0.9 and np.delete(expected.ravel(), 5).max() < 0.5  # the region head, clearly
    assert [tuple(p) for p in ranking.order] == _order(expected)
    assert tuple(ranking.top(1)[0]) == (1, 2)


def test_label_free_score_is_the_mean_pearson_r_with_the_all_head_map():
    maps, _ = _case()
    ranking = head_relevance(maps, None, "label_free")
    expected = np.zeros((2, 3))
    for lh in maps:
        a = lh.double().numpy()
        consensus = a.mean((0, 1)).ravel()
        expected += [[np.corrcoef(a[l, n].ravel(), consensus)[0, 1] for n in range(3)] for l in range(2)]
    expected /= len(maps)
    np.testing.assert_allclose(ranking.values, expected, atol=1e-6)  # the module averages in float32
    assert [tuple(p) for p in ranking.order] == _order(expected)
    assert tuple(ranking.top(1)[0]) == (1, 2)  # the strong head dominates the mean, so it agrees with it most


def test_top_k_averages_exactly_the_chosen_heads():
    maps, _ = _case(1)
    heads = np.array([[1, 2], [0, 0]])
    torch.testing.assert_close(aggregate_heads(maps[0], heads), (maps[0][1, 2] + maps[0][0, 0]) / 2)
    with pytest.raises(ValueError, match=r"k must be in 1\.\.6, got 7"):
        head_relevance(maps, None, "label_free").top(7)


def test_top_k_equal_to_all_heads_is_all_head_map():
    maps, _ = _case(1)
    ranking = head_relevance(maps, None, "label_free")
    all_heads = aggregate_heads(maps[0], ranking.top(6))
    assert torch.allclose(all_heads, maps[0].mean((0, 1)), atol=1e-6)


def test_k_from_fraction_or_count():
    assert k_from(0.25, 28) == 7 and k_from(3, 28) == 3 and k_from(1.0, 28) == 28
